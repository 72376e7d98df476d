"""The audit scan of one idx range (contiguity, timestamps, kinds, leaves, bodies, envelopes) and the
worker processes that run it over a read-only connection."""

from __future__ import annotations

import hashlib
import operator
import os
import sqlite3
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any

from trust.errors import DecodeError, SignatureError
from trust.ledger.codec import LEAF_HEADER, Shapes, decode_body, kind_bytes, leaf_hashes
from trust.ledger.proofs import ENVELOPE_TYPE, verify_jobs, verify_one
from trust.ledger.types import ENVELOPE_KINDS, MAX_U64
from trust.merkle import HASH_SIZE, grow_levels


MAX_PROBLEMS_PER_CHUNK = 10_000  # a wholesale-rewritten ledger must not produce gigabytes of report


_shapes = Shapes()
os.register_at_fork(after_in_child=lambda: setattr(_shapes, "lock", threading.Lock()))  # helpers start unlocked


@dataclass
class Chunk:
    lo: int
    hi: int
    count: int = 0
    first_idx: int = -1
    last_idx: int = -1
    first_ts: Any = None
    last_ts: Any = None
    levels: list[list[bytes]] = field(default_factory=list)   # levels[0]: recomputed leaves
    problems: list[tuple[str, str]] = field(default_factory=list)
    records: list[tuple[int, str, Any, bytes]] = field(default_factory=list)  # (idx, kind, record, envelope)
    jobs: list[tuple[tuple[int, str], str, Any]] = field(default_factory=list)  # unverified ((idx, kind), type, data)
    envelopes: int = 0
    truncated: int = 0


_BAD_LEAF = hashlib.sha256(b"\x00vouchnet-ledger: row could not be hashed").digest()


SUB = 512  # rows per vectorised step of the audit scan (small enough to stay in L2)
_SQL_RANGE = "SELECT idx, ts, kind, body, leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
_SQL_COLUMNS = "SELECT ts, body, leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
# Binary collation and count(kind) whatever the stored schema says: one kind means byte-equal, no NULLs.
_SQL_KINDS = ("SELECT min(kind COLLATE BINARY), max(kind COLLATE BINARY), count(kind) FROM entries "
              "WHERE idx >= ? AND idx < ?")


class Scan:
    """The audit scan of one idx range: contiguity, timestamps, kinds, leaf hashes, canonical
    bodies and (verify=True) the envelopes in them. Rows come in sub-batches; a sub-batch with
    nothing unusual is checked column-wise, anything else row by row to name each problem."""

    def __init__(self, lo: int, hi: int, verify: bool, owner: str | None, rowid: bool):
        self.c = Chunk(lo, hi)
        self.verify = verify
        self.owner = owner
        self.rowid = rowid  # idx is the table's rowid: unique, so e - s rows in [s, e) are s..e-1
        self.expect = lo
        self.prev_ts: Any = None
        self.leaves: list[bytes] = []
        self.levels = [self.leaves]  # grown per batch while the leaves are still in cache
        self.kinds: dict[Any, bytes | None] = {}

    def problem(self, idx: int, what: str) -> None:
        c = self.c
        if len(c.problems) < MAX_PROBLEMS_PER_CHUNK:
            c.problems.append((f"entry {idx}", what))
        else:
            c.truncated += 1

    def kind_bytes(self, kind: Any) -> bytes | None:
        try:
            return self.kinds[kind]
        except KeyError:
            pass
        except TypeError:
            return None
        try:
            kb: bytes | None = kind_bytes(kind)
        except DecodeError:
            kb = None
        self.kinds[kind] = kb
        return kb

    def batch(self, conn: sqlite3.Connection, s: int, e: int) -> None:
        """Check the rows with s <= idx < e."""
        n = e - s
        first = last = None
        if self.rowid:  # one kind in a full range: fetch neither idx nor kind
            lo_kind, hi_kind, count = conn.execute(_SQL_KINDS, (s, e)).fetchone()
            if type(lo_kind) is str and lo_kind == hi_kind and count == n:
                rows = conn.execute(_SQL_COLUMNS, (s, e)).fetchall()
                if len(rows) == n:
                    tss, bodies, stored = zip(*rows)
                    if self._fast(range(s, e), tss, (lo_kind,) * n, bodies, stored):
                        first, last = (s, tss[0]), (e - 1, tss[-1])
        if first is None:
            rows = conn.execute(_SQL_RANGE, (s, e)).fetchall()
            if not rows:
                return
            n = len(rows)
            cols = list(zip(*rows)) if n == e - s else None
            if cols is None or cols[0] != tuple(range(s, e)) or not self._fast(*cols):
                self._slow(rows)
            first, last = rows[0][:2], rows[-1][:2]
        c = self.c
        if c.count == 0:
            c.first_idx, c.first_ts = first
        c.last_idx, c.last_ts = last
        c.count += n
        grow_levels(self.levels)

    def finish(self) -> Chunk:
        c = self.c
        if self.expect < c.hi:
            what = "is missing" if self.expect == c.hi - 1 else f"entries {self.expect}..{c.hi - 1} are missing"
            self.problem(self.expect, what + " (at the end of a range)")
        c.levels = self.levels if c.count == c.hi - c.lo else [self.leaves]
        return c

    def _fast(self, idxs: Sequence[int], tss: Sequence[Any], kinds: Sequence[Any], bodies: Sequence[Any],
              stored: Sequence[Any]) -> bool:
        """Column-wise checks of the full, contiguous range idxs; False (nothing recorded) if the
        rows need the row-by-row path."""
        if set(map(type, tss)) != {int} or set(map(type, bodies)) != {bytes}:
            return False
        prev = self.prev_ts
        if (type(prev) is int and tss[0] < prev) or not all(map(operator.le, tss, tss[1:])):
            return False
        kbs_map = {}
        for k in set(kinds):
            kb = self.kind_bytes(k)
            if kb is None:
                return False
            kbs_map[k] = kb
        try:
            leaves = leaf_hashes(idxs, tss, kinds, kbs_map, bodies)
        except struct.error:
            return False
        if leaves != list(stored):
            return False
        # Rows are contiguous, ordered, well-typed and their leaves match: commit to this path.
        self.leaves.extend(leaves)
        self.expect = idxs[-1] + 1
        self.prev_ts = tss[-1]
        self._bodies(idxs, kinds, bodies)
        return True

    def _bodies(self, idxs: Sequence[int], kinds: Sequence[str], bodies: Sequence[bytes]) -> None:
        """Canonical form of each body (regex per kind where it can), and the envelopes in them."""
        kindset = set(kinds)
        todo: list[int] = []
        for kind in kindset:
            rows: Sequence[int]
            if len(kindset) == 1:
                rows, mine = range(len(bodies)), list(bodies)
            else:
                rows = list(compress(range(len(kinds)), map(kind.__eq__, kinds)))
                mine = list(map(bodies.__getitem__, rows))
            if kind in ENVELOPE_KINDS:  # the signed record is needed: decode
                todo.extend(rows)
            else:
                todo.extend(map(rows.__getitem__, _shapes.unmatched(kind, mine)))
        for i in sorted(todo):
            kind = kinds[i]
            v = self._decode(idxs[i], bodies[i])
            if v is None:
                continue
            if kind in ENVELOPE_KINDS:
                self._envelope(idxs[i], kind, v)
            else:
                _shapes.learn(kind, v)

    def _decode(self, idx: int, body: Any) -> dict | None:
        try:
            return decode_body(body)
        except DecodeError as exc:
            self.problem(idx, f"body is not canonical CBOR: {exc}")
        except Exception as exc:  # cbor2 on hostile input
            self.problem(idx, f"body is not canonical CBOR: malformed CBOR: {exc}")
        return None

    def _slow(self, rows: list[tuple]) -> None:
        sha = hashlib.sha256
        pack = LEAF_HEADER.pack
        for idx, ts, kind, body, leaf in rows:
            expect = self.expect
            if idx != expect:
                if idx == expect + 1:
                    self.problem(expect, f"is missing (entries jump from {expect - 1} to {idx})")
                else:
                    self.problem(expect, f"entries {expect}..{idx - 1} are missing "
                                         f"(entries jump from {expect - 1} to {idx})")
            self.expect = idx + 1
            prev = self.prev_ts
            if type(ts) is int and type(prev) is int and ts < prev:
                self.problem(idx, f"timestamp goes backwards ({ts} ms, entry before has {prev} ms)")
            self.prev_ts = ts
            kb = self.kind_bytes(kind)
            try:
                h = sha(pack(idx, ts, len(kb)) + kb + body).digest()  # type: ignore[arg-type]
            except (struct.error, TypeError):
                h = _BAD_LEAF
                if kb is None:
                    self.problem(idx, f"kind {str(kind)[:40]!r} is not a valid entry kind")
                elif type(ts) is not int or not 0 <= ts <= MAX_U64:
                    self.problem(idx, f"timestamp {str(ts)[:40]!r} is not an unsigned 64-bit integer")
                else:
                    self.problem(idx, f"body is stored as {type(body).__name__}, not a BLOB")
            if h != leaf:
                if type(leaf) is not bytes or len(leaf) != HASH_SIZE:
                    self.problem(idx, "stored leaf is not a 32-byte hash")
                elif h is not _BAD_LEAF:
                    self.problem(idx, "stored leaf hash does not match the entry's idx, ts, kind and body")
            self.leaves.append(h)
            v = self._decode(idx, body) if type(body) is bytes else None
            if kb is not None and v is not None and kind in ENVELOPE_KINDS:
                self._envelope(idx, kind, v)

    def _envelope(self, idx: int, kind: str, v: dict) -> None:
        key = ENVELOPE_KINDS[kind]
        data = v.get(key)
        if type(data) is not bytes:
            self.problem(idx, f"{kind} entry has no signed record under {key!r}")
            return
        typ = ENVELOPE_TYPE[kind]
        if not self.verify:
            self.c.jobs.append(((idx, kind), typ, data))
            return
        self.c.envelopes += 1
        try:
            rec = verify_one(typ, data)
        except (DecodeError, SignatureError) as exc:
            self.problem(idx, f"{kind}: {exc}")
            return
        check_record(idx, kind, rec, data, self.owner, self.c)


def scan_range(conn: sqlite3.Connection, lo: int, hi: int, owner: str | None, *, verify: bool) -> Chunk:
    """Audit-check the rows with lo <= idx < hi; returns the recomputed leaves and their levels."""
    plan = conn.execute("EXPLAIN QUERY PLAN " + _SQL_COLUMNS, (lo, hi)).fetchall()
    st = Scan(lo, hi, verify, owner, rowid=any("USING INTEGER PRIMARY KEY (rowid" in str(r[-1]) for r in plan))
    for s in range(lo, hi, SUB):
        st.batch(conn, s, min(s + SUB, hi))
    return st.finish()


def check_record(idx: int, kind: str, rec: Any, data: bytes, owner: str | None, c: Chunk) -> None:
    if kind == "attestation-issued" and owner is not None and rec.issuer != owner:
        c.problems.append((f"entry {idx}", f"attestation-issued entry holds an attestation by {rec.issuer}, "
                                           f"not by this ledger's owner {owner}"))
    if kind in ("attestation-received", "attestation-issued", "peer-head"):
        c.records.append((idx, kind, rec, data))



# --- worker processes --------------------------------------------------------------------------

_worker_conn: sqlite3.Connection | None = None


def ro_uri(path: Path) -> str:
    return Path(path).resolve().as_uri() + "?mode=ro"


def worker_init(uri: str) -> None:
    global _worker_conn
    _worker_conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    _worker_conn.execute("PRAGMA query_only=ON")


def worker_scan(lo: int, hi: int, owner: str | None) -> Chunk:
    assert _worker_conn is not None
    _worker_conn.execute("BEGIN")
    try:
        return scan_range(_worker_conn, lo, hi, owner, verify=True)
    finally:
        _worker_conn.execute("COMMIT")


def worker_verify(jobs: list[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
    return verify_jobs(jobs)
