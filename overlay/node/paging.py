"""Pages of list answers on the control socket (sans-IO; see docs/control.md, "Pages").

A list op takes ``limit`` (rows per page, default :data:`DEFAULT_LIMIT`, at most
:data:`MAX_LIMIT`) and ``after`` (the cursor: the key of the last row of the previous page)
and answers ``{<rows>: [...], "next": cursor or null}``. Keys are strings in the order the
rows are listed, so a page is "the rows whose key is greater than ``after``": a row added
or removed between two requests moves no other row to another page. Every field a row
shows is bounded too (:func:`clip`), so that :data:`MAX_LIMIT` rows of the largest size fit
in one answer line (overlay/node/control.py ``MAX_RESPONSE_LINE``) whatever peers sent.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from trust.errors import VouchnetError

DEFAULT_LIMIT = 100
MAX_LIMIT = 200
MAX_CURSOR = 4096  # characters of an `after` cursor (a row's key: a peer ID, or rank and peer ID)
MAX_FIELD_CHARS = 256  # characters of one string field a row shows (an address, a peer ID)
MAX_PAGES = 100_000  # a client following pages stops here whatever the node answers


@dataclass(frozen=True)
class PageRequest:
    limit: int = DEFAULT_LIMIT
    after: str | None = None


def page_request(req: dict[str, Any]) -> PageRequest:
    """The ``limit`` and ``after`` of a control request, checked."""
    limit = req.get("limit")
    if limit is None:
        limit = DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise VouchnetError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    after = req.get("after")
    if after is not None and (not isinstance(after, str) or len(after) > MAX_CURSOR):
        raise VouchnetError(f"after must be a cursor string of at most {MAX_CURSOR} characters")
    return PageRequest(limit, after or None)


def page(keys: Sequence[str], pr: PageRequest) -> tuple[list[str], str | None]:
    """The keys of one page of sorted ``keys``, and the cursor of the next page (None: last page)."""
    start = bisect.bisect_right(keys, pr.after) if pr.after is not None else 0
    chosen = list(keys[start:start + pr.limit])
    more = start + pr.limit < len(keys)
    return chosen, (chosen[-1] if more and chosen else None)


def clip(value: Any, n: int = MAX_FIELD_CHARS) -> str:
    """``value`` as a string of at most ``n`` characters (cut ones end in "…")."""
    s = str(value)
    return s if len(s) <= n else s[:n - 1] + "…"


def follow(fetch: Callable[[str | None], dict[str, Any]], field: str, after: str | None = None) -> list[Any]:
    """Every row of a paged answer: ``fetch(cursor)`` page after page until ``next`` is null."""
    rows: list[Any] = []
    for _ in range(MAX_PAGES):
        answer = fetch(after)
        rows.extend(answer[field])
        nxt = answer.get("next")
        if not nxt:
            return rows
        if not isinstance(nxt, str) or (after is not None and nxt <= after):
            raise VouchnetError("the node's page cursor did not advance")  # a bug, not a loop forever
        after = nxt
    raise VouchnetError(f"more than {MAX_PAGES} pages; use --limit/--after")
