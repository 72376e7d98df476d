"""Tests for trust.manifest: signed content manifests and content IDs."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trust import encoding
from trust.errors import DecodeError, SignatureError
from trust.identity import Identity
from trust.manifest import (
    CID_LEN,
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    MAX_CONTENT_SIZE,
    MAX_MANIFEST,
    MAX_NAME_BYTES,
    MIN_CHUNK_SIZE,
    Manifest,
    content_id,
    open_manifest,
    parse_cid,
    sign_manifest,
)
from trust.records import sign_record
from trust.signing import seal

ALICE = Identity.from_seed(hashlib.sha256(b"alice").digest())
BOB = Identity.from_seed(hashlib.sha256(b"bob").digest())
ROOT = hashlib.sha256(b"root").digest()


def manifest_dict(**changes) -> dict:
    d = {"root": ROOT, "size": 1000, "chunk": DEFAULT_CHUNK_SIZE, "name": "file.bin",
         "type": "application/octet-stream", "created": 1_700_000_000, "publisher": ALICE.peer_id}
    d.update(changes)
    return d


def seal_dict(d: dict, signer: Identity = ALICE) -> bytes:
    """Envelope bytes for a hand-made payload with a valid signature by ``signer``."""
    return seal(signer.signing_key, Manifest.TAG, Manifest.VERSION, encoding.encode(d)).to_bytes()


SIGNED = sign_manifest(ALICE, ROOT, 1000, "file.bin", created=1_700_000_000)[1]


# ----------------------------------------------------------------------------- round trip

def test_sign_open_round_trip():
    cid, signed, m = sign_manifest(ALICE, ROOT, 123_456, "report.pdf", "application/pdf",
                                   chunk_size=MIN_CHUNK_SIZE, created=42)
    assert m == Manifest(ROOT, 123_456, MIN_CHUNK_SIZE, "report.pdf", "application/pdf", 42, ALICE.peer_id)
    assert cid == content_id(signed)
    assert parse_cid(cid) == hashlib.sha256(signed).digest()
    cid2, m2 = open_manifest(signed)
    assert (cid2, m2) == (cid, m)
    assert open_manifest(signed, expected_cid=cid) == (cid, m)
    assert len(signed) <= MAX_MANIFEST


def test_hand_sealed_valid_dict_is_accepted():
    # Control for the invalid-field tests: the hand-made construction itself is sound.
    _, m = open_manifest(seal_dict(manifest_dict()))
    assert m.publisher == ALICE.peer_id and m.size == 1000


def test_different_content_different_cid():
    a = sign_manifest(ALICE, ROOT, 1, "a", created=1)[0]
    b = sign_manifest(ALICE, ROOT, 1, "b", created=1)[0]
    c = sign_manifest(BOB, ROOT, 1, "a", created=1)[0]
    assert len({a, b, c}) == 3


def test_default_created_is_now():
    import time
    before = int(time.time())
    _, _, m = sign_manifest(ALICE, ROOT, 1, "x")
    assert before <= m.created <= int(time.time()) + 1


# ----------------------------------------------------------------------------- content IDs

@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_cid_round_trip(data):
    cid = content_id(data)
    assert len(cid) == CID_LEN == 57
    assert cid[0] == "b" and cid == cid.lower()
    assert set(cid[1:]) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert parse_cid(cid) == hashlib.sha256(data).digest()
    # multibase 'b' = RFC 4648 base32 lower, no padding, of 0x01 0x12 0x20 || sha256 (35 bytes = 56 chars)
    assert base64.b32decode(cid[1:].upper()) == b"\x01\x12\x20" + hashlib.sha256(data).digest()


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().lower().rstrip("=")


GOOD_CID = content_id(b"hello")
BAD_CIDS = {
    "uppercase": GOOD_CID.upper(),
    "uppercase body": "b" + GOOD_CID[1:].upper(),
    "one upper char": GOOD_CID[:-1] + GOOD_CID[-1].upper(),
    "too short": GOOD_CID[:-1],
    "too long": GOOD_CID + "a",
    "empty": "",
    "wrong multibase": "z" + GOOD_CID[1:],
    "wrong version": "b" + _b32(b"\x02\x12\x20" + hashlib.sha256(b"hello").digest()),
    "wrong hash code": "b" + _b32(b"\x01\x13\x20" + hashlib.sha256(b"hello").digest()),
    "wrong digest length": "b" + _b32(b"\x01\x12\x21" + hashlib.sha256(b"hello").digest()),
    "ipfs cidv1 raw": "b" + _b32(b"\x01\x55\x12\x20" + hashlib.sha256(b"hello").digest())[:56],
    "non-base32 digit 0": GOOD_CID[:-1] + "0",
    "non-base32 digit 1": GOOD_CID[:-1] + "1",
    "non-base32 digit 8": GOOD_CID[:-1] + "8",
    "padding char": GOOD_CID[:-1] + "=",
    "space": GOOD_CID[:-1] + " ",
    "non-ascii": GOOD_CID[:-1] + "é",
    "bytes": GOOD_CID.encode(),
    "None": None,
}


@pytest.mark.parametrize("bad", list(BAD_CIDS.values()), ids=list(BAD_CIDS))
def test_parse_cid_rejects(bad):
    with pytest.raises(DecodeError):
        parse_cid(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=70) | st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=56, max_size=56)
       .map(lambda s: "b" + s))
def test_parse_cid_fuzz(text):
    try:
        digest = parse_cid(text)
    except DecodeError:
        return
    assert len(digest) == 32
    assert "b" + _b32(b"\x01\x12\x20" + digest) == text


def test_expected_cid_of_other_manifest():
    other_cid, other, _ = sign_manifest(ALICE, ROOT, 1000, "other.bin", created=1_700_000_000)
    with pytest.raises(DecodeError):
        open_manifest(SIGNED, expected_cid=other_cid)
    with pytest.raises(DecodeError):
        open_manifest(other, expected_cid=content_id(SIGNED))
    with pytest.raises(DecodeError):
        open_manifest(SIGNED, expected_cid=content_id(SIGNED).upper())
    assert open_manifest(SIGNED, expected_cid=content_id(SIGNED))[0] == content_id(SIGNED)


# ----------------------------------------------------------------------------- damaged input

def test_every_truncation_rejected():
    for n in range(len(SIGNED)):
        with pytest.raises((DecodeError, SignatureError)):
            open_manifest(SIGNED[:n])


def test_trailing_bytes_rejected():
    with pytest.raises(DecodeError):
        open_manifest(SIGNED + b"\x00")


def test_oversized_rejected():
    with pytest.raises(DecodeError):
        open_manifest(SIGNED + b"\x00" * (MAX_MANIFEST + 1 - len(SIGNED)))
    with pytest.raises(DecodeError):
        open_manifest(b"\x00" * (10 * MAX_MANIFEST))
    # The largest manifest the field limits allow still fits under MAX_MANIFEST...
    biggest = seal_dict(manifest_dict(name="n" * MAX_NAME_BYTES, type="a" * 63 + "/" + "b" * 63,
                                      size=MAX_CONTENT_SIZE, created=2**40))
    assert len(biggest) <= MAX_MANIFEST
    assert open_manifest(biggest)[1].name == "n" * MAX_NAME_BYTES
    # ...and a validly signed envelope over the limit is refused on size alone.
    padded = seal_dict(manifest_dict(pad=b"\x00" * MAX_MANIFEST))
    assert len(padded) > MAX_MANIFEST
    with pytest.raises(DecodeError, match="limit"):
        open_manifest(padded)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_flipped_signature_bit(where):
    fmt, tag, version, payload, pk, sig = encoding.decode(SIGNED, MAX_MANIFEST)
    i = {"first": 0, "middle": 31, "last": 63}[where]
    bad = bytearray(sig)
    bad[i] ^= 0x01
    forged = encoding.encode([fmt, tag, version, payload, pk, bytes(bad)])
    with pytest.raises(SignatureError):
        open_manifest(forged)


def test_every_bit_flip_rejected():
    for bit in range(len(SIGNED) * 8):
        b = bytearray(SIGNED)
        b[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((DecodeError, SignatureError)):
            open_manifest(bytes(b))


def test_signed_by_other_than_publisher():
    m = Manifest(ROOT, 1000, DEFAULT_CHUNK_SIZE, "file.bin", "application/octet-stream", 1, ALICE.peer_id)
    forged = seal(BOB.signing_key, Manifest.TAG, Manifest.VERSION, encoding.encode(m.to_dict())).to_bytes()
    with pytest.raises(SignatureError):
        open_manifest(forged)
    with pytest.raises(SignatureError):
        open_manifest(forged, expected_cid=content_id(forged))
    with pytest.raises(SignatureError):
        sign_record(BOB, m)


def test_publisher_key_swapped_in_envelope():
    # Alice's payload and signature, with Bob's key put in the envelope: signature fails.
    fmt, tag, version, payload, _, sig = encoding.decode(SIGNED, MAX_MANIFEST)
    forged = encoding.encode([fmt, tag, version, payload, BOB.public_key, sig])
    with pytest.raises(SignatureError):
        open_manifest(forged)


INVALID_FIELDS = {
    "name with slash": {"name": "a/b"},
    "name is ..": {"name": ".."},
    "name is .": {"name": "."},
    "name empty": {"name": ""},
    "name with backslash": {"name": "a\\b"},
    "name traversal": {"name": "../etc/passwd"},
    "name with NUL": {"name": "a\x00b"},
    "name with newline": {"name": "a\nb"},
    "name too long": {"name": "n" * (MAX_NAME_BYTES + 1)},
    "name too long in utf-8": {"name": "é" * 128},
    "name not text": {"name": b"file"},
    "chunk not power of two": {"chunk": 3 * MIN_CHUNK_SIZE},
    "chunk odd": {"chunk": MIN_CHUNK_SIZE + 1},
    "chunk too small": {"chunk": MIN_CHUNK_SIZE // 2},
    "chunk too big": {"chunk": MAX_CHUNK_SIZE * 2},
    "chunk zero": {"chunk": 0},
    "chunk negative": {"chunk": -MIN_CHUNK_SIZE},
    "chunk bool": {"chunk": True},
    "media type no slash": {"type": "text"},
    "media type uppercase": {"type": "Text/Plain"},
    "media type params": {"type": "text/plain; charset=utf-8"},
    "media type empty": {"type": ""},
    "media type two slashes": {"type": "a/b/c"},
    "media type too long": {"type": "a" * 64 + "/b"},
    "media type newline": {"type": "text/plain\n"},
    "size negative": {"size": -1},
    "size too big": {"size": MAX_CONTENT_SIZE + 1},
    "size bool": {"size": False},
    "size text": {"size": "1000"},
    "root short": {"root": ROOT[:31]},
    "root long": {"root": ROOT + b"\x00"},
    "root text": {"root": ROOT.hex()},
    "created negative": {"created": -1},
    "created too big": {"created": 2**40 + 1},
    "publisher not a peer ID": {"publisher": "alice"},
    "publisher bytes": {"publisher": ALICE.public_key},
    "publisher lowercase": {"publisher": ALICE.peer_id.lower()},
    "publisher rsa-style": {"publisher": "QmRQ353oFNqt8zfZ9X1HgRUszwv9RkEEwmMZZkbkYEsybn"},
}


@pytest.mark.parametrize("change", list(INVALID_FIELDS.values()), ids=list(INVALID_FIELDS))
def test_invalid_fields_rejected_on_decode(change):
    data = seal_dict(manifest_dict(**change))
    with pytest.raises(DecodeError):
        open_manifest(data)


@pytest.mark.parametrize("key", ["root", "size", "chunk", "name", "type", "created", "publisher"])
def test_missing_field_rejected(key):
    d = manifest_dict()
    del d[key]
    with pytest.raises(DecodeError):
        open_manifest(seal_dict(d))


def test_extra_field_rejected():
    with pytest.raises(DecodeError):
        open_manifest(seal_dict(manifest_dict(extra=1)))


def test_payload_not_a_map_rejected():
    for payload in ([1, 2], "x", 5):
        data = seal(ALICE.signing_key, Manifest.TAG, Manifest.VERSION, encoding.encode(payload)).to_bytes()
        with pytest.raises(DecodeError):
            open_manifest(data)
    # payload bytes that are not canonical CBOR, validly signed
    data = seal(ALICE.signing_key, Manifest.TAG, Manifest.VERSION, b"\x18\x01").to_bytes()
    with pytest.raises(DecodeError):
        open_manifest(data)


@pytest.mark.parametrize("change", [
    {"chunk": MIN_CHUNK_SIZE}, {"chunk": MAX_CHUNK_SIZE}, {"size": 0}, {"size": MAX_CONTENT_SIZE},
    {"name": "n" * MAX_NAME_BYTES}, {"name": ".hidden"}, {"name": "a..b"}, {"name": "résumé.pdf"},
    {"type": "text/plain"}, {"type": "application/vnd.api+json"}, {"created": 0}, {"created": 2**40},
])
def test_boundary_fields_accepted(change):
    _, m = open_manifest(seal_dict(manifest_dict(**change)))
    assert m.to_dict() == manifest_dict(**change)


@pytest.mark.parametrize("kwargs", [
    {"name": "a/b"}, {"name": ".."}, {"name": ""}, {"chunk_size": 3 * MIN_CHUNK_SIZE},
    {"chunk_size": MAX_CHUNK_SIZE * 2}, {"media_type": "nope"}, {"size": -1},
])
def test_sign_manifest_validates_locally(kwargs):
    args = {"root": ROOT, "size": 1, "name": "f"}
    args.update(kwargs)
    with pytest.raises(DecodeError):
        sign_manifest(ALICE, **args)


# ----------------------------------------------------------------------------- chunk arithmetic

def _m(size: int, chunk: int = MIN_CHUNK_SIZE) -> Manifest:
    return Manifest(ROOT, size, chunk, "f", "application/octet-stream", 0, ALICE.peer_id)


C = MIN_CHUNK_SIZE


@pytest.mark.parametrize("size, lengths", [
    (0, []),
    (1, [1]),
    (C - 1, [C - 1]),
    (C, [C]),
    (C + 1, [C, 1]),
    (2 * C, [C, C]),
    (2 * C + 5, [C, C, 5]),
])
def test_chunk_count_and_length(size, lengths):
    m = _m(size)
    assert m.chunk_count == len(lengths)
    assert [m.chunk_length(i) for i in range(m.chunk_count)] == lengths
    for bad in (-1, len(lengths), len(lengths) + 1):
        with pytest.raises(DecodeError):
            m.chunk_length(bad)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, MAX_CONTENT_SIZE), st.integers(14, 22))
def test_chunk_arithmetic_property(size, log_chunk):
    chunk = 1 << log_chunk
    m = _m(size, chunk)
    n = m.chunk_count
    assert n * chunk >= size > (n - 1) * chunk or (size == 0 and n == 0)
    if n:
        last = m.chunk_length(n - 1)
        assert 1 <= last <= chunk
        assert (n - 1) * chunk + last == size
        assert m.chunk_length(0) == min(chunk, size)


# ----------------------------------------------------------------------------- fuzz

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_random_bytes(data):
    with pytest.raises((DecodeError, SignatureError)):
        open_manifest(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_manifest(data):
    b = bytearray(SIGNED)
    i = data.draw(st.integers(0, len(b) - 1))
    v = data.draw(st.integers(0, 255).filter(lambda x: x != b[i]))
    b[i] = v
    cut = data.draw(st.integers(0, len(b)))
    with pytest.raises((DecodeError, SignatureError)):
        open_manifest(bytes(b[:cut]))
