"""The tamper-evident reputation ledger: an append-only log in SQLite whose entries are the
leaves of an RFC 9162 Merkle tree, with signed tree heads, heads received from peers, and
equivocation proofs. `Ledger.audit` re-derives everything from the stored rows.

Layout and rules are documented in docs/ledger.md. In short:

- entry ``idx`` (0, 1, 2, ...) has leaf data ``idx (u64 BE) || ts (u64 BE, unix ms) ||
  len(kind) (u8) || kind (ASCII) || body (canonical CBOR map)`` and leaf hash
  ``SHA-256(0x00 || leaf data)`` (RFC 9162 leaf hash); the tree over the leaves in idx order is
  the ledger's Merkle tree.
- own heads are TreeHead records (trust.attestation) with ``seq`` 1, 2, 3, ... and strictly
  increasing ``ts`` (unix seconds), each consistent with the one before.
- writes are batched: `append_many` is one SQLite transaction (WAL, synchronous=NORMAL: no
  fsync per commit). `sign_head` makes its head durable before it returns by an fsync of the
  WAL, which also makes every earlier entry durable; the fsync runs outside the connection
  lock, so other threads keep reading and writing meanwhile (the node calls it in a worker
  thread, `Ledger` is safe to share between threads). With ``background_checkpoints`` the
  WAL is copied into the database (a checkpoint, two more fsyncs) only by `checkpoint()`,
  off the writers' path, instead of by whichever commit happens to fill it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import operator
import os
import re
import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import chain, compress, islice, repeat
from pathlib import Path
from typing import Any, TypeVar

import cbor2

from trust import encoding
from trust.attestation import (Attestation, Equivocation, TreeHead, open_attestation,
                               open_equivocation, open_tree_head, sign_tree_head)
from trust.errors import DecodeError, ProofError, SignatureError, VouchnetError
from trust.merkle import HASH_SIZE, MerkleTree, leaf_hash, verify_consistency, verify_inclusion

__all__ = [
    "FORMAT", "VERSION", "MAX_BODY", "ENVELOPE_KINDS", "LedgerError", "LedgerOpenError",
    "Entry", "RawEntry", "Head", "PeerHead", "Problem", "AuditReport", "Ledger",
    "leaf_data", "parse_leaf_data", "encode_body", "decode_body", "verify_proof_bundle", "verify_equivocation",
]

FORMAT = "vouchnet-ledger"
VERSION = 1
MAX_BODY = 256 * 1024          # bytes of canonical CBOR per entry body
MAX_KIND = 32
_KIND_RE = re.compile(r"[a-z][a-z-]{0,31}")
# Entry kinds whose body carries a signed envelope (under this key) that audit verifies.
ENVELOPE_KINDS = {
    "attestation-received": "envelope",
    "attestation-issued": "envelope",
    "peer-head": "envelope",
    "equivocation": "proof",
}
_ENVELOPE_TYPE = {"attestation-received": "attestation", "attestation-issued": "attestation",
                  "peer-head": "tree-head", "equivocation": "equivocation"}

# Audit tuning: below PARALLEL_ROWS entries everything runs in this process; above, idx ranges of
# CHUNK entries (a power of two, so each chunk is a perfect subtree) are scanned by this process
# and `workers - 1` helpers. Signatures outside those scans are spread only above PARALLEL_SIGNATURES.
PARALLEL_ROWS = 50_000
PARALLEL_SIGNATURES = 2_000
CHUNK = 1 << 14
MAX_PROBLEMS_PER_CHUNK = 10_000  # a wholesale-rewritten ledger must not produce gigabytes of report

# Commits between checkpoints with background_checkpoints: `checkpoint_due` from CHECKPOINT_AFTER on;
# a writer checkpoints inline only past MAX_UNCHECKPOINTED (nobody called checkpoint()), so the WAL
# stays bounded either way. A small commit adds 1-3 WAL pages: under SQLite's own 1000-page trigger.
CHECKPOINT_AFTER = 256
MAX_UNCHECKPOINTED = 4096

# leaf data header with the RFC 9162 leaf prefix in front: 0x00 || idx || ts || len(kind)
_LEAF_HDR = struct.Struct(">xQQB")
_HDR = struct.Struct(">QQB")
_MAX_U64 = (1 << 64) - 1
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,      -- leaf index: 0, 1, 2, ... without gaps
    ts INTEGER NOT NULL,          -- unix milliseconds, never decreasing
    kind TEXT NOT NULL,           -- [a-z][a-z-]{0,31}
    body BLOB NOT NULL,           -- canonical CBOR map (RFC 8949 core deterministic)
    leaf BLOB NOT NULL            -- SHA-256(0x00 || leaf data), 32 bytes
);
CREATE TABLE IF NOT EXISTS heads (
    seq INTEGER PRIMARY KEY,      -- 1, 2, 3, ...
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    ts INTEGER NOT NULL,          -- unix seconds (as signed), strictly increasing
    envelope BLOB NOT NULL        -- the signed TreeHead envelope
);
CREATE TABLE IF NOT EXISTS peer_heads (
    issuer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    ts INTEGER NOT NULL,          -- unix seconds (as signed)
    envelope BLOB NOT NULL UNIQUE,
    received_ts INTEGER NOT NULL  -- unix milliseconds
);
CREATE INDEX IF NOT EXISTS peer_heads_by_seq ON peer_heads(issuer, seq);
CREATE INDEX IF NOT EXISTS peer_heads_by_size ON peer_heads(issuer, size);
CREATE TABLE IF NOT EXISTS equivocations (
    issuer TEXT NOT NULL,
    kind TEXT NOT NULL,           -- record tag, e.g. vouchnet/attestation
    proof BLOB NOT NULL UNIQUE,   -- Equivocation.to_bytes()
    ts INTEGER NOT NULL           -- unix milliseconds when recorded
);
"""
_TABLES = ("meta", "entries", "heads", "peer_heads", "equivocations")


class LedgerError(VouchnetError):
    """The ledger refused an operation, or its stored data is inconsistent."""


class LedgerOpenError(LedgerError):
    """The ledger file is missing, unreadable, or not a vouchnet ledger."""


# --- data types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    idx: int
    ts: int            # unix milliseconds
    kind: str
    body: dict[str, Any]
    leaf: bytes        # stored RFC 9162 leaf hash


@dataclass(frozen=True)
class RawEntry:
    """A row as stored, body undecoded (for display and export of possibly damaged ledgers)."""

    idx: int
    ts: Any
    kind: Any
    body: Any
    leaf: Any


@dataclass(frozen=True)
class Head:
    """One of this ledger's signed tree heads."""

    seq: int
    size: int
    root: bytes
    ts: int            # unix seconds, as signed
    envelope: bytes


@dataclass(frozen=True)
class PeerHead:
    issuer: str
    seq: int
    size: int
    root: bytes
    ts: int
    envelope: bytes
    received_ts: int


@dataclass(frozen=True)
class Problem:
    where: str         # "entry 17", "head seq 3", "peer head <issuer> seq 2", "ledger", ...
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class AuditReport:
    ok: bool
    entries: int
    heads: int
    problems: list[Problem]
    seconds: float
    equivocations_found: list[Equivocation] = field(default_factory=list)
    envelopes: int = 0          # signed envelopes verified (entries, heads, peer heads, proofs)
    peer_heads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "heads": self.heads, "peer_heads": self.peer_heads,
            "envelopes_verified": self.envelopes, "seconds": round(self.seconds, 3),
            "problems": [{"where": p.where, "what": p.what} for p in self.problems],
            "equivocations_found": [{"issuer": e.issuer, "kind": e.kind,
                                     "proof": base64.b64encode(e.to_bytes()).decode("ascii")}
                                    for e in self.equivocations_found],
        }


# --- bodies and leaves ---------------------------------------------------------------------------

_FLAT = frozenset({int, str, bytes, bool, type(None)})
_MIN_INT = -(1 << 64)
# Key tuples known to be all-text and in canonical (RFC 8949 §4.2.1) order: for a flat map with
# such keys, plain cbor2 encoding *is* the canonical encoding (ints are always minimal), which is
# ~3x cheaper than cbor2's canonical mode. Learnt per key tuple by `_canonical_keys`.
_canon_keys: set[tuple[str, ...]] = set()
_MAX_CANON_KEYS = 4096
_dumps = cbor2.dumps
_loads = cbor2.loads


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def _reject_bignum(decoder: Any) -> Any:
    raise DecodeError("integers beyond 64 bits (bignum tags) are not allowed")


# cbor2 decodes bignum tags (2, 3) itself, whatever tag_hook says, and they re-encode
# byte-identically: reject them explicitly so every body int is a plain 64-bit CBOR integer.
_NO_BIGNUMS = {2: _reject_bignum, 3: _reject_bignum}
_LOADS_KW: dict[str, Any] = dict(max_depth=encoding.MAX_DEPTH, allow_indefinite=False, allow_duplicate_keys=False,
                                 tag_hook=_reject_tag, semantic_decoders=_NO_BIGNUMS)


def _check_int_range(value: Any, depth: int = 0) -> None:
    # Ints beyond 64 bits would be encoded as bignum tags, which strict decoding rejects.
    if depth > encoding.MAX_DEPTH:
        return  # encoding.encode reports the depth
    if type(value) is int:
        if not _MIN_INT <= value <= _MAX_U64:
            raise DecodeError(f"integer {value} does not fit in 64 bits")
    elif isinstance(value, dict):
        for v in value.values():
            _check_int_range(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_int_range(v, depth + 1)


def encode_body(body: dict[str, Any]) -> bytes:
    """Canonical CBOR of an entry body (a map with text keys; no floats, no big ints)."""
    if type(body) is not dict:
        raise DecodeError(f"an entry body must be a dict, got {type(body).__name__}")
    if _canonical_keys(tuple(body)):
        for v in body.values():
            t = type(v)
            if t is int:
                if not _MIN_INT <= v <= _MAX_U64:
                    break
            elif t not in _FLAT:
                break
        else:
            data = _dumps(body)
            if len(data) <= MAX_BODY:
                return data
    _check_int_range(body)
    data = encoding.encode(body)
    if len(data) > MAX_BODY:
        raise DecodeError(f"entry body is {len(data)} bytes encoded, the limit is {MAX_BODY}")
    return data


def _canonical_keys(keys: tuple) -> bool:
    """Whether a map with these keys (in this order) encodes canonically with plain cbor2; learnt
    once per key tuple by asking cbor2's canonical mode (key order does not depend on values)."""
    if keys in _canon_keys:
        return True
    if len(_canon_keys) >= _MAX_CANON_KEYS or not all(type(k) is str for k in keys):
        return False
    probe = dict.fromkeys(keys)
    if len(probe) != len(keys) or encoding.encode(probe) != _dumps(probe):
        return False
    _canon_keys.add(keys)
    return True


def _all_canonical_keys(maps: Iterable[dict]) -> bool:
    """Whether every map's key order is canonical (learning new key tuples on the way)."""
    keysets = set(map(tuple, maps))
    return keysets <= _canon_keys or all(map(_canonical_keys, keysets))


def decode_body(data: Any) -> dict[str, Any]:
    """Strictly decode a stored body: exactly the canonical CBOR of a map, else DecodeError."""
    if type(data) is not bytes:
        raise DecodeError(f"body is stored as {type(data).__name__}, not a BLOB")
    if len(data) > MAX_BODY:
        raise DecodeError(f"body is {len(data)} bytes, the limit is {MAX_BODY}")
    try:
        v = _loads(data, **_LOADS_KW)
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise DecodeError(f"malformed CBOR: {exc}") from None
    # Fast path: a flat map whose key order is known canonical and whose plain re-encoding is
    # byte-identical (so every length and integer is minimal and nothing trails).
    if type(v) is dict and _canonical_keys(tuple(v)) and _FLAT.issuperset(map(type, v.values())) \
            and _dumps(v) == data:
        return v
    v = encoding.decode(data, MAX_BODY)
    if type(v) is not dict:
        raise DecodeError(f"body is a CBOR {type(v).__name__}, not a map")
    _check_int_range(v)  # (unreachable while _LOADS_KW rejects bignums; kept as a second line)
    return v


# --- the audit's fast check of flat bodies --------------------------------------------------------
#
# Decoding costs ~2 us per body, about what the rest of the audit costs together. Most bodies are flat
# maps of short scalars, and for those canonical form is a regular language once the key tuple is
# fixed: a regex per entry kind over the kind's learnt key tuples checks them in C without
# building any object. A body it matches is exactly the canonical encoding of a map that
# decode_body accepts; anything else is decoded (and teaches its key tuple and value types).
# No lookaround reaches past the bytes a value consumes (`_Shapes.unmatched` relies on it).

def _rx_byte(b: int) -> bytes:
    return re.escape(bytes([b]))


def _rx_int(major: int) -> bytes:
    """A CBOR integer of major type 0 or 1, minimally encoded."""
    m = major << 5
    return b"|".join([
        b"[" + _rx_byte(m) + b"-" + _rx_byte(m + 23) + b"]",
        _rx_byte(m + 24) + b"[\x18-\xff]",
        _rx_byte(m + 25) + b"[\x01-\xff](?s:.)",
        _rx_byte(m + 26) + b"(?!\x00\x00)(?s:.{4}+)",
        _rx_byte(m + 27) + b"(?!\x00{4})(?s:.{8}+)",
    ])


def _rx_string(major: int, unit: bytes, first: Iterable[int]) -> bytes:
    """A definite-length CBOR string of major type 2 or 3 shorter than 256 bytes, length minimal;
    lengths in `first` are tried first (sre tries alternatives in order)."""
    m = major << 5
    order = list(dict.fromkeys(chain(first, range(256))))
    long = b"|".join(_rx_byte(n) + unit + b"{%d}+" % n for n in order if n >= 24)
    short = [_rx_byte(m + n) + unit + b"{%d}+" % n for n in order if n < 24]
    return b"|".join([_rx_byte(m + 24) + b"(?:" + long + b")"] + short)


_RX_INT = _rx_int(0) + b"|" + _rx_int(1)
_RX_VALUE_MAX = 2 + 255  # longest value the regexes match


def _rx_value(t: type, lengths: Iterable[int]) -> bytes:
    if t is int:
        return _RX_INT
    if t is str:
        return _rx_string(3, b"[\x00-\x7f]", lengths)  # ASCII only: no UTF-8 check needed
    if t is bytes:
        return _rx_string(2, b"(?s:.)", lengths)
    return b"\xf6" if t is type(None) else b"[\xf4\xf5]"


class _Shapes:
    """Per entry kind, the learnt key tuples of its flat-map bodies with, per key, the value
    types and string lengths seen (most common first), and the kind's regex."""

    MAX_KINDS = 64
    MAX_PER_KIND = 8

    def __init__(self) -> None:
        self.seen: dict[str, dict[tuple[str, ...], list[tuple[Counter[type], Counter[int]]]]] = {}
        self.rx: dict[str, re.Pattern[bytes]] = {}
        self.lock = threading.Lock()  # audits of two ledgers may run in two threads

    def learn(self, kind: str, body: dict[str, Any]) -> None:
        with self.lock:
            self._learn(kind, body)

    def _learn(self, kind: str, body: dict[str, Any]) -> None:
        keys = tuple(body)
        templates = self.seen.get(kind)
        if templates is None and len(self.seen) >= self.MAX_KINDS:
            return
        stats = (templates or {}).get(keys)
        if stats is None:
            if len(templates or ()) >= self.MAX_PER_KIND or len(keys) > 23 \
                    or not _FLAT.issuperset(map(type, body.values())) or not _canonical_keys(keys) \
                    or 1 + sum(len(encoding.encode(k)) + _RX_VALUE_MAX for k in keys) > MAX_BODY:
                return  # (the last test: whatever the regex matches must be within MAX_BODY too)
            stats = self.seen.setdefault(kind, {})[keys] = [(Counter(), Counter()) for _ in keys]
        for (types, lengths), v in zip(stats, body.values()):
            t = type(v)
            if t not in types:
                self.rx.pop(kind, None)  # recompiled with the new type on next use
            types[t] += 1
            if (t is str or t is bytes) and len(v) < 256:
                lengths[len(v)] += 1

    def unmatched(self, kind: str, bodies: list[bytes]) -> Iterable[int]:
        """Indexes of the bodies the kind's regex does not match (all of them if it has none)."""
        rx = self.rx.get(kind)
        if rx is None:
            with self.lock:
                templates = self.seen.get(kind)
                if not templates:
                    return range(len(bodies))
                rx = self.rx[kind] = re.compile(b"|".join(
                    _rx_byte(0xa0 + len(keys)) + b"".join(
                        re.escape(encoding.encode(k)) + b"(?:" + b"|".join(
                            _rx_value(t, [n for n, _ in lengths.most_common()]) for t, _ in types.most_common()) + b")"
                        for k, (types, lengths) in zip(keys, stats))
                    for keys, stats in templates.items()))
        # One pass over the whole batch: matches never overlap and each equals its body, so
        # together they tile the joined bytes and each match is exactly one body.
        if rx.findall(b"".join(bodies)) == bodies:
            return ()
        return compress(range(len(bodies)), map(operator.not_, map(rx.fullmatch, bodies)))


_shapes = _Shapes()
os.register_at_fork(after_in_child=lambda: setattr(_shapes, "lock", threading.Lock()))  # helpers start unlocked


def _kind_bytes(kind: Any) -> bytes:
    if type(kind) is not str or not _KIND_RE.fullmatch(kind):
        raise DecodeError(f"entry kind {str(kind)[:40]!r} is not 1-{MAX_KIND} characters of [a-z-] "
                          "starting with a letter")
    return kind.encode("ascii")


def leaf_data(idx: int, ts: int, kind: str, body: bytes) -> bytes:
    """The bytes an entry contributes to the tree: idx || ts || len(kind) || kind || body."""
    kb = _kind_bytes(kind)
    return _HDR.pack(idx, ts, len(kb)) + kb + body


def parse_leaf_data(data: bytes) -> tuple[int, int, str, bytes]:
    """(idx, ts, kind, body bytes) from leaf data; DecodeError if it is malformed."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < _HDR.size + 1:
        raise DecodeError("leaf data is too short to hold an entry")
    data = bytes(data)
    idx, ts, klen = _HDR.unpack_from(data)
    if not 1 <= klen <= MAX_KIND or len(data) < _HDR.size + klen + 1:
        raise DecodeError("leaf data has an invalid kind length")
    try:
        kind = data[_HDR.size:_HDR.size + klen].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("leaf data kind is not ASCII") from None
    _kind_bytes(kind)
    return idx, ts, kind, data[_HDR.size + klen:]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- envelope verification (shared by the audit scan, its workers and the ledger) --------------

def verify_equivocation(proof: bytes) -> Equivocation:
    """Verify an equivocation proof: two same-slot records (trust.attestation.open_equivocation), or
    two tree heads of one issuer with the same size and different roots (a forked log)."""
    value = encoding.decode(proof, Equivocation.MAX_SIZE)
    if (isinstance(value, list) and len(value) == 4 and value[0] == 1 and value[1] == TreeHead.TAG
            and isinstance(value[2], bytes) and isinstance(value[3], bytes) and value[2] < value[3]):
        a, b = open_tree_head(value[2]), open_tree_head(value[3])
        if a.issuer == b.issuer and a.size == b.size and a.root != b.root:
            return Equivocation(a.issuer, TreeHead.TAG, value[2], value[3])
    return open_equivocation(proof)


def _verify_one(typ: str, data: Any) -> Any:
    if type(data) is not bytes:
        raise DecodeError(f"expected the signed record as bytes, got {type(data).__name__}")
    if typ == "attestation":
        return open_attestation(data)
    if typ == "tree-head":
        return open_tree_head(data)
    if typ == "equivocation":
        return verify_equivocation(data)
    raise ValueError(typ)


def _verify_jobs(jobs: Sequence[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
    """[(key, record or None, error or None)] for [(key, type, envelope)]."""
    out = []
    for key, typ, data in jobs:
        try:
            out.append((key, _verify_one(typ, data), None))
        except (DecodeError, SignatureError) as exc:
            out.append((key, None, str(exc)))
    return out


# --- the audit scan of one idx range --------------------------------------------------------------

@dataclass
class _Chunk:
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
_SHA256 = hashlib.sha256()


@lru_cache(maxsize=64)
def _kind_struct(kb: bytes) -> struct.Struct:
    return struct.Struct(f">xQQB{len(kb)}s")


class _Scan:
    """The audit scan of one idx range: contiguity, timestamps, kinds, leaf hashes, canonical
    bodies and (verify=True) the envelopes in them. Rows come in sub-batches; a sub-batch with
    nothing unusual is checked column-wise, anything else row by row to name each problem."""

    def __init__(self, lo: int, hi: int, verify: bool, owner: str | None, rowid: bool):
        self.c = _Chunk(lo, hi)
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
            kb: bytes | None = _kind_bytes(kind)
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
        _grow_levels(self.levels)

    def finish(self) -> _Chunk:
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
            leaves = _leaf_hashes(idxs, tss, kinds, kbs_map, bodies)
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
        pack = _LEAF_HDR.pack
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
                elif type(ts) is not int or not 0 <= ts <= _MAX_U64:
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
        typ = _ENVELOPE_TYPE[kind]
        if not self.verify:
            self.c.jobs.append(((idx, kind), typ, data))
            return
        self.c.envelopes += 1
        try:
            rec = _verify_one(typ, data)
        except (DecodeError, SignatureError) as exc:
            self.problem(idx, f"{kind}: {exc}")
            return
        _check_record(idx, kind, rec, data, self.owner, self.c)


def _scan(conn: sqlite3.Connection, lo: int, hi: int, owner: str | None, *, verify: bool) -> _Chunk:
    """Audit-check the rows with lo <= idx < hi; returns the recomputed leaves and their levels."""
    plan = conn.execute("EXPLAIN QUERY PLAN " + _SQL_COLUMNS, (lo, hi)).fetchall()
    st = _Scan(lo, hi, verify, owner, rowid=any("USING INTEGER PRIMARY KEY (rowid" in str(r[-1]) for r in plan))
    for s in range(lo, hi, SUB):
        st.batch(conn, s, min(s + SUB, hi))
    return st.finish()


def _check_record(idx: int, kind: str, rec: Any, data: bytes, owner: str | None, c: _Chunk) -> None:
    if kind == "attestation-issued" and owner is not None and rec.issuer != owner:
        c.problems.append((f"entry {idx}", f"attestation-issued entry holds an attestation by {rec.issuer}, "
                                           f"not by this ledger's owner {owner}"))
    if kind in ("attestation-received", "attestation-issued", "peer-head"):
        c.records.append((idx, kind, rec, data))


def _pairs(level: list[bytes]) -> list[bytes]:
    prefix = hashlib.sha256(b"\x01")
    out = []
    append = out.append
    it = iter(level)
    for left, right in zip(it, it):
        h = prefix.copy()
        h.update(left)
        h.update(right)
        append(h.digest())
    return out


def _levels(leaves: list[bytes]) -> list[list[bytes]]:
    """Every level of perfect subtrees over leaves, as MerkleTree keeps them."""
    levels = [leaves]
    _grow_levels(levels)
    return levels


def _grow_levels(levels: list[list[bytes]]) -> None:
    """Add the nodes that leaves appended to levels[0] completed: one pass per level."""
    k = 0
    while True:
        below = levels[k]
        want = len(below) >> 1
        if want == 0:
            break
        if k + 1 == len(levels):
            levels.append([])
        above = levels[k + 1]
        have = len(above)
        if have == want:
            break
        above.extend(_pairs(below[2 * have:2 * want]))
        k += 1


def _tree_from_levels(levels: list[list[bytes]]) -> MerkleTree:
    """A MerkleTree over levels[0] reusing the levels computed by the scan workers.

    MerkleTree keeps exactly this structure in its `_levels` slot (trust/merkle.py); if that ever
    changes, or the levels are not what it expects, the tree is simply rebuilt from the leaves.
    """
    n = len(levels[0])
    ok = all(len(lv) == n >> k for k, lv in enumerate(levels)) and (n <= 1 or len(levels[-1]) == 1)
    if ok and "_levels" in getattr(MerkleTree, "__slots__", ()):
        tree = MerkleTree.__new__(MerkleTree)
        tree._levels = levels  # noqa: SLF001
        return tree
    return MerkleTree(levels[0])


def _extend_tree(tree: MerkleTree, leaves: list[bytes]) -> None:
    """Append many leaves at once: one pass per level instead of a walk per leaf."""
    levels = getattr(tree, "_levels", None)
    if levels is None or len(leaves) < 8:
        for h in leaves:
            tree.append(h)
        return
    levels[0].extend(leaves)
    _grow_levels(levels)


def _leaf_hashes(idxs: Iterable[int], tss: Iterable[int], kinds: Sequence[str], kbs_map: dict[Any, bytes],
                 bodies: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes of entries, column-wise (C-level map()s)."""
    if len(kbs_map) == 1:  # one kind: its bytes go into the packed header
        kb = next(iter(kbs_map.values()))
        hdrs: Iterable[bytes] = map(_kind_struct(kb).pack, idxs, tss, repeat(len(kb)), repeat(kb))
    else:
        kbs = list(map(kbs_map.__getitem__, kinds))
        hdrs = map(operator.add, map(_LEAF_HDR.pack, idxs, tss, map(len, kbs)), kbs)
    out: list[bytes] = []
    append = out.append
    new = _SHA256.copy  # copying a hash object is cheaper than making one (~0.1 us of ~0.5)
    for data in map(operator.add, hdrs, bodies):
        h = new()
        h.update(data)
        append(h.digest())
    return out


_INSERT_ONE = "INSERT INTO entries(idx, ts, kind, body, leaf) VALUES (?, ?, ?, ?, ?)"
# Rows per multi-row INSERT: 100 x 5 parameters stays under SQLite's historical limit of 999
# variables, and one statement per 100 rows costs ~20% less than executemany of single rows.
_MULTI = 100
_PLACEHOLDERS = ", ".join(["(?, ?, ?, ?, ?)"] * _MULTI)
# A constant built once from placeholders: no data ever reaches the SQL text.
_INSERT_MULTI = f"INSERT INTO entries(idx, ts, kind, body, leaf) VALUES {_PLACEHOLDERS}"  # nosec B608


def _insert_entries(db: sqlite3.Connection, rows: Iterable[tuple], count: int) -> None:
    full = count - count % _MULTI
    it = iter(rows)
    if full:
        flat = list(chain.from_iterable(islice(it, full)))
        step = 5 * _MULTI
        db.executemany(_INSERT_MULTI, [flat[i:i + step] for i in range(0, len(flat), step)])
    if full < count:
        db.executemany(_INSERT_ONE, it)


def _encode_bodies(bodies: Sequence[Any]) -> list[bytes]:
    """encode_body of each, column-wise when they are all flat maps with known key order."""
    if set(map(type, bodies)) == {dict} and _all_canonical_keys(bodies):
        values = list(chain.from_iterable(map(dict.values, bodies)))
        types = list(map(type, values))
        kinds = set(types)
        if kinds <= _FLAT:
            ok = True
            if int in kinds:
                ints = list(compress(values, map(operator.is_, types, repeat(int))))
                ok = min(ints) >= _MIN_INT and max(ints) <= _MAX_U64
            if ok:
                out = list(map(_dumps, bodies))
                if max(map(len, out)) <= MAX_BODY:
                    return out
    return list(map(encode_body, bodies))


# --- worker processes --------------------------------------------------------------------------

_worker_conn: sqlite3.Connection | None = None


def _ro_uri(path: Path) -> str:
    return Path(path).resolve().as_uri() + "?mode=ro"


def _worker_init(uri: str) -> None:
    global _worker_conn
    _worker_conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
    _worker_conn.execute("PRAGMA query_only=ON")


def _worker_scan(lo: int, hi: int, owner: str | None) -> _Chunk:
    assert _worker_conn is not None
    _worker_conn.execute("BEGIN")
    try:
        return _scan(_worker_conn, lo, hi, owner, verify=True)
    finally:
        _worker_conn.execute("COMMIT")


def _worker_verify(jobs: list[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
    return _verify_jobs(jobs)


# --- the ledger ------------------------------------------------------------------------------------


class Ledger:
    """An append-only, Merkle-committed log of reputation events in one SQLite file.

    One writer process at a time is expected; a second one is safe (every write re-reads the
    tail inside its transaction and catches the in-memory tree up) but slower.

    Thread-safe: every use of the connection holds `_lock` (short: one transaction or one
    page of reads, never an fsync). `sign_head` and `checkpoint` block on disk I/O and are
    meant for a worker thread; they are serialised by `_sync_lock`, always taken before
    `_lock`, and their fsyncs run holding `_sync_lock` only.
    """

    def __init__(self, path: Path | str, identity: Any = None, *, readonly: bool = False,
                 owner: str | None = None, background_checkpoints: bool = False):
        self.path = Path(path)
        self.identity = identity
        self.readonly = readonly
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()
        self._tree: MerkleTree | None = None
        self._wal = False
        self._dir_synced = False
        self._ckpt_db: sqlite3.Connection | None = None
        self.background_checkpoints = background_checkpoints and not readonly
        self._commits = 0           # write transactions committed through this object
        self._checkpointed_at = 0   # _commits when the last checkpoint started
        self._owner_arg = owner
        if identity is not None and owner is not None and identity.peer_id != owner:
            raise LedgerError(f"identity {identity.peer_id} is not the expected owner {owner}")
        if readonly and not self.path.is_file():
            raise LedgerOpenError(f"no ledger at {self.path}")
        try:
            if readonly:
                self._db = sqlite3.connect(_ro_uri(self.path), uri=True, isolation_level=None, timeout=30,
                                           check_same_thread=False)
            else:
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerOpenError(f"cannot open ledger {self.path}: {exc}") from None
        try:
            if readonly:
                self._db.execute("PRAGMA query_only=ON")
            else:
                mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()
                # A file system without WAL support keeps a rollback journal: heads then commit
                # with synchronous=FULL as one step (sign_head).
                self._wal = bool(mode) and str(mode[0]).lower() == "wal"
                self._db.execute("PRAGMA synchronous=NORMAL")
                if self.background_checkpoints and self._wal:
                    self._db.execute("PRAGMA wal_autocheckpoint=0")  # checkpoint() does it, off the loop
                self._init_schema()
            self._check_format()
            stored = self._meta("peer_id")
            if identity is not None and stored is not None and stored != identity.peer_id:
                raise LedgerError(f"ledger {self.path} belongs to {stored}, not to {identity.peer_id}")
        except sqlite3.Error as exc:
            self._db.close()
            raise LedgerOpenError(f"cannot open ledger {self.path}: {exc}") from None
        except BaseException:
            self._db.close()
            raise

    # -- set-up --------------------------------------------------------------------------------

    def _init_schema(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if names and "meta" not in names:
                raise LedgerOpenError(f"{self.path} is an SQLite database but not a vouchnet ledger")
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?), ('version', ?)",
                       (FORMAT, str(VERSION)))
            if self.identity is not None:
                db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('peer_id', ?)", (self.identity.peer_id,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _check_format(self) -> None:
        names = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        missing = [t for t in _TABLES if t not in names]
        if missing:
            raise LedgerOpenError(f"{self.path} is not a vouchnet ledger (no table {', '.join(missing)})")
        fmt, ver = self._meta("format"), self._meta("version")
        if fmt != FORMAT:
            raise LedgerOpenError(f"{self.path} is not a vouchnet ledger (format {fmt!r})")
        if ver != str(VERSION):
            raise LedgerOpenError(f"{self.path} is a version {ver} ledger; this vouchnet reads version {VERSION}")

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def owner(self) -> str | None:
        """The peer ID whose heads this ledger holds (identity, or as recorded in the file)."""
        if self.identity is not None:
            return self.identity.peer_id
        return self._owner_arg or self._meta("peer_id")

    def close(self) -> None:
        # Waits for a sign_head or checkpoint running in another thread.
        with self._sync_lock, self._lock:
            if self._ckpt_db is not None:
                self._ckpt_db.close()
                self._ckpt_db = None
            self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def _writable(self) -> None:
        if self.readonly:
            raise LedgerError("the ledger is open read-only")

    def _tail(self) -> tuple[int, int]:
        """(size, last ts) as stored."""
        row = self._db.execute("SELECT idx, ts FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
        return (0, 0) if row is None else (row[0] + 1, row[1])

    def _sync_tree(self, size: int | None = None) -> MerkleTree:
        """Bring the in-memory tree up to the stored size (first use, or another writer appended)."""
        if size is None:
            size = self._tail()[0]
        tree = self._tree
        if tree is not None and tree.size == size:
            return tree
        start = tree.size if tree is not None and tree.size < size else 0
        leaves = [r[0] for r in self._db.execute("SELECT leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                                                 (start, size))]
        if len(leaves) != size - start or not all(type(h) is bytes and len(h) == HASH_SIZE for h in leaves):
            raise LedgerError(f"ledger {self.path} is damaged (missing entries or bad leaf hashes); "
                              "run 'vouchnet ledger audit'")
        if start == 0:
            self._tree = MerkleTree(leaves)
        else:
            _extend_tree(tree, leaves)
        return self._tree

    def append(self, kind: str, body: dict[str, Any], ts_ms: int | None = None) -> int:
        """Append one entry; returns its index."""
        return self.append_many([(kind, body)], ts_ms=ts_ms)[0]

    def append_many(self, items: Iterable[tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], int | None]],
                    ts_ms: int | None = None) -> list[int]:
        """Append entries in one transaction: all of them are stored, or none.

        Items are (kind, body) or (kind, body, ts_ms). Timestamps default to now (or ts_ms) and
        are clamped so they never go below the entry before.
        """
        self._writable()
        items = list(items)
        if not items:
            return []
        per_item_ts = set(map(len, items)) != {2}
        if per_item_ts:
            kinds, bodies, stamps = zip(*((it[0], it[1], it[2] if len(it) > 2 else None) for it in items))
        else:
            kinds, bodies = zip(*items)
        kbs_map = {k: _kind_bytes(k) for k in set(kinds)}
        encoded = _encode_bodies(bodies)
        now = _now_ms() if ts_ms is None else ts_ms
        if type(now) is not int or not 0 <= now <= _MAX_U64:
            raise ValueError("timestamp must be a non-negative 64-bit integer number of milliseconds")
        k = len(items)
        with self._lock:
            with self._write() as db:
                n, last = self._tail()
                tree = self._sync_tree(n)
                ts = max(now, last)
                if per_item_ts:
                    tss = []
                    for its in stamps:
                        if its is not None:
                            if type(its) is not int or not 0 <= its <= _MAX_U64:
                                raise ValueError("timestamp must be a non-negative 64-bit integer number of ms")
                            ts = max(its, ts)
                        tss.append(ts)
                idxs = range(n, n + k)
                leaves = _leaf_hashes(idxs, tss if per_item_ts else repeat(ts, k), kinds, kbs_map, encoded)
                _insert_entries(db, zip(idxs, tss if per_item_ts else repeat(ts, k), kinds, encoded, leaves), k)
            _extend_tree(tree, leaves)
        return list(idxs)

    def sign_head(self) -> bytes:
        """Sign and store a tree head over every entry, durably; returns the envelope.

        Blocking (an fsync): from trio, call it in a worker thread (`trio.to_thread.run_sync`).
        The head is committed holding the connection lock (no fsync: synchronous=NORMAL) and
        the WAL is then fsynced outside it, so other threads' reads and appends are not held
        up by the disk. The head is visible to readers a moment before it is durable; it is
        durable when this returns, and only then may it be published (a head lost in a crash
        after it was gossiped would be re-signed differently: an equivocation)."""
        self._writable()
        if self.identity is None:
            raise LedgerError("signing a tree head needs this node's identity")
        with self._sync_lock:
            with self._lock:
                env = self._commit_head(durable=not self._wal)
            self._sync_wal()
        return env

    def _commit_head(self, durable: bool) -> bytes:
        db = self._db
        if durable:
            db.execute("PRAGMA synchronous=FULL")
        try:
            with self._write():
                n, _ = self._tail()
                tree = self._sync_tree(n)
                last = db.execute("SELECT seq, ts FROM heads ORDER BY seq DESC LIMIT 1").fetchone()
                seq = 1 if last is None else last[0] + 1
                ts = int(time.time())
                if last is not None and ts <= last[1]:
                    ts = last[1] + 1
                root = tree.root(n)
                env = sign_tree_head(self.identity, n, root, ts, seq)
                db.execute("INSERT INTO meta(key, value) VALUES ('peer_id', ?) ON CONFLICT(key) DO NOTHING",
                           (self.identity.peer_id,))
                db.execute("INSERT INTO heads(seq, size, root, ts, envelope) VALUES (?, ?, ?, ?, ?)",
                           (seq, n, root, ts, env))
        finally:
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")
        return env

    def _sync_wal(self) -> None:
        """fsync the WAL: every transaction committed so far becomes durable (what a commit with
        synchronous=FULL does, without holding SQLite's write lock or ours). Caller holds
        _sync_lock. SQLite puts no POSIX locks on the -wal file, so opening and closing it here
        cannot drop the connection's locks."""
        if not self._wal:
            return
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            fd = os.open(wal, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return  # no WAL: everything was checkpointed into the database, and checkpoints fsync it
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if not self._dir_synced:  # the WAL's directory entry, once (SQLite does it on its first WAL fsync)
            try:
                dfd = os.open(wal.parent, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
            except OSError:  # some file systems cannot fsync a directory; SQLite ignores that too
                pass
            self._dir_synced = True

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (caller holds _lock): BEGIN IMMEDIATE, COMMIT, or ROLLBACK on any
        error; then the commit bookkeeping."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self._committed()

    def _committed(self) -> None:
        """Bookkeeping after a write transaction (caller holds _lock)."""
        self._commits += 1
        if self.background_checkpoints and self._wal and self._commits - self._checkpointed_at >= MAX_UNCHECKPOINTED:
            # Nobody ran checkpoint(): keep the WAL bounded here, on the writer's path.
            self._checkpointed_at = self._commits
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    @property
    def checkpoint_due(self) -> bool:
        """With background_checkpoints: enough commits since the last checkpoint to run one."""
        return self.background_checkpoints and self._wal and self._commits - self._checkpointed_at >= CHECKPOINT_AFTER

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (SQLite's PASSIVE checkpoint: both are fsynced),
        on a connection of its own, so writers and readers go on meanwhile. Blocking: call it in a
        worker thread. Needed only with background_checkpoints (otherwise SQLite checkpoints on
        commit)."""
        self._writable()
        if not self._wal:
            return
        with self._sync_lock:
            with self._lock:
                start = self._commits
            if self._ckpt_db is None:
                self._ckpt_db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
                self._ckpt_db.execute("PRAGMA synchronous=NORMAL")  # checkpoints fsync WAL and database
            self._ckpt_db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            with self._lock:
                self._checkpointed_at = max(self._checkpointed_at, start)

    def add_peer_head(self, envelope: bytes) -> Equivocation | None:
        """Verify and keep a tree head another node signed. Returns an equivocation proof (also
        stored) if the issuer signed a different head with the same seq, or two heads of the same
        size with different roots; None otherwise."""
        self._writable()
        head = open_tree_head(envelope)
        with self._lock, self._write() as db:
            db.execute("INSERT OR IGNORE INTO peer_heads(issuer, seq, size, root, ts, envelope, received_ts) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (head.issuer, head.seq, head.size, head.root, head.timestamp, envelope, _now_ms()))
            q = ("SELECT envelope FROM {t} WHERE {w} envelope != ? AND (seq = ? OR (size = ? AND root != ?)) "
                 "ORDER BY seq LIMIT 1")
            row = db.execute(q.format(t="peer_heads", w="issuer = ? AND"),
                             (head.issuer, envelope, head.seq, head.size, head.root)).fetchone()
            if row is None and head.issuer == self.owner:
                # Our own head, gossiped back: it must be one we signed.
                row = db.execute(q.format(t="heads", w=""), (envelope, head.seq, head.size, head.root)).fetchone()
            eq = None
            if row is not None:
                other = row[0]
                first, second = sorted([other, envelope])
                eq = Equivocation(head.issuer, TreeHead.TAG, first, second)
                verify_equivocation(eq.to_bytes())  # raises if the stored row was not a real conflict
                self._insert_equivocation(eq)
        return eq

    def prune_peer_heads(self, issuer: str, keep: int) -> int:
        """Delete all but the `keep` latest heads (by seq) of `issuer`; returns how many went.
        Heads kept per peer were unbounded (issue 10, finding 4); the caller picks `keep`
        (trust.intake). Equivocation is still caught between any two heads kept, and proofs
        already found stay in the equivocations table."""
        self._writable()
        if keep < 1:
            raise ValueError("keep at least one head per peer")
        with self._lock, self._write() as db:
            cur = db.execute("DELETE FROM peer_heads WHERE issuer = ? AND rowid NOT IN "
                             "(SELECT rowid FROM peer_heads WHERE issuer = ? ORDER BY seq DESC, rowid DESC LIMIT ?)",
                             (issuer, issuer, keep))
            return cur.rowcount

    def _insert_equivocation(self, eq: Equivocation) -> bool:
        cur = self._db.execute("INSERT OR IGNORE INTO equivocations(issuer, kind, proof, ts) VALUES (?, ?, ?, ?)",
                               (eq.issuer, eq.kind, eq.to_bytes(), _now_ms()))
        return cur.rowcount == 1

    def record_equivocation(self, eq: Equivocation) -> bool:
        """Verify and store an equivocation proof; True if it was not stored yet."""
        self._writable()
        checked = verify_equivocation(eq.to_bytes())
        with self._lock, self._write():
            new = self._insert_equivocation(checked)
        return new

    # -- reading -------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """Number of entries stored."""
        with self._lock:
            return self._tail()[0]

    def root(self, size: int | None = None) -> bytes:
        """RFC 9162 root over the first size entries (default: all)."""
        with self._lock:
            return self._sync_tree().root(size)

    def raw_entries(self, start: int = 0, stop: int | None = None, page: int = 1000) -> Iterator[RawEntry]:
        """Rows with start <= idx < stop as stored, bodies undecoded."""
        lo = start
        while stop is None or lo < stop:
            with self._lock:
                rows = self._db.execute(
                    "SELECT idx, ts, kind, body, leaf FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?",
                    (lo, _MAX_U64 >> 1 if stop is None else stop, page)).fetchall()
            if not rows:
                return
            for r in rows:
                yield RawEntry(*r)
            lo = rows[-1][0] + 1

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[Entry]:
        """Entries with start <= idx < stop, bodies strictly decoded (LedgerError if one is not)."""
        for r in self.raw_entries(start, stop):
            try:
                body = decode_body(r.body)
            except DecodeError as exc:
                raise LedgerError(f"entry {r.idx}: {exc}; run 'vouchnet ledger audit'") from None
            yield Entry(r.idx, r.ts, r.kind, body, r.leaf)

    def entry(self, idx: int) -> Entry:
        for e in self.entries(idx, idx + 1):
            return e
        raise LedgerError(f"no entry {idx} (the ledger has {self.size})")

    def heads(self) -> list[Head]:
        with self._lock:
            return [Head(*r) for r in self._db.execute("SELECT seq, size, root, ts, envelope FROM heads ORDER BY seq")]

    def latest_head(self) -> Head | None:
        with self._lock:
            row = self._db.execute("SELECT seq, size, root, ts, envelope FROM heads ORDER BY seq DESC LIMIT 1").fetchone()
        return Head(*row) if row else None

    def peer_heads(self, issuer: str | None = None) -> list[PeerHead]:
        sql = "SELECT issuer, seq, size, root, ts, envelope, received_ts FROM peer_heads"
        args: tuple = ()
        if issuer is not None:
            sql += " WHERE issuer = ?"
            args = (issuer,)
        with self._lock:
            return [PeerHead(*r) for r in self._db.execute(sql + " ORDER BY issuer, seq", args)]

    def equivocations(self) -> list[Equivocation]:
        with self._lock:
            rows = self._db.execute("SELECT proof FROM equivocations ORDER BY rowid").fetchall()
        return [verify_equivocation(r[0]) for r in rows]

    def equivocators(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT DISTINCT issuer FROM equivocations")}

    # -- proofs --------------------------------------------------------------------------------

    def prove(self, index: int) -> dict[str, Any]:
        """An inclusion proof of entry `index` against the latest signed head, as a JSON-ready
        bundle anyone can check with `verify_proof_bundle` (no access to the ledger needed)."""
        with self._lock:
            head = self.latest_head()
            if head is None:
                raise LedgerError("the ledger has no signed tree head yet; sign one first")
            if type(index) is not int or not 0 <= index < head.size:
                raise ProofError(f"entry {index} is not covered by the latest signed head "
                                 f"(seq {head.seq}, size {head.size})")
            tree = self._sync_tree()
            if tree.size < head.size or tree.root(head.size) != head.root:
                raise LedgerError("the stored entries do not match the latest signed head; "
                                  "run 'vouchnet ledger audit'")
            row = self._db.execute("SELECT ts, kind, body FROM entries WHERE idx = ?", (index,)).fetchone()
            data = leaf_data(index, row[0], row[1], row[2])
            if leaf_hash(data) != tree.leaf(index):
                raise LedgerError(f"entry {index} does not match its leaf hash; run 'vouchnet ledger audit'")
            proof = tree.inclusion_proof(index, head.size)
        b64 = base64.b64encode
        return {"head": b64(head.envelope).decode("ascii"), "index": index,
                "leaf_data": b64(data).decode("ascii"), "proof": [b64(p).decode("ascii") for p in proof]}

    # -- audit ---------------------------------------------------------------------------------

    def audit(self, workers: int = 2, trust_check: Callable[["Ledger"], list[Problem]] | None = None) -> AuditReport:
        """Re-derive and check everything stored; every problem found is reported (see docs/ledger.md)."""
        t0 = time.perf_counter()
        with self._lock:
            return _Audit(self, max(1, int(workers)), trust_check, t0).run()


class _Audit:
    """One run of Ledger.audit; see docs/ledger.md for the list of checks."""

    def __init__(self, ledger: Ledger, workers: int, trust_check: Any, t0: float):
        self.ledger = ledger
        self.db = ledger._db
        self.workers = workers
        self.trust_check = trust_check
        self.t0 = t0
        self.problems: list[Problem] = []
        self.pool: Executor | None = None
        self.envelopes = 0
        self.records: list[tuple[str, str, Any, bytes]] = []   # (where, kind, record, envelope)
        self.tree = MerkleTree()
        self.own_heads: dict[int, TreeHead] = {}
        self.own_envelopes: dict[int, bytes] = {}

    def add(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))

    def _spread(self, remote: Callable[..., _T], local: Callable[..., _T], tasks: Sequence[tuple]) -> Iterator[_T]:
        """remote(*task) in the `workers - 1` helper processes and local(*task) here, results in
        task order. The helpers are kept two tasks ahead and this process takes the next task
        itself rather than wait. Once this process got less than 3/4 of a core for two tasks in a
        row while helpers ran, the machine has no core to spare (helpers would only take CPU from
        it, the more so as the kernel shares CPU per session): it goes on alone."""
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers - 1, initializer=_worker_init,
                                            initargs=(_ro_uri(self.ledger.path),))
        ahead = 2 * (self.workers - 1)
        futures: dict[int, Future[_T]] = {}
        results: dict[int, _T] = {}
        nxt = 0
        starved = 0  # tasks in a row on which this process got under 3/4 of a core (2: alone from then on)
        for i in range(len(tasks)):
            while i not in results:
                if i in futures and (futures[i].done() or nxt == len(tasks)):
                    results[i] = futures.pop(i).result()
                    break
                while starved < 2 and nxt < len(tasks) and sum(not f.done() for f in futures.values()) < ahead:
                    futures[nxt] = self.pool.submit(remote, *tasks[nxt])
                    nxt += 1
                if nxt < len(tasks):
                    wall, cpu = time.perf_counter(), time.process_time()
                    results[nxt] = local(*tasks[nxt])
                    if starved < 2:
                        starved = 0 if time.process_time() - cpu > 0.75 * (time.perf_counter() - wall) else starved + 1
                    nxt += 1
            yield results.pop(i)

    def verify(self, jobs: list[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
        """Check signed records: inline, or spread over the processes when there are many."""
        self.envelopes += len(jobs)
        if len(jobs) <= PARALLEL_SIGNATURES or self.workers == 1:
            return _verify_jobs(jobs)
        step = -(-len(jobs) // (self.workers * 4))
        parts = [(jobs[i:i + step],) for i in range(0, len(jobs), step)]
        return list(chain.from_iterable(self._spread(_worker_verify, _verify_jobs, parts)))

    def run(self) -> AuditReport:
        db = self.db
        owner = self.ledger.owner
        n = heads = peers = 0
        try:
            db.execute("BEGIN")  # one snapshot for everything read here
            try:
                self._owner(owner)
                n = self._entries(owner)
                heads = self._heads(owner)
                peers = self._peer_heads(owner)
                self._equivocation_rows()
            finally:
                db.execute("COMMIT")
                if self.pool is not None:
                    self.pool.shutdown()
                    self.pool = None
        except BaseException:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            raise
        found = _find_equivocations(self.records)
        if self.trust_check is not None:
            try:
                for p in self.trust_check(self.ledger) or []:
                    self.problems.append(p if isinstance(p, Problem) else Problem(str(p.where), str(p.what)))
            except Exception as exc:  # the hook is someone else's code: report it, don't crash
                self.add("trust check", f"failed: {type(exc).__name__}: {exc}")
        return AuditReport(not self.problems, n, heads, self.problems, time.perf_counter() - self.t0,
                           found, self.envelopes, peers)

    def _owner(self, owner: str | None) -> None:
        stored = self.ledger._meta("peer_id")
        if owner is not None and stored is not None and stored != owner:
            self.add("ledger", f"the ledger records owner {stored}, but this node is {owner}")

    # (1) entries; (6) the envelopes in them
    def _entries(self, owner: str | None) -> int:
        db = self.db
        (top,) = db.execute("SELECT max(idx) FROM entries").fetchone()
        n = 0 if top is None or top < 0 else top + 1
        rows = 0
        for (idx,) in db.execute("SELECT idx FROM entries WHERE idx < 0 ORDER BY idx LIMIT 100"):
            self.add(f"entry {idx}", "has a negative index")
        if self.workers > 1 and n >= PARALLEL_ROWS:
            ranges = [(lo, min(lo + CHUNK, n), owner) for lo in range(0, n, CHUNK)]
            chunks = self._spread(_worker_scan, partial(_scan, db, verify=True), ranges)
        else:
            chunks = iter([_scan(db, 0, n, owner, verify=False)])
        levels: list[list[bytes]] = []
        complete = True
        prev: _Chunk | None = None
        jobs: list[tuple[tuple[int, str], str, Any]] = []
        for c in chunks:
            if prev is not None and c.count and type(c.first_ts) is int and type(prev.last_ts) is int \
                    and c.first_ts < prev.last_ts:
                self.add(f"entry {c.first_idx}",
                         f"timestamp goes backwards ({c.first_ts} ms, entry before has {prev.last_ts} ms)")
            for where, what in c.problems:
                self.add(where, what)
            if c.truncated:
                self.add(f"entries {c.lo}..{c.hi - 1}", f"{c.truncated} more problems not listed")
            rows += c.count
            complete = complete and c.count == c.hi - c.lo
            for k, lv in enumerate(c.levels):
                if k == len(levels):
                    levels.append([])
                levels[k].extend(lv)
            for idx, kind, rec, env in c.records:
                self.records.append((f"entry {idx}", kind, rec, env))
            jobs.extend(c.jobs)
            self.envelopes += c.envelopes
            if c.count:
                prev = c
        # Envelopes the in-process scan collected.
        sink = _Chunk(0, 0)
        for (idx, kind), rec, err in self.verify(jobs):
            if err is not None:
                self.add(f"entry {idx}", f"{kind}: {err}")
            else:
                _check_record(idx, kind, rec, b"", owner, sink)
        for where, what in sink.problems:
            self.add(where, what)
        envs = {idx: data for (idx, _), _, data in jobs}
        for idx, kind, rec, _ in sink.records:
            self.records.append((f"entry {idx}", kind, rec, envs[idx]))
        # (2) the tree over the recomputed leaves
        if not levels:
            levels = [[]]
        if complete:  # chunks are aligned perfect subtrees: carry on from their levels
            while len(levels[-1]) > 1:
                levels.append(_pairs(levels[-1]))
            self.tree = _tree_from_levels(levels)
        else:  # missing entries shift every later leaf: rebuild over the leaves as they are
            self.tree = _tree_from_levels(_levels(levels[0]))
        return rows

    # (2)-(5) own heads
    def _heads(self, owner: str | None) -> int:
        rows = self.db.execute("SELECT seq, size, root, ts, envelope FROM heads ORDER BY seq").fetchall()
        if rows and owner is None:
            self.add("ledger", "the ledger has signed heads but records no owner peer ID")
        results = self.verify([(i, "tree-head", r[4]) for i, r in enumerate(rows)])
        verified: list[TreeHead] = []
        expect = 1
        for (seq, size, root, ts, env), (_, th, err) in zip(rows, results):
            where = f"head seq {seq}"
            if seq != expect:
                if seq < 1:
                    self.add(where, "sequence numbers start at 1")
                elif seq == expect + 1:
                    self.add(f"head seq {expect}", f"is missing (heads jump from seq {expect - 1} to {seq})")
                else:
                    self.add(f"head seq {expect}", f"heads seq {expect}..{seq - 1} are missing")
            expect = seq + 1
            if err is not None:
                self.add(where, f"signature check failed: {err}")
                continue
            if owner is not None and th.issuer != owner:
                self.add(where, f"signed by {th.issuer}, not by this ledger's owner {owner}")
            stored = {"seq": seq, "size": size, "root": root, "ts": ts}
            signed = {"seq": th.seq, "size": th.size, "root": th.root, "ts": th.timestamp}
            for col in stored:
                if stored[col] != signed[col]:
                    self.add(where, f"stored {col} differs from the signed head")
            verified.append(th)
            self.own_heads.setdefault(th.seq, th)
            self.own_envelopes.setdefault(th.seq, env)
        tree = self.tree
        prev: TreeHead | None = None
        for th in verified:
            where = f"head seq {th.seq}"
            if th.size > tree.size:
                self.add(where, f"covers {th.size} entries but the ledger has {tree.size}")
            elif tree.root(th.size) != th.root:
                self.add(where, f"root does not match the tree rebuilt from entries 0..{th.size - 1}")
            if prev is not None:
                if th.seq <= prev.seq:
                    self.add(where, f"sequence number does not increase (head before has seq {prev.seq})")
                if th.timestamp <= prev.timestamp:
                    self.add(where, f"timestamp {th.timestamp} does not increase "
                                    f"(head seq {prev.seq} has {prev.timestamp})")
                if th.size < prev.size:
                    self.add(where, f"the tree shrinks from {prev.size} to {th.size} entries since head seq {prev.seq}")
                elif prev.size > 0 and th.size <= tree.size:
                    try:
                        proof = tree.consistency_proof(prev.size, th.size)
                        verify_consistency(prev.size, th.size, prev.root, th.root, proof)
                    except ProofError as exc:
                        self.add(where, f"not consistent with head seq {prev.seq}: {exc}")
                elif prev.size == 0 and th.size == 0 and prev.root != th.root:
                    self.add(where, f"empty tree with a different root than head seq {prev.seq}")
            prev = th
        return len(rows)

    # (6) peer heads; split view against our own heads
    def _peer_heads(self, owner: str | None) -> int:
        rows = self.db.execute("SELECT issuer, seq, size, root, ts, envelope, received_ts FROM peer_heads "
                               "ORDER BY issuer, seq").fetchall()
        results = self.verify([(i, "tree-head", r[5]) for i, r in enumerate(rows)])
        latest = max(self.own_heads) if self.own_heads else 0
        for (issuer, seq, size, root, ts, env, _rts), (_, th, err) in zip(rows, results):
            where = f"peer head {issuer} seq {seq}"
            if err is not None:
                self.add(where, f"signature check failed: {err}")
                continue
            stored = {"issuer": issuer, "seq": seq, "size": size, "root": root, "ts": ts}
            signed = {"issuer": th.issuer, "seq": th.seq, "size": th.size, "root": th.root, "ts": th.timestamp}
            for col in stored:
                if stored[col] != signed[col]:
                    self.add(where, f"stored {col} differs from the signed head")
            self.records.append((where, "peer-head", th, env))
            if owner is not None and th.issuer == owner:
                mine = self.own_heads.get(th.seq)
                if mine is not None and self.own_envelopes[th.seq] != env:
                    self.add(where, f"a peer holds a head of ours that differs from our head seq {th.seq} (split view)")
                elif mine is None and th.seq > latest:
                    self.add(where, f"a peer holds our head seq {th.seq} but our latest is seq {latest}: "
                                    "the ledger was rolled back")
                same_size = [h for h in self.own_heads.values() if h.size == th.size and h.root != th.root]
                if same_size:
                    self.add(where, f"a peer holds a head of ours for size {th.size} with another root than "
                                    f"our head seq {same_size[0].seq} (split view)")
        return len(rows)

    def _equivocation_rows(self) -> None:
        rows = self.db.execute("SELECT rowid, issuer, kind, proof FROM equivocations ORDER BY rowid").fetchall()
        results = self.verify([(i, "equivocation", r[3]) for i, r in enumerate(rows)])
        for (rowid, issuer, kind, _), (_, eq, err) in zip(rows, results):
            where = f"equivocation {rowid}"
            if err is not None:
                self.add(where, f"proof does not verify: {err}")
                continue
            if (issuer, kind) != (eq.issuer, eq.kind):
                self.add(where, f"stored issuer/kind ({issuer}, {kind}) differ from the proof ({eq.issuer}, {eq.kind})")


def _find_equivocations(records: list[tuple[str, str, Any, bytes]]) -> list[Equivocation]:
    """(7) Two different signed records of one issuer in one slot, among verified records."""
    seen: dict[tuple, tuple[Any, bytes]] = {}
    found: dict[bytes, Equivocation] = {}

    def conflict(slot: tuple, rec: Any, env: bytes, differs: Callable[[Any, Any], bool]) -> None:
        first = seen.setdefault(slot, (rec, env))
        if first[1] != env and differs(first[0], rec):
            a, b = sorted([first[1], env])
            eq = Equivocation(rec.issuer, rec.TAG, a, b)
            found.setdefault(eq.to_bytes(), eq)

    for _where, kind, rec, env in records:
        if isinstance(rec, Attestation):
            conflict(("att",) + rec.slot(), rec, env, lambda x, y: x != y)
        elif isinstance(rec, TreeHead):
            conflict(("seq",) + rec.slot(), rec, env, lambda x, y: x != y)
            conflict(("size", rec.issuer, rec.size), rec, env, lambda x, y: x.root != y.root)
    return list(found.values())


# --- proof bundles ---------------------------------------------------------------------------------

_BUNDLE_KEYS = {"head", "index", "leaf_data", "proof"}


def _unb64(value: Any, what: str, max_len: int) -> bytes:
    if not isinstance(value, str):
        raise DecodeError(f"proof bundle: {what} must be a base64 string")
    if len(value) > max_len * 4 // 3 + 4:
        raise DecodeError(f"proof bundle: {what} is too long")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise DecodeError(f"proof bundle: {what} is not valid base64") from None


def verify_proof_bundle(bundle: Any, issuer: str | None = None) -> tuple[TreeHead, int]:
    """Check a bundle made by `Ledger.prove`, without the ledger: the head's signature (and, if
    given, that `issuer` signed it), that leaf_data is entry `index` with a canonical body, and the
    inclusion proof. Returns (head, index); raises DecodeError, SignatureError or ProofError."""
    if not isinstance(bundle, dict):
        raise DecodeError("proof bundle must be a JSON object")
    keys = set(bundle)
    if keys != _BUNDLE_KEYS:
        missing, extra = sorted(_BUNDLE_KEYS - keys), sorted(str(k) for k in keys - _BUNDLE_KEYS)
        raise DecodeError("proof bundle: " + "; ".join(
            ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(extra)}"] if extra else [])))
    index = bundle["index"]
    if type(index) is not int or not 0 <= index <= _MAX_U64:
        raise DecodeError("proof bundle: index must be a non-negative integer")
    proof_in = bundle["proof"]
    if not isinstance(proof_in, list) or len(proof_in) > 64:
        raise DecodeError("proof bundle: proof must be a list of at most 64 base64 hashes")
    head_bytes = _unb64(bundle["head"], "head", TreeHead.MAX_SIZE)
    data = _unb64(bundle["leaf_data"], "leaf_data", _HDR.size + MAX_KIND + MAX_BODY)
    proof = [_unb64(p, f"proof hash {i}", HASH_SIZE) for i, p in enumerate(proof_in)]
    head = open_tree_head(head_bytes)
    if issuer is not None and head.issuer != issuer:
        raise SignatureError(f"the tree head is signed by {head.issuer}, not by {issuer}")
    idx, _ts, _kind, body = parse_leaf_data(data)
    if idx != index:
        raise ProofError(f"leaf data is entry {idx}, but the bundle claims index {index}")
    decode_body(body)
    if index >= head.size:
        raise ProofError(f"index {index} is outside the signed head's tree of size {head.size}")
    verify_inclusion(leaf_hash(data), index, head.size, proof, head.root)
    return head, index
