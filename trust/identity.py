"""Ed25519 identities (PyNaCl) and signed identity records.

The signing key's peer ID is its libp2p peer ID, so a node's network identity and the identity
that signs its evidence are the same key.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import nacl.signing

from trust.encoding import check_str, get_bytes, get_int, get_str, require_keys
from trust.errors import DecodeError
from trust.peerid import peer_id_from_public_key, public_key_from_peer_id
from trust.records import open_record, sign_record


@dataclass(frozen=True)
class Identity:
    signing_key: nacl.signing.SigningKey = field(repr=False)

    @classmethod
    def generate(cls) -> "Identity":
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def seed(self) -> bytes:
        return bytes(self.signing_key)

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def peer_id(self) -> str:
        return peer_id_from_public_key(self.public_key)

    def __repr__(self) -> str:  # never print the seed
        return f"Identity({self.peer_id})"


MAX_ADDRS = 16
MAX_ADDR_LEN = 256


@dataclass(frozen=True)
class IdentityRecord:
    """A peer's signed statement of who it is and where it listens; higher seq replaces lower."""

    TAG: ClassVar[str] = "vouchnet/identity"
    VERSION: ClassVar[int] = 1
    MAX_SIZE: ClassVar[int] = 8192

    peer_id: str
    public_key: bytes
    addrs: tuple[str, ...]
    created: int
    seq: int

    @property
    def signer_peer_id(self) -> str:
        return self.peer_id

    def to_dict(self) -> dict[str, Any]:
        return {"peer": self.peer_id, "key": self.public_key, "addrs": list(self.addrs),
                "created": self.created, "seq": self.seq}

    @classmethod
    def from_dict(cls, d: Any) -> "IdentityRecord":
        require_keys(d, {"peer", "key", "addrs", "created", "seq"}, "identity record")
        peer = get_str(d, "peer", 64)
        key = get_bytes(d, "key", 32)
        if public_key_from_peer_id(peer) != key:
            raise DecodeError("identity record: public key does not match peer ID")
        addrs = d["addrs"]
        if not isinstance(addrs, list) or len(addrs) > MAX_ADDRS:
            raise DecodeError(f"identity record: addrs must be a list of at most {MAX_ADDRS}")
        for a in addrs:
            check_str(a, "addrs", MAX_ADDR_LEN)
        return cls(peer, key, tuple(addrs), get_int(d, "created", 0, 2**40), get_int(d, "seq", 0, 2**63 - 1))


def make_identity_record(identity: Identity, addrs: list[str], seq: int, created: int | None = None) -> bytes:
    rec = IdentityRecord(identity.peer_id, identity.public_key, tuple(addrs),
                         int(time.time()) if created is None else created, seq)
    return sign_record(identity, rec)


def open_identity_record(data: bytes) -> IdentityRecord:
    return open_record(data, IdentityRecord)[0]
