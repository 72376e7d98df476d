"""First-hand observations: what this node saw each peer do, with the evidence.

They are the raw material of local trust (trust/local_trust.py): served and verified chunks,
failed verifications with the failing chunk's hash, forged manifests, protocol violations,
timeouts. They are stored as ledger entries (trust/reputation.py), batched per exchange.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    CHUNK_VERIFIED = "chunk_verified"      # a chunk from the peer verified against the signed root
    CHUNK_INVALID = "chunk_invalid"        # a chunk failed its proof (evidence: leaf hash, index)
    MANIFEST_INVALID = "manifest_invalid"  # manifest forged, foreign, or not matching the CID
    PROTOCOL_VIOLATION = "protocol_violation"  # malformed, oversized or unexpected messages
    TIMEOUT = "timeout"                    # stalled or too slow
    SERVED = "served"                      # we served the peer verified chunks
    CONTENT_GOOD = "content_good"          # the user rated content the peer published/served authentic
    CONTENT_BAD = "content_bad"            # ... inauthentic (validly signed junk)
    EQUIVOCATION = "equivocation"          # a verified equivocation proof names the peer

    @property
    def negative(self) -> bool:
        return self in (Kind.CHUNK_INVALID, Kind.MANIFEST_INVALID, Kind.PROTOCOL_VIOLATION, Kind.TIMEOUT,
                        Kind.CONTENT_BAD, Kind.EQUIVOCATION)


MAX_EVIDENCE = 512


@dataclass(frozen=True)
class Observation:
    peer: str
    kind: Kind
    cid: str | None = None
    count: int = 1
    nbytes: int = 0
    evidence: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class PeerSummary:
    peer: str
    counts: dict[str, int]
    last_seen: float

    @property
    def misbehaved(self) -> bool:
        return any(Kind(k).negative and n > 0 for k, n in self.counts.items())
