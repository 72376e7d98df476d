"""The ledger's records and limits: format constants, errors, and the dataclasses its queries and audit return."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from trust.attestation import Equivocation
from trust.errors import VouchnetError


FORMAT = "vouchnet-ledger"
VERSION = 1
MAX_BODY = 256 * 1024          # bytes of canonical CBOR per entry body
MAX_KIND = 32

# Entry kinds whose body carries a signed envelope (under this key) that audit verifies.
ENVELOPE_KINDS = {
    "attestation-received": "envelope",
    "attestation-issued": "envelope",
    "peer-head": "envelope",
    "equivocation": "proof",
}
MAX_U64 = (1 << 64) - 1


class LedgerError(VouchnetError):
    """The ledger refused an operation, or its stored data is inconsistent."""


class LedgerOpenError(LedgerError):
    """The ledger file is missing, unreadable, or not a vouchnet ledger."""


# --- data types ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    idx: int
    ts: int            # unix milliseconds
    kind: str
    body: dict[str, Any]
    leaf: bytes        # stored RFC 9162 leaf hash


@dataclass(frozen=True)
class RawEntry:
    """A row as stored, body undecoded (for display and export of possibly damaged ledgers)."""

    idx: int
    ts: Any
    kind: Any
    body: Any
    leaf: Any


@dataclass(frozen=True)
class Head:
    """One of this ledger's signed tree heads."""

    seq: int
    size: int
    root: bytes
    ts: int            # unix seconds, as signed
    envelope: bytes


@dataclass(frozen=True)
class PeerHead:
    issuer: str
    seq: int
    size: int
    root: bytes
    ts: int
    envelope: bytes
    received_ts: int


@dataclass(frozen=True)
class Problem:
    where: str         # "entry 17", "head seq 3", "peer head <issuer> seq 2", "ledger", ...
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


@dataclass
class AuditReport:
    ok: bool
    entries: int
    heads: int
    problems: list[Problem]
    seconds: float
    equivocations_found: list[Equivocation] = field(default_factory=list)
    envelopes: int = 0          # signed envelopes verified (entries, heads, peer heads, proofs)
    peer_heads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "heads": self.heads, "peer_heads": self.peer_heads,
            "envelopes_verified": self.envelopes, "seconds": round(self.seconds, 3),
            "problems": [{"where": p.where, "what": p.what} for p in self.problems],
            "equivocations_found": [{"issuer": e.issuer, "kind": e.kind,
                                     "proof": base64.b64encode(e.to_bytes()).decode("ascii")}
                                    for e in self.equivocations_found],
        }
