"""Signed attestations, signed ledger tree heads, and equivocation proofs.

An attestation is an issuer's signed statement of its normalised local trust in one subject.
Per (issuer, subject) a higher sequence number replaces a lower one; an older or replayed one
is ignored. A tree head is an issuer's signed (size, root) of its ledger. Two different
records of the same kind signed by one issuer for the same sequence number (and subject) are
an equivocation: a self-contained proof of misbehaviour anyone can verify from the two
envelopes alone.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, ClassVar

from trust import encoding
from trust.encoding import get_bytes, get_int, get_str, require_keys
from trust.errors import DecodeError
from trust.peerid import is_peer_id
from trust.records import open_record, sign_record

TRUST_SCALE = 1_000_000  # trust values travel as integers in millionths: one value, one encoding
MAX_SEQ = 2**63 - 1
MAX_TIME = 2**40


def _peer(d: dict, key: str) -> str:
    v = get_str(d, key, 64)
    if not is_peer_id(v):
        raise DecodeError(f"field {key!r} is not an Ed25519 peer ID")
    return v


@dataclass(frozen=True)
class Attestation:
    TAG: ClassVar[str] = "vouchnet/attestation"
    VERSION: ClassVar[int] = 1
    MAX_SIZE: ClassVar[int] = 1024

    issuer: str
    subject: str
    value: int          # normalised local trust c_ij in millionths (0..TRUST_SCALE)
    seq: int            # per (issuer, subject); higher replaces lower
    timestamp: int      # unix seconds
    evidence: bytes     # SHA-256 digest of the evidence behind the value

    @property
    def signer_peer_id(self) -> str:
        return self.issuer

    @property
    def trust(self) -> float:
        return self.value / TRUST_SCALE

    def to_dict(self) -> dict[str, Any]:
        return {"iss": self.issuer, "sub": self.subject, "val": self.value, "seq": self.seq,
                "ts": self.timestamp, "ev": self.evidence}

    @classmethod
    def from_dict(cls, d: Any) -> "Attestation":
        require_keys(d, {"iss", "sub", "val", "seq", "ts", "ev"}, "attestation")
        a = cls(_peer(d, "iss"), _peer(d, "sub"), get_int(d, "val", 0, TRUST_SCALE), get_int(d, "seq", 0, MAX_SEQ),
                get_int(d, "ts", 0, MAX_TIME), get_bytes(d, "ev", 32))
        if a.issuer == a.subject:
            raise DecodeError("attestation: a peer cannot attest to itself")
        return a

    def slot(self) -> tuple[str, str, str, int]:
        """Two records in the same slot with different content are an equivocation."""
        return (self.TAG, self.issuer, self.subject, self.seq)


@dataclass(frozen=True)
class TreeHead:
    TAG: ClassVar[str] = "vouchnet/tree-head"
    VERSION: ClassVar[int] = 1
    MAX_SIZE: ClassVar[int] = 512

    issuer: str
    size: int
    root: bytes
    timestamp: int
    seq: int

    @property
    def signer_peer_id(self) -> str:
        return self.issuer

    def to_dict(self) -> dict[str, Any]:
        return {"iss": self.issuer, "size": self.size, "root": self.root, "ts": self.timestamp, "seq": self.seq}

    @classmethod
    def from_dict(cls, d: Any) -> "TreeHead":
        require_keys(d, {"iss", "size", "root", "ts", "seq"}, "tree head")
        return cls(_peer(d, "iss"), get_int(d, "size", 0, 2**62), get_bytes(d, "root", 32),
                   get_int(d, "ts", 0, MAX_TIME), get_int(d, "seq", 0, MAX_SEQ))

    def slot(self) -> tuple[str, str, str, int]:
        return (self.TAG, self.issuer, "", self.seq)


def sign_attestation(identity: Any, subject: str, value: float, seq: int, timestamp: int, evidence: bytes) -> bytes:
    v = int(round(min(max(value, 0.0), 1.0) * TRUST_SCALE))
    return sign_record(identity, Attestation(identity.peer_id, subject, v, seq, timestamp, evidence))


def open_attestation(data: bytes) -> Attestation:
    return open_record(data, Attestation)[0]


def sign_tree_head(identity: Any, size: int, root: bytes, timestamp: int, seq: int) -> bytes:
    return sign_record(identity, TreeHead(identity.peer_id, size, root, timestamp, seq))


def open_tree_head(data: bytes) -> TreeHead:
    return open_record(data, TreeHead)[0]


def evidence_digest(items: list[Any]) -> bytes:
    """Digest of the evidence behind a value: canonical encoding of the summarised inputs."""
    return hashlib.sha256(encoding.encode(items)).digest()


# -- equivocation ------------------------------------------------------------------------------

_KINDS: dict[str, Any] = {Attestation.TAG: Attestation, TreeHead.TAG: TreeHead}


@dataclass(frozen=True)
class Equivocation:
    """Two conflicting signed records from one issuer: the proof is the pair of envelopes."""

    TAG: ClassVar[str] = "vouchnet/equivocation"
    MAX_SIZE: ClassVar[int] = 4096

    issuer: str
    kind: str
    first: bytes
    second: bytes

    def to_bytes(self) -> bytes:
        a, b = sorted([self.first, self.second])  # one proof, one encoding, whatever the order found
        return encoding.encode([1, self.kind, a, b])


def _open_any(data: bytes, kind: str) -> Any:
    cls = _KINDS.get(kind)
    if cls is None:
        raise DecodeError(f"equivocation: unknown record kind {kind[:40]!r}")
    return open_record(data, cls)[0]


def check_equivocation(first: bytes, second: bytes, kind: str) -> Equivocation:
    """Verify that two envelopes prove equivocation; DecodeError/SignatureError if they do not."""
    a, b = _open_any(first, kind), _open_any(second, kind)
    if a == b:
        raise DecodeError("equivocation: the two records say the same thing")
    # Two heads of one log at the same size with different roots are a fork (split view),
    # whatever their sequence numbers.
    fork = isinstance(a, TreeHead) and a.issuer == b.issuer and a.size == b.size and a.root != b.root
    if a.slot() != b.slot() and not fork:
        raise DecodeError("equivocation: the two records are for different issuers, subjects or sequence numbers")
    return Equivocation(a.issuer, kind, first, second)


def open_equivocation(data: bytes) -> Equivocation:
    value = encoding.decode(data, Equivocation.MAX_SIZE)
    if not (isinstance(value, list) and len(value) == 4 and value[0] == 1 and isinstance(value[1], str)
            and isinstance(value[2], bytes) and isinstance(value[3], bytes)):
        raise DecodeError("equivocation proof must be [1, kind, record, record]")
    if value[2] >= value[3]:
        raise DecodeError("equivocation proof records must be distinct and in canonical order")
    return check_equivocation(value[2], value[3], value[1])
