"""libp2p peer IDs for Ed25519 keys, computed without importing libp2p.

A libp2p Ed25519 peer ID is the identity multihash of the protobuf PublicKey
{Type: Ed25519 (1), Data: 32-byte key}, base58btc-encoded ("12D3KooW..."). Deriving it here
keeps `trust/` free of networking while making the signing identity and the libp2p identity
one and the same key (tests check equality with libp2p's own ID).
"""
from __future__ import annotations

import functools

import base58

from trust.errors import DecodeError

# protobuf: field 1 (KeyType) varint = 1 (Ed25519); field 2 (Data) length 32.
_PB_PREFIX = b"\x08\x01\x12\x20"
# multihash: code 0x00 (identity), length 36.
_MH_PREFIX = b"\x00\x24"
PEER_ID_LEN = 52


def peer_id_from_public_key(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise DecodeError(f"an Ed25519 public key is 32 bytes, got {len(public_key)}")
    return _encode(bytes(public_key))


def public_key_from_peer_id(peer_id: str) -> bytes:
    """Extract the Ed25519 key from a peer ID; DecodeError for anything else."""
    if not isinstance(peer_id, str) or len(peer_id) != PEER_ID_LEN or not peer_id.startswith("12D3KooW"):
        raise DecodeError(f"not an Ed25519 libp2p peer ID: {str(peer_id)[:60]!r}")
    return _decode(peer_id)


# Base58 in pure Python costs ~150 µs per ID, and gossip repeats the same few thousand IDs in
# every record: both directions are pure functions, so remember recent answers (errors are
# never cached: lru_cache does not store exceptions).
@functools.lru_cache(maxsize=1 << 16)
def _encode(public_key: bytes) -> str:
    return base58.b58encode(_MH_PREFIX + _PB_PREFIX + public_key).decode("ascii")


@functools.lru_cache(maxsize=1 << 16)
def _decode(peer_id: str) -> bytes:
    try:
        raw = base58.b58decode(peer_id.encode("ascii"))
    except ValueError:
        raise DecodeError(f"peer ID is not valid base58: {peer_id!r}") from None
    prefix = _MH_PREFIX + _PB_PREFIX
    if len(raw) != len(prefix) + 32 or not raw.startswith(prefix):
        raise DecodeError(f"not an Ed25519 libp2p peer ID: {peer_id!r}")
    key = raw[len(prefix):]
    if _encode(key) != peer_id:
        raise DecodeError(f"peer ID is not in canonical form: {peer_id!r}")
    return key


def is_peer_id(value: object) -> bool:
    try:
        public_key_from_peer_id(value)  # type: ignore[arg-type]
        return True
    except DecodeError:
        return False
