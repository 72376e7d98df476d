"""Tests for trust.encoding: canonical CBOR encoding and strict decoding."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from trust.encoding import (
    MAX_DEPTH,
    check_str,
    decode,
    encode,
    get_bytes,
    get_int,
    get_str,
    require_keys,
)
from trust.errors import DecodeError

BIG = 1 << 20


def same(a, b) -> bool:
    """Structural equality that also compares types (so True != 1 and a tuple != a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(sorted(a)) == list(sorted(b)) and all(same(a[k], b[k]) for k in a)
    return a == b


def depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


# ----------------------------------------------------------------------------- round trip

def test_known_canonical_encodings():
    # Hand-written RFC 8949 encodings, independent of the code under test.
    assert encode(0) == b"\x00"
    assert encode(23) == b"\x17"
    assert encode(24) == b"\x18\x18"
    assert encode(-1) == b"\x20"
    assert encode(256) == b"\x19\x01\x00"
    assert encode(b"") == b"\x40"
    assert encode("a") == b"\x61a"
    assert encode(True) == b"\xf5"
    assert encode(False) == b"\xf4"
    assert encode(None) == b"\xf6"
    assert encode([1, 2]) == b"\x82\x01\x02"
    # Deterministic map order: shorter key first, then bytewise ("b" < "aa" < "ab").
    assert encode({"ab": 3, "aa": 2, "b": 1}) == b"\xa3\x61b\x01\x62aa\x02\x62ab\x03"


def test_round_trip_nested():
    value = {"peer": "x", "n": [1, -2, 2**40, b"\x00\xff", None, True, False, {"k": []}], "e": {}}
    data = encode(value)
    assert same(decode(data, BIG), value)


def test_tuple_encodes_as_list():
    assert encode((1, 2)) == encode([1, 2])
    assert decode(encode((1, 2)), BIG) == [1, 2]


def test_encoding_ignores_dict_insertion_order():
    a = {"z": 1, "a": 2, "mm": 3}
    b = {"mm": 3, "a": 2, "z": 1}
    assert encode(a) == encode(b)


def test_accepts_bytearray_and_memoryview():
    data = encode([1, "x"])
    assert decode(bytearray(data), BIG) == [1, "x"]
    assert decode(memoryview(data), BIG) == [1, "x"]


# ----------------------------------------------------------------------------- strict decoding

REJECTED = {
    "non-minimal int (0x18 0x01)": b"\x18\x01",
    "non-minimal int (0x19 0x00 0x01)": b"\x19\x00\x01",
    "non-minimal int 8-byte head": b"\x1b" + struct.pack(">Q", 5),
    "non-minimal negative int": b"\x38\x00",
    "non-minimal string length": b"\x78\x01a",
    "non-minimal array length": b"\x98\x01\x01",
    "unsorted map keys": b"\xa2\x61b\x01\x61a\x02",
    "unsorted map keys (longer first)": b"\xa2\x62aa\x01\x61b\x02",
    "duplicate map keys": b"\xa2\x61a\x01\x61a\x02",
    "indefinite array": b"\x9f\x01\xff",
    "indefinite map": b"\xbf\x61a\x01\xff",
    "indefinite text": b"\x7f\x61a\xff",
    "indefinite bytes": b"\x5f\x41a\xff",
    "trailing byte": b"\x01\x00",
    "two items": b"\x01\x01",
    "tag 1 (epoch datetime)": b"\xc1\x1a\x51\x4b\x67\xb0",
    "tag 0 (datetime string)": b"\xc0\x74" + b"2013-03-21T20:04:00Z",
    "tag 55799 (self-describe)": b"\xd9\xd9\xf7\x01",
    "tag 258 (set)": b"\xd9\x01\x02\x81\x01",
    "tag 28 (shareable)": b"\xd8\x1c\x81\x01",
    "tag 29 (shared ref)": b"\xd8\x1d\x00",
    "tag 24 (embedded)": b"\xd8\x18\x41\x01",
    "tag 2 bignum for small value": b"\xc2\x41\x01",
    "unknown tag": b"\xda\x00\x01\x00\x00\x01",
    "float16": b"\xf9\x3c\x00",
    "float32": b"\xfa\x3f\x80\x00\x00",
    "float64": b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00",
    "float in a list": b"\x81\xf9\x3c\x00",
    "undefined": b"\xf7",
    "simple value 0": b"\xe0",
    "simple value 32": b"\xf8\x20",
    "int map key": b"\xa1\x01\x02",
    "bytes map key": b"\xa1\x41a\x01",
    "array map key": b"\xa1\x81\x01\x01",
    "bool map key": b"\xa1\xf5\x01",
    "null map key": b"\xa1\xf6\x01",
    "invalid utf-8": b"\x61\xff",
    "truncated text": b"\x62a",
    "truncated array": b"\x82\x01",
    "huge declared byte length": b"\x5b" + b"\xff" * 8,
    "huge declared array length": b"\x9b\x00\x00\x00\x00\xff\xff\xff\xff",
    "reserved additional info": b"\x1c",
    "lone break": b"\xff",
    "too deep": b"\x81" * (MAX_DEPTH + 1) + b"\x01",
    "far too deep": b"\x81" * 10_000 + b"\x01",
    "too deep maps": b"\xa1\x61a" * (MAX_DEPTH + 1) + b"\x01",
}


@pytest.mark.parametrize("data", list(REJECTED.values()), ids=list(REJECTED))
def test_strict_decode_rejects(data):
    with pytest.raises(DecodeError):
        decode(data, BIG)


def test_canonical_variants_of_rejected_inputs_are_accepted():
    # Controls for the table above: the canonical form of the same value decodes.
    assert decode(b"\x01", BIG) == 1
    assert decode(b"\xa2\x61a\x02\x61b\x01", BIG) == {"a": 2, "b": 1}
    assert decode(b"\x81\x01", BIG) == [1]
    assert decode(b"\x61a", BIG) == "a"
    assert decode(b"\x81" * MAX_DEPTH + b"\x01", BIG) is not None


def test_max_depth_boundary():
    ok = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert decode(encode(ok), BIG) == ok
    with pytest.raises(DecodeError):
        encode([ok])  # one level deeper is refused on the way out too
    with pytest.raises(DecodeError):
        decode(b"\x81" + encode(ok), BIG)


def test_oversize_input():
    data = encode("a" * 100)
    assert decode(data, len(data)) == "a" * 100
    with pytest.raises(DecodeError):
        decode(data, len(data) - 1)
    with pytest.raises(DecodeError):
        decode(b"\x00" * 1000, 999)


def test_empty_input():
    with pytest.raises(DecodeError):
        decode(b"", BIG)


@pytest.mark.parametrize("bad", ["abc", None, 5, [1]])
def test_non_bytes_input(bad):
    with pytest.raises(DecodeError):
        decode(bad, BIG)


@pytest.mark.parametrize("bad", [1.0, float("nan"), {1: 2}, {b"k": 1}, {"a": {1.5}}, object(), {1, 2}, [1.5]])
def test_encode_rejects_non_plain(bad):
    with pytest.raises(DecodeError):
        encode(bad)


# ----------------------------------------------------------------------------- hypothesis

scalars = st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20)
plain = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(plain)
def test_round_trip_property(value):
    assume(depth(value) <= MAX_DEPTH)
    data = encode(value)
    out = decode(data, BIG)
    assert same(out, value)
    assert encode(out) == data


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_non_minimal_int_head_rejected(n):
    wide = b"\x1b" + struct.pack(">Q", n)  # 8-byte argument, minimal only for n >= 2**32
    with pytest.raises(DecodeError):
        decode(wide, BIG)
    assert decode(encode(n), BIG) == n


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.integers(0, 10), min_size=2, max_size=6))
def test_reordered_map_rejected(d):
    # Re-emit the map entries in reverse canonical order: same value, non-canonical bytes.
    canonical = encode(d)
    body = canonical[1:]  # header is one byte for < 24 entries
    entries = []
    pos = 0
    for _ in range(len(d)):
        klen = body[pos] - 0x60
        assert klen < 24
        ent = body[pos:pos + 1 + klen + 1]  # key header + key + 1-byte int value
        entries.append(ent)
        pos += len(ent)
    assert pos == len(body)
    reordered = canonical[:1] + b"".join(reversed(entries))
    assume(reordered != canonical)
    with pytest.raises(DecodeError):
        decode(reordered, BIG)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=64))
def test_fuzz_decode_only_decode_error(data):
    try:
        value = decode(data, 1024)
    except DecodeError:
        return
    assert encode(value) == data


@settings(max_examples=200, deadline=None)
@given(plain, st.data())
def test_fuzz_mutated_encodings(value, data):
    assume(depth(value) <= MAX_DEPTH)
    enc = bytearray(encode(value))
    i = data.draw(st.integers(0, len(enc) - 1))
    enc[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(enc)))
    mutated = bytes(enc[:cut])
    try:
        out = decode(mutated, BIG)
    except DecodeError:
        return
    assert encode(out) == mutated


# ----------------------------------------------------------------------------- field readers

def test_get_int():
    d = {"a": 5, "t": True, "f": False, "s": "5", "b": b"\x05", "n": None, "neg": -1, "big": 2**70}
    assert get_int(d, "a", 0, 10) == 5
    assert get_int(d, "a", 5, 5) == 5
    assert get_int(d, "neg", -1, 0) == -1
    for key in ("t", "f", "s", "b", "n"):
        with pytest.raises(DecodeError):
            get_int(d, key, -10, 10)
    with pytest.raises(DecodeError):
        get_int(d, "a", 6, 10)
    with pytest.raises(DecodeError):
        get_int(d, "a", 0, 4)
    with pytest.raises(DecodeError):
        get_int(d, "neg", 0, 10)
    with pytest.raises(DecodeError):
        get_int(d, "big", 0, 2**63 - 1)


def test_get_bytes():
    d = {"k": b"abc", "s": "abc", "ba": bytearray(b"abc"), "l": [1, 2, 3], "i": 3}
    assert get_bytes(d, "k") == b"abc"
    assert get_bytes(d, "k", size=3) == b"abc"
    assert get_bytes(d, "k", max_size=3) == b"abc"
    with pytest.raises(DecodeError):
        get_bytes(d, "k", size=2)
    with pytest.raises(DecodeError):
        get_bytes(d, "k", size=4)
    with pytest.raises(DecodeError):
        get_bytes(d, "k", max_size=2)
    for key in ("s", "l", "i"):
        with pytest.raises(DecodeError):
            get_bytes(d, key)


def test_get_str():
    d = {"ok": "héllo wörld", "b": b"x", "i": 1, "n": None}
    assert get_str(d, "ok", 100) == "héllo wörld"
    for key in ("b", "i", "n"):
        with pytest.raises(DecodeError):
            get_str(d, key, 100)
    # The bound is in UTF-8 bytes, not characters: "é" is 2 bytes.
    assert check_str("éé", "k", 4) == "éé"
    with pytest.raises(DecodeError):
        check_str("ééé", "k", 5)
    with pytest.raises(DecodeError):
        check_str("abcdef", "k", 5)
    assert check_str("", "k", 0) == ""


@pytest.mark.parametrize("ch", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f"])
def test_check_str_rejects_control_characters(ch):
    with pytest.raises(DecodeError):
        check_str(f"a{ch}b", "k", 100)
    with pytest.raises(DecodeError):
        get_str({"k": ch}, "k", 100)


def test_check_str_accepts_printable_boundaries():
    assert check_str(" ~", "k", 10) == " ~"  # 0x20 and 0x7e are fine


def test_require_keys():
    d = {"a": 1, "b": 2}
    assert require_keys(d, {"a", "b"}, "rec") is d
    with pytest.raises(DecodeError, match="missing c"):
        require_keys(d, {"a", "b", "c"}, "rec")
    with pytest.raises(DecodeError, match="unknown b"):
        require_keys(d, {"a"}, "rec")
    for bad in ([("a", 1), ("b", 2)], "ab", None, 5, b"ab"):
        with pytest.raises(DecodeError):
            require_keys(bad, {"a", "b"}, "rec")


def test_bignums_rejected():
    # tag 2 (positive bignum) for 2**64: canonical in cbor2, but beyond what any record field allows
    with pytest.raises(DecodeError, match="64 bits"):
        decode(bytes.fromhex("c249010000000000000000"), 100)
