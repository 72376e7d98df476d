"""The tamper-evident reputation ledger (docs/ledger.md), as a package:

- `types`: records, limits, errors;
- `codec`: canonical entry bodies and leaf data;
- `proofs`: envelope, equivocation and proof-bundle checks (no SQLite);
- `scan`: the audit scan of an idx range and its worker processes;
- `audit`: `Ledger.audit`, the checks of docs/ledger.md;
- `log`: `Ledger` itself: schema, transactions, append, heads, queries.

This module only re-exports the public API; the modules import each other directly.
"""

from trust.ledger.codec import decode_body, encode_body, leaf_data, parse_leaf_data
from trust.ledger.log import Ledger
from trust.ledger.proofs import verify_equivocation, verify_proof_bundle
from trust.ledger.types import (ENVELOPE_KINDS, FORMAT, MAX_BODY, VERSION, AuditReport, Entry, Head, LedgerError,
                                LedgerOpenError, PeerHead, Problem, RawEntry)

__all__ = [
    "FORMAT", "VERSION", "MAX_BODY", "ENVELOPE_KINDS", "LedgerError", "LedgerOpenError",
    "Entry", "RawEntry", "Head", "PeerHead", "Problem", "AuditReport", "Ledger",
    "leaf_data", "parse_leaf_data", "encode_body", "decode_body", "verify_proof_bundle", "verify_equivocation",
]
