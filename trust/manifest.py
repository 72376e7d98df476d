"""Content manifests: the publisher's signed statement of a file's Merkle root and shape.

Content is cut into fixed-size chunks; each chunk's RFC 9162 leaf hash is a leaf of the tree
whose root the manifest carries. The content ID is the SHA-256 of the signed manifest bytes, so
a CID pins the publisher, the signature and the root at once: a fetcher that checks
H(manifest) == CID and then the signature cannot be handed a forged or foreign manifest.
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from trust.encoding import get_bytes, get_int, get_str, require_keys
from trust.errors import DecodeError
from trust.peerid import is_peer_id
from trust.records import open_record, sign_record

# 256 KiB: big enough that per-request overhead (a libp2p stream round trip, ~18 proof hashes)
# stays far below the transfer time of the chunk, small enough that a bad chunk costs little to
# refetch and that a 64 MiB file still spreads over 256 chunks for parallel providers.
DEFAULT_CHUNK_SIZE = 256 * 1024
MIN_CHUNK_SIZE = 16 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024
MAX_CONTENT_SIZE = 1 << 44  # 16 TiB
MAX_NAME_BYTES = 255
MAX_MANIFEST = 2048
_MEDIA_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/[a-z0-9][a-z0-9!#$&^_.+-]{0,62}$")
_CID_PREFIX = b"\x01\x12\x20"  # vouchnet CID v1, multihash sha2-256, 32 bytes
CID_LEN = 1 + 56


def check_name(name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise DecodeError(f"content name {name[:80]!r} must be a plain file name (no path separators)")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise DecodeError(f"content name is longer than {MAX_NAME_BYTES} bytes")
    return name


@dataclass(frozen=True)
class Manifest:
    TAG: ClassVar[str] = "vouchnet/manifest"
    VERSION: ClassVar[int] = 1
    MAX_SIZE: ClassVar[int] = MAX_MANIFEST

    root: bytes
    size: int
    chunk_size: int
    name: str
    media_type: str
    created: int
    publisher: str

    @property
    def signer_peer_id(self) -> str:
        return self.publisher

    @property
    def chunk_count(self) -> int:
        return -(-self.size // self.chunk_size)

    def chunk_length(self, index: int) -> int:
        if not 0 <= index < self.chunk_count:
            raise DecodeError(f"chunk index {index} out of range (content has {self.chunk_count} chunks)")
        if index == self.chunk_count - 1:
            return self.size - index * self.chunk_size
        return self.chunk_size

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "size": self.size, "chunk": self.chunk_size, "name": self.name,
                "type": self.media_type, "created": self.created, "publisher": self.publisher}

    @classmethod
    def from_dict(cls, d: Any) -> "Manifest":
        require_keys(d, {"root", "size", "chunk", "name", "type", "created", "publisher"}, "manifest")
        chunk = get_int(d, "chunk", MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
        if chunk & (chunk - 1):
            raise DecodeError("manifest: chunk size must be a power of two")
        media = get_str(d, "type", 127)
        if not _MEDIA_RE.fullmatch(media):
            raise DecodeError(f"manifest: invalid media type {media!r}")
        publisher = get_str(d, "publisher", 64)
        if not is_peer_id(publisher):
            raise DecodeError("manifest: publisher is not an Ed25519 peer ID")
        return cls(
            root=get_bytes(d, "root", 32),
            size=get_int(d, "size", 0, MAX_CONTENT_SIZE),
            chunk_size=chunk,
            name=check_name(get_str(d, "name", MAX_NAME_BYTES)),
            media_type=media,
            created=get_int(d, "created", 0, 2**40),
            publisher=publisher,
        )


def content_id(signed_manifest: bytes) -> str:
    return content_id_from_digest(hashlib.sha256(signed_manifest).digest())


def parse_cid(cid: str) -> bytes:
    """Return the manifest digest a CID names; DecodeError with the reason otherwise."""
    if not isinstance(cid, str) or len(cid) != CID_LEN or not cid.startswith("b") or cid != cid.lower():
        raise DecodeError(f"{str(cid)[:80]!r} is not a vouchnet content ID (expected 'b' + 56 base32 characters)")
    try:
        raw = base64.b32decode(cid[1:].upper() + "=" * (-len(cid[1:]) % 8))
    except ValueError:
        raise DecodeError(f"{cid!r} is not valid base32") from None
    if not raw.startswith(_CID_PREFIX) or len(raw) != len(_CID_PREFIX) + 32:
        raise DecodeError(f"{cid!r} is not a vouchnet v1 content ID")
    if content_id_from_digest(raw[len(_CID_PREFIX):]) != cid:
        raise DecodeError(f"{cid!r} is not in canonical form")
    return raw[len(_CID_PREFIX):]


def content_id_from_digest(digest: bytes) -> str:
    return "b" + base64.b32encode(_CID_PREFIX + digest).decode("ascii").lower().rstrip("=")


def sign_manifest(identity: Any, root: bytes, size: int, name: str, media_type: str = "application/octet-stream",
                  chunk_size: int = DEFAULT_CHUNK_SIZE, created: int | None = None) -> tuple[str, bytes, Manifest]:
    m = Manifest(root, size, chunk_size, check_name(name), media_type,
                 int(time.time()) if created is None else created, identity.peer_id)
    Manifest.from_dict(m.to_dict())  # same validation as a receiver applies
    signed = sign_record(identity, m)
    return content_id(signed), signed, m


def open_manifest(signed: bytes, expected_cid: str | None = None) -> tuple[str, Manifest]:
    """Check the CID binding (if given), then the signature and the publisher, then the fields."""
    if len(signed) > MAX_MANIFEST:
        raise DecodeError(f"manifest is {len(signed)} bytes, the limit is {MAX_MANIFEST}")
    cid = content_id(signed)
    if expected_cid is not None and cid != expected_cid:
        raise DecodeError(f"manifest does not match content ID {expected_cid} (it hashes to {cid})")
    manifest, _ = open_record(signed, Manifest)
    return cid, manifest
