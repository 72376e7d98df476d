"""Canonical entry bodies and leaf data: the CBOR rules of docs/ledger.md, column-wise fast paths, leaf hashes."""

from __future__ import annotations

import hashlib
import operator
import re
import struct
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain, compress, repeat
from typing import Any

import cbor2

from trust import encoding
from trust.errors import DecodeError
from trust.ledger.types import MAX_BODY, MAX_KIND, MAX_U64


_KIND_RE = re.compile(r"[a-z][a-z-]{0,31}")

# leaf data header with the RFC 9162 leaf prefix in front: 0x00 || idx || ts || len(kind)
LEAF_HEADER = struct.Struct(">xQQB")
HEADER = struct.Struct(">QQB")


FLAT = frozenset({int, str, bytes, bool, type(None)})
_MIN_INT = -(1 << 64)
# Key tuples known to be all-text and in canonical (RFC 8949 §4.2.1) order: for a flat map with
# such keys, plain cbor2 encoding *is* the canonical encoding (ints are always minimal), which is
# ~3x cheaper than cbor2's canonical mode. Learnt per key tuple by `canonical_keys`.
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
        if not _MIN_INT <= value <= MAX_U64:
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
    if canonical_keys(tuple(body)):
        for v in body.values():
            t = type(v)
            if t is int:
                if not _MIN_INT <= v <= MAX_U64:
                    break
            elif t not in FLAT:
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


def canonical_keys(keys: tuple) -> bool:
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
    return keysets <= _canon_keys or all(map(canonical_keys, keysets))


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
    if type(v) is dict and canonical_keys(tuple(v)) and FLAT.issuperset(map(type, v.values())) \
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
# No lookaround reaches past the bytes a value consumes (`Shapes.unmatched` relies on it).

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


class Shapes:
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
                    or not FLAT.issuperset(map(type, body.values())) or not canonical_keys(keys) \
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



def kind_bytes(kind: Any) -> bytes:
    if type(kind) is not str or not _KIND_RE.fullmatch(kind):
        raise DecodeError(f"entry kind {str(kind)[:40]!r} is not 1-{MAX_KIND} characters of [a-z-] "
                          "starting with a letter")
    return kind.encode("ascii")


def leaf_data(idx: int, ts: int, kind: str, body: bytes) -> bytes:
    """The bytes an entry contributes to the tree: idx || ts || len(kind) || kind || body."""
    kb = kind_bytes(kind)
    return HEADER.pack(idx, ts, len(kb)) + kb + body


def parse_leaf_data(data: bytes) -> tuple[int, int, str, bytes]:
    """(idx, ts, kind, body bytes) from leaf data; DecodeError if it is malformed."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < HEADER.size + 1:
        raise DecodeError("leaf data is too short to hold an entry")
    data = bytes(data)
    idx, ts, klen = HEADER.unpack_from(data)
    if not 1 <= klen <= MAX_KIND or len(data) < HEADER.size + klen + 1:
        raise DecodeError("leaf data has an invalid kind length")
    try:
        kind = data[HEADER.size:HEADER.size + klen].decode("ascii")
    except UnicodeDecodeError:
        raise DecodeError("leaf data kind is not ASCII") from None
    kind_bytes(kind)
    return idx, ts, kind, data[HEADER.size + klen:]



_SHA256 = hashlib.sha256()


@lru_cache(maxsize=64)
def kind_struct(kb: bytes) -> struct.Struct:
    return struct.Struct(f">xQQB{len(kb)}s")


def leaf_hashes(idxs: Iterable[int], tss: Iterable[int], kinds: Sequence[str], kbs_map: dict[Any, bytes],
                 bodies: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 leaf hashes of entries, column-wise (C-level map()s)."""
    if len(kbs_map) == 1:  # one kind: its bytes go into the packed header
        kb = next(iter(kbs_map.values()))
        hdrs: Iterable[bytes] = map(kind_struct(kb).pack, idxs, tss, repeat(len(kb)), repeat(kb))
    else:
        kbs = list(map(kbs_map.__getitem__, kinds))
        hdrs = map(operator.add, map(LEAF_HEADER.pack, idxs, tss, map(len, kbs)), kbs)
    out: list[bytes] = []
    append = out.append
    new = _SHA256.copy  # copying a hash object is cheaper than making one (~0.1 us of ~0.5)
    for data in map(operator.add, hdrs, bodies):
        h = new()
        h.update(data)
        append(h.digest())
    return out



def encode_bodies(bodies: Sequence[Any]) -> list[bytes]:
    """encode_body of each, column-wise when they are all flat maps with known key order."""
    if set(map(type, bodies)) == {dict} and _all_canonical_keys(bodies):
        values = list(chain.from_iterable(map(dict.values, bodies)))
        types = list(map(type, values))
        kinds = set(types)
        if kinds <= FLAT:
            ok = True
            if int in kinds:
                ints = list(compress(values, map(operator.is_, types, repeat(int))))
                ok = min(ints) >= _MIN_INT and max(ints) <= MAX_U64
            if ok:
                out = list(map(_dumps, bodies))
                if max(map(len, out)) <= MAX_BODY:
                    return out
    return list(map(encode_body, bodies))
