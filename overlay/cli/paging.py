"""--limit/--after for the CLI's paged list commands (the pages: overlay/node/paging.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import click

from overlay.node import control
from overlay.node.paging import MAX_LIMIT, follow


def page_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add --limit and --after to a command listing ``what``s."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option("--after", default=None, metavar="CURSOR",
                          help="Start after this cursor (printed with the previous page; for peers, a peer ID).")(fn)
        return click.option("--limit", type=click.IntRange(1, MAX_LIMIT), default=None,
                            help=f"Show one page of at most N {what}s (default: all, fetched page by page).")(fn)
    return deco


def paged(home: Path, req: dict[str, Any], field: str, limit: int | None, after: str | None, command: str,
          query: Callable[[dict[str, Any]], Any] | None = None) -> list[Any]:
    """All rows (following the pages), or the one page --limit asks for, its next cursor on stderr.

    ``query`` answers one request (default: the running node's control socket)."""
    ask = query or (lambda r: control.call(home, r))
    if limit is None:
        return follow(lambda cur: ask({**req, "limit": MAX_LIMIT, "after": cur}), field, after)
    answer = ask({**req, "limit": limit, "after": after})
    if answer.get("next"):
        click.echo(f"more: vouchnet {command} --limit {limit} --after {answer['next']}", err=True)
    return answer[field]
