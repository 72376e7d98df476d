"""Signed envelopes: one canonical wire form for every signed record type.

Envelope (canonical CBOR array): [FORMAT, tag, record_version, payload, public_key, signature].
The signature covers DOMAIN || tag || 0x00 || record_version || payload, so a signature made for
one record type (tag) or version can never verify as another. `open_envelope` checks size,
form and signature before anyone looks inside `payload`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing

from trust import encoding
from trust.errors import DecodeError, SignatureError
from trust.peerid import peer_id_from_public_key

FORMAT = 1
DOMAIN = b"vouchnet-signed-v1\x00"
_TAG_RE = re.compile(r"^[a-z][a-z0-9./-]{2,47}$")
MAX_ENVELOPE = 1 << 20


def signed_message(tag: str, record_version: int, payload: bytes) -> bytes:
    if not _TAG_RE.fullmatch(tag):
        raise ValueError(f"invalid record tag {tag!r}")
    if not 0 <= record_version <= 255:
        raise ValueError("record version is one byte")
    return DOMAIN + tag.encode("ascii") + b"\x00" + bytes([record_version]) + payload


@dataclass(frozen=True)
class Envelope:
    tag: str
    record_version: int
    payload: bytes
    public_key: bytes
    signature: bytes

    @property
    def signer(self) -> str:
        """The signer's libp2p peer ID."""
        return peer_id_from_public_key(self.public_key)

    def to_bytes(self) -> bytes:
        return encoding.encode(
            [FORMAT, self.tag, self.record_version, self.payload, self.public_key, self.signature]
        )


def seal(signing_key: nacl.signing.SigningKey, tag: str, record_version: int, payload: bytes) -> Envelope:
    sig = signing_key.sign(signed_message(tag, record_version, payload)).signature
    return Envelope(tag, record_version, payload, bytes(signing_key.verify_key), sig)


def open_envelope(data: bytes, *, tag: str, record_version: int, max_size: int = MAX_ENVELOPE) -> Envelope:
    """Strictly decode an envelope of the expected tag/version and verify its signature."""
    value = encoding.decode(data, max_size)
    if not isinstance(value, list) or len(value) != 6:
        raise DecodeError("signed envelope must be a 6-element array")
    fmt, got_tag, version, payload, public_key, signature = value
    if fmt != FORMAT or isinstance(fmt, bool):
        raise DecodeError(f"unsupported envelope format {fmt!r} (this vouchnet reads format {FORMAT})")
    if got_tag != tag:
        raise DecodeError(f"expected a {tag!r} record, got {str(got_tag)[:48]!r}")
    if version != record_version or isinstance(version, bool):
        raise DecodeError(f"unsupported {tag} version {version!r} (expected {record_version})")
    if not isinstance(payload, bytes):
        raise DecodeError("envelope payload must be a byte string")
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise DecodeError("envelope public key must be 32 bytes")
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise DecodeError("envelope signature must be 64 bytes")
    try:
        nacl.signing.VerifyKey(public_key).verify(signed_message(tag, record_version, payload), signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        raise SignatureError(f"bad signature on {tag} record from {peer_id_from_public_key(public_key)}") from None
    return Envelope(tag, record_version, payload, public_key, signature)
