"""Canonical, strict CBOR for everything that is signed.

Encoding is RFC 8949 §4.2.1 core deterministic CBOR (cbor2 ``canonical=True``). Decoding is
strict: the bytes must be exactly the canonical encoding of what they decode to (re-encoding
catches non-minimal integers, unsorted or duplicate keys, indefinite lengths and trailing
bytes), nesting is bounded, and only plain types are allowed. No floats: values that need a
fraction are fixed-point integers, so one value has exactly one encoding.
"""
from __future__ import annotations

import unicodedata
from typing import Any

import cbor2

from trust.errors import DecodeError

MAX_DEPTH = 8
_SCALARS = (int, bytes, str, bool, type(None))


def encode(value: Any) -> bytes:
    _check_types(value, 0)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, max_size: int) -> Any:
    """Decode ``data`` strictly; any deviation from canonical form is a DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"encoded record is {len(data)} bytes, the limit is {max_size}")
    if not data:
        raise DecodeError("empty record")
    try:
        value = cbor2.loads(
            data,
            max_depth=MAX_DEPTH,
            allow_indefinite=False,
            allow_duplicate_keys=False,
            tag_hook=_reject_tag,
            semantic_decoders={},
        )
    except DecodeError:
        raise
    except Exception as exc:  # cbor2 raises several types on hostile input
        raise DecodeError(f"malformed CBOR: {exc}") from None
    _check_types(value, 0)
    if cbor2.dumps(value, canonical=True) != data:
        raise DecodeError("record is not in canonical CBOR form (or has trailing bytes)")
    return value


def _reject_tag(decoder: Any, tag: Any) -> Any:
    raise DecodeError(f"CBOR tag {tag.tag} is not allowed")


def _check_types(value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise DecodeError("record nests too deeply")
    t = type(value)  # exact-type fast path for what decoding produces; subclasses take the long way
    if t is bytes or t is str or t is bool or value is None:
        return
    if t is int:
        if not -(2**64) <= value < 2**64:
            raise DecodeError("integers beyond 64 bits (CBOR bignums) are not allowed")
        return
    if isinstance(value, float):
        raise DecodeError("floating-point values are not allowed")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**64) <= value < 2**64:
        raise DecodeError("integers beyond 64 bits (CBOR bignums) are not allowed")
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_types(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise DecodeError("map keys must be text strings")
            _check_types(item, depth + 1)
        return
    raise DecodeError(f"type {type(value).__name__} is not allowed in a record")


# Field readers: a record's from_dict uses these so every field is type- and bound-checked.

def require_keys(d: Any, keys: set[str], what: str) -> dict:
    if not isinstance(d, dict):
        raise DecodeError(f"{what}: expected a map")
    got = set(d)
    if got != keys:
        missing, extra = sorted(keys - got), sorted(got - keys)
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unknown {', '.join(extra)}")
        raise DecodeError(f"{what}: {'; '.join(parts)}")
    return d


def get_int(d: dict, key: str, lo: int, hi: int) -> int:
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise DecodeError(f"field {key!r} must be an integer in [{lo}, {hi}]")
    return v


def get_bytes(d: dict, key: str, size: int | None = None, max_size: int | None = None) -> bytes:
    v = d[key]
    if not isinstance(v, bytes):
        raise DecodeError(f"field {key!r} must be a byte string")
    if size is not None and len(v) != size:
        raise DecodeError(f"field {key!r} must be {size} bytes, got {len(v)}")
    if max_size is not None and len(v) > max_size:
        raise DecodeError(f"field {key!r} is longer than {max_size} bytes")
    return v


def get_str(d: dict, key: str, max_bytes: int) -> str:
    return check_str(d[key], key, max_bytes)


def check_str(v: Any, key: str, max_bytes: int) -> str:
    if not isinstance(v, str):
        raise DecodeError(f"field {key!r} must be a text string")
    if len(v.encode("utf-8")) > max_bytes:
        raise DecodeError(f"field {key!r} is longer than {max_bytes} bytes")
    # Control and format characters (C0, C1, bidi overrides, zero-width) can spoof what a
    # terminal shows, so no field may carry them. Printable ASCII has none of them.
    if v.isascii() and v.isprintable():
        return v
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in v):
        raise DecodeError(f"field {key!r} contains control or invisible characters")
    return v
