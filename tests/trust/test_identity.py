"""Tests for trust.peerid, trust.identity, trust.signing and trust.records."""

from __future__ import annotations

import base64
import hashlib

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.secp256k1 import create_new_key_pair as create_secp256k1_key_pair
from libp2p.peer.id import ID

from trust import encoding
from trust.errors import DecodeError, SignatureError
from trust.identity import Identity, IdentityRecord, make_identity_record, open_identity_record
from trust.manifest import Manifest, open_manifest, sign_manifest
from trust.peerid import is_peer_id, peer_id_from_public_key, public_key_from_peer_id
from trust.records import open_record, sign_record
from trust.signing import DOMAIN, FORMAT, Envelope, open_envelope, seal

SEEDS = [bytes(32), b"\xff" * 32, bytes(range(32)), hashlib.sha256(b"vouchnet").digest(),
         hashlib.sha256(b"another seed").digest()]

ADDRS = ["/ip4/127.0.0.1/tcp/4001", "/ip6/::1/udp/4001/quic-v1"]


# ----------------------------------------------------------------------------- peer IDs vs libp2p

@pytest.mark.parametrize("seed", SEEDS, ids=lambda s: s.hex()[:8])
def test_peer_id_matches_libp2p(seed):
    kp = create_new_key_pair(seed)
    libp2p_id = ID.from_pubkey(kp.public_key)
    ident = Identity.from_seed(seed)
    assert ident.peer_id == libp2p_id.to_base58()
    assert ident.public_key == kp.public_key.to_bytes()
    assert peer_id_from_public_key(kp.public_key.to_bytes()) == libp2p_id.to_base58()
    assert public_key_from_peer_id(libp2p_id.to_base58()) == kp.public_key.to_bytes()


@settings(max_examples=30, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_peer_id_matches_libp2p_property(seed):
    kp = create_new_key_pair(seed)
    assert Identity.from_seed(seed).peer_id == ID.from_pubkey(kp.public_key).to_base58()


def test_peer_id_shape():
    pid = Identity.from_seed(SEEDS[2]).peer_id
    assert pid.startswith("12D3KooW") and len(pid) == 52
    raw = base58.b58decode(pid)
    # identity multihash (0x00, len 36) of protobuf {Type: Ed25519, Data: key}
    assert raw == b"\x00\x24\x08\x01\x12\x20" + Identity.from_seed(SEEDS[2]).public_key


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_public_key_round_trip(key):
    pid = peer_id_from_public_key(key)
    assert public_key_from_peer_id(pid) == key
    assert is_peer_id(pid)


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_peer_id_from_wrong_key_length(n):
    with pytest.raises(DecodeError):
        peer_id_from_public_key(bytes(n))


def _bad_peer_ids() -> dict[str, object]:
    good = Identity.from_seed(SEEDS[2]).peer_id
    key = Identity.from_seed(SEEDS[2]).public_key
    secp = ID.from_pubkey(create_secp256k1_key_pair().public_key).to_base58()
    # An RSA peer ID is a sha2-256 multihash of the protobuf key ("Qm..."); build that form directly.
    rsa_like = ID(b"\x12\x20" + hashlib.sha256(b"some rsa public key protobuf").digest()).to_base58()
    # Identity multihash, but with key type 2 (secp256k1) and 32 bytes of data.
    wrong_type = base58.b58encode(b"\x00\x24\x08\x02\x12\x20" + key).decode()
    # The same Ed25519 multihash as a CIDv1 (libp2p-key codec 0x72), base32.
    cid_form = "b" + base64.b32encode(b"\x01\x72" + base58.b58decode(good)).decode().lower().rstrip("=")
    # Sha2-256 multihash of the Ed25519 protobuf (what very old libp2p versions produced).
    sha_form = ID(b"\x12\x20" + hashlib.sha256(b"\x08\x01\x12\x20" + key).digest()).to_base58()
    # A 52-char string that starts like a peer ID but decodes to a different length.
    long_form = base58.b58encode(b"\x00\x24\x08\x01\x12\x20" + key + b"\x00").decode()
    return {
        "secp256k1": secp,
        "rsa": rsa_like,
        "wrong key type": wrong_type,
        "cidv1": cid_form,
        "sha256 ed25519": sha_form,
        "extra byte": long_form,
        "empty": "",
        "garbage": "hello world",
        "lowercase": good.lower(),
        "uppercase": good.upper(),
        "truncated": good[:-1],
        "extended": good + "1",
        "leading space": " " + good[:-1],
        "trailing newline": good[:-1] + "\n",
        "non-base58 0": good[:-1] + "0",
        "non-base58 l": good[:-1] + "l",
        "non-ascii": good[:-1] + "é",
        "bytes": good.encode(),
        "None": None,
        "int": 12,
    }


BAD_PEER_IDS = _bad_peer_ids()


@pytest.mark.parametrize("bad", list(BAD_PEER_IDS.values()), ids=list(BAD_PEER_IDS))
def test_public_key_from_bad_peer_id(bad):
    with pytest.raises(DecodeError):
        public_key_from_peer_id(bad)
    assert is_peer_id(bad) is False


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_public_key_from_peer_id_fuzz(text):
    try:
        key = public_key_from_peer_id(text)
    except DecodeError:
        return
    assert peer_id_from_public_key(key) == text


# ----------------------------------------------------------------------------- Identity

def test_from_seed_deterministic_and_distinct():
    a1, a2, b = Identity.from_seed(SEEDS[0]), Identity.from_seed(SEEDS[0]), Identity.from_seed(SEEDS[1])
    assert a1.peer_id == a2.peer_id and a1.seed == SEEDS[0]
    assert a1.peer_id != b.peer_id
    assert Identity.generate().peer_id != Identity.generate().peer_id


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_from_seed_wrong_length(n):
    with pytest.raises(ValueError):
        Identity.from_seed(bytes(n))


@pytest.mark.parametrize("seed", SEEDS[1:], ids=lambda s: s.hex()[:8])
def test_repr_hides_seed(seed):
    ident = Identity.from_seed(seed)
    for text in (repr(ident), str(ident), f"{ident!r}", repr([ident]), repr({"k": ident})):
        assert seed.hex() not in text.lower()
        assert repr(seed) not in text
        assert seed.hex().upper() not in text
        assert base64.b64encode(seed).decode() not in text
        assert ident.peer_id in text


# ----------------------------------------------------------------------------- identity records

@pytest.fixture
def alice() -> Identity:
    return Identity.from_seed(SEEDS[2])


@pytest.fixture
def bob() -> Identity:
    return Identity.from_seed(SEEDS[3])


def test_identity_record_round_trip(alice):
    data = make_identity_record(alice, ADDRS, seq=7, created=1_700_000_000)
    rec = open_identity_record(data)
    assert rec == IdentityRecord(alice.peer_id, alice.public_key, tuple(ADDRS), 1_700_000_000, 7)
    rec2, env = open_record(data, IdentityRecord)
    assert rec2 == rec
    assert env.signer == alice.peer_id and env.public_key == alice.public_key
    assert env.to_bytes() == data


def test_identity_record_envelope_layout(alice):
    data = make_identity_record(alice, ADDRS, seq=1, created=5)
    fmt, tag, version, payload, pk, sig = encoding.decode(data, 1 << 16)
    assert (fmt, tag, version, pk) == (1, "vouchnet/identity", 1, alice.public_key)
    assert encoding.decode(payload, 1 << 16) == {"peer": alice.peer_id, "key": alice.public_key,
                                                 "addrs": ADDRS, "created": 5, "seq": 1}
    # The signature covers DOMAIN || tag || 0 || version || payload: check it with PyNaCl directly.
    alice.signing_key.verify_key.verify(DOMAIN + b"vouchnet/identity\x00\x01" + payload, sig)


def test_identity_record_default_created(alice):
    import time
    before = int(time.time())
    rec = open_identity_record(make_identity_record(alice, [], seq=0))
    assert before <= rec.created <= int(time.time()) + 1
    assert rec.addrs == ()


_VALID = make_identity_record(Identity.from_seed(SEEDS[2]), ADDRS, seq=3, created=1_700_000_000)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _assert_rejected(data: bytes, opener=open_identity_record) -> None:
    try:
        opener(data)
    except (DecodeError, SignatureError):
        return
    raise AssertionError("tampered record was accepted")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=len(_VALID) * 8 - 1))
def test_bit_flip_rejected_property(bit):
    _assert_rejected(_flip(_VALID, bit))


def test_every_bit_flip_rejected():
    for bit in range(len(_VALID) * 8):
        _assert_rejected(_flip(_VALID, bit))


def test_payload_naming_other_peer_rejected(alice, bob):
    # Alice's record, sealed with Bob's key: the signature is valid, the binding is not.
    rec = IdentityRecord(alice.peer_id, alice.public_key, tuple(ADDRS), 1, 1)
    data = seal(bob.signing_key, IdentityRecord.TAG, IdentityRecord.VERSION, encoding.encode(rec.to_dict())).to_bytes()
    with pytest.raises(SignatureError):
        open_identity_record(data)
    with pytest.raises(SignatureError):
        sign_record(bob, rec)


def test_payload_key_not_matching_peer_rejected(alice, bob):
    d = IdentityRecord(alice.peer_id, bob.public_key, (), 1, 1).to_dict()
    data = seal(alice.signing_key, IdentityRecord.TAG, IdentityRecord.VERSION, encoding.encode(d)).to_bytes()
    with pytest.raises(DecodeError):
        open_identity_record(data)


@pytest.mark.parametrize("change", [
    {"addrs": ["/ip4/1.2.3.4/tcp/1\n"]},
    {"addrs": ["a"] * 17},
    {"addrs": ["a" * 257]},
    {"addrs": "not a list"},
    {"addrs": [1]},
    {"seq": -1},
    {"seq": True},
    {"created": 2**40 + 1},
    {"extra": 1},
    {"key": b"\x00" * 31},
])
def test_identity_record_bad_fields(alice, change):
    d = IdentityRecord(alice.peer_id, alice.public_key, (), 1, 1).to_dict()
    d.update(change)
    data = seal(alice.signing_key, IdentityRecord.TAG, IdentityRecord.VERSION, encoding.encode(d)).to_bytes()
    with pytest.raises(DecodeError):
        open_identity_record(data)


def test_identity_record_bad_fields_control(alice):
    # Control for the test above: the same hand-sealed construction is accepted when fields are valid.
    d = IdentityRecord(alice.peer_id, alice.public_key, ("a",) * 16, 2**40, 2**63 - 1).to_dict()
    data = seal(alice.signing_key, IdentityRecord.TAG, IdentityRecord.VERSION, encoding.encode(d)).to_bytes()
    assert open_identity_record(data).seq == 2**63 - 1


# ----------------------------------------------------------------------------- domain separation

def _retag(data: bytes, tag: str | None = None, version: int | None = None, fmt: int | None = None) -> bytes:
    f, t, v, payload, pk, sig = encoding.decode(data, 1 << 20)
    return encoding.encode([f if fmt is None else fmt, t if tag is None else tag,
                            v if version is None else version, payload, pk, sig])


def test_manifest_envelope_retagged_as_identity(alice):
    # A manifest whose payload would also decode as an identity record is not needed: the
    # signature check must fail before the payload is even looked at.
    _, signed, _ = sign_manifest(alice, bytes(32), 10, "f.txt", created=1)
    forged = _retag(signed, tag="vouchnet/identity")
    with pytest.raises(SignatureError):
        open_identity_record(forged)
    with pytest.raises(SignatureError):
        open_envelope(forged, tag="vouchnet/identity", record_version=1)
    # Without re-tagging it is simply the wrong record type.
    with pytest.raises(DecodeError):
        open_identity_record(signed)


def test_identity_envelope_retagged_as_manifest(alice):
    data = make_identity_record(alice, ADDRS, seq=1, created=1)
    forged = _retag(data, tag="vouchnet/manifest")
    with pytest.raises(SignatureError):
        open_manifest(forged)
    with pytest.raises(SignatureError):
        open_record(forged, Manifest)
    with pytest.raises(DecodeError):
        open_manifest(data)


def test_signature_over_same_payload_differs_by_tag(alice):
    payload = encoding.encode({"x": 1})
    a = seal(alice.signing_key, "vouchnet/identity", 1, payload)
    b = seal(alice.signing_key, "vouchnet/manifest", 1, payload)
    assert a.signature != b.signature
    swapped = Envelope("vouchnet/identity", 1, payload, a.public_key, b.signature).to_bytes()
    with pytest.raises(SignatureError):
        open_envelope(swapped, tag="vouchnet/identity", record_version=1)


def test_version_changed_rejected(alice):
    data = make_identity_record(alice, ADDRS, seq=1, created=1)
    bumped = _retag(data, version=2)
    with pytest.raises(DecodeError):
        open_identity_record(bumped)
    # Even a reader that expects version 2 cannot accept it: the version is signed.
    with pytest.raises(SignatureError):
        open_envelope(bumped, tag="vouchnet/identity", record_version=2)
    for v in (0, 255):
        with pytest.raises(DecodeError):
            open_identity_record(_retag(data, version=v))
    with pytest.raises(DecodeError):
        open_identity_record(_retag(data, version=True))


@pytest.mark.parametrize("fmt", [0, 2, 255])
def test_envelope_format_changed_rejected(alice, fmt):
    data = make_identity_record(alice, ADDRS, seq=1, created=1)
    with pytest.raises(DecodeError):
        open_identity_record(_retag(data, fmt=fmt))
    assert FORMAT == 1


@pytest.mark.parametrize("value", [
    [1, "vouchnet/identity", 1, b"", b"\x00" * 32],  # 5 elements
    [1, "vouchnet/identity", 1, b"", b"\x00" * 32, b"\x00" * 64, 0],  # 7 elements
    {"tag": "vouchnet/identity"},
    [1, "vouchnet/identity", 1, "payload", b"\x00" * 32, b"\x00" * 64],
    [1, "vouchnet/identity", 1, b"", b"\x00" * 31, b"\x00" * 64],
    [1, "vouchnet/identity", 1, b"", b"\x00" * 32, b"\x00" * 63],
    [1, 7, 1, b"", b"\x00" * 32, b"\x00" * 64],
])
def test_malformed_envelopes(value):
    with pytest.raises(DecodeError):
        open_identity_record(encoding.encode(value))


def test_zero_key_and_signature_is_signature_error():
    data = encoding.encode([1, "vouchnet/identity", 1, b"", b"\x00" * 32, b"\x00" * 64])
    with pytest.raises(SignatureError):
        open_identity_record(data)


def test_oversized_envelope_rejected(alice):
    data = make_identity_record(alice, ADDRS, seq=1, created=1)
    with pytest.raises(DecodeError):
        open_envelope(data, tag="vouchnet/identity", record_version=1, max_size=len(data) - 1)
    assert open_envelope(data, tag="vouchnet/identity", record_version=1, max_size=len(data)).signer == alice.peer_id


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_open_identity_record(data):
    _assert_rejected(data)
