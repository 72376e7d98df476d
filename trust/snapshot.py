"""Trust snapshots that always fit in one ledger entry.

A snapshot stores the local and the global trust vector. Both grow with every peer anyone
attested to, and a ledger body is at most ``trust.ledger.MAX_BODY`` (256 KiB): ~5,000
attestations about fresh subjects made the snapshot unencodable, and from then on every
reputation tick failed, also after a restart (issue 10, finding 4).

So a stored vector is its *top* part: entries sorted by value (highest first, then peer ID)
are kept while they fit in ``VECTOR_BUDGET`` bytes of CBOR; the body also says how many
entries the full vector had (``n_local``, ``n_global``) and commits to the full local vector
with a SHA-256 digest of its canonical CBOR (``d_local``). What is left out is the long tail
of lowest values (mostly zeros: subjects only strangers attested to). The live node keeps
the full vectors in memory; a node that restarts reads the top part until its first tick
recomputes everything.

The audit (`trust.reputation.ledger_trust_check`) recomputes the full vectors and checks
the stored top part value by value, the counts, the local digest, and that nothing left
out ranks above what was kept. Snapshots written before this format (no ``n_local``) are
complete vectors and are checked as before.
"""
from __future__ import annotations

import hashlib
from typing import Any

from trust import encoding

# Two vectors of this size plus the other fields stay far below MAX_BODY (256 KiB). A peer
# ID entry costs ~59 bytes, so ~1,600 peers per vector are kept.
VECTOR_BUDGET = 96 * 1024
MAX_ANCHORS_STORED = 512  # anchors come from the operator's config; bounded all the same


def _cbor_head(n: int) -> int:
    """Bytes of a CBOR major-type header for argument n (RFC 8949 §3)."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def entry_size(peer: str, value: int) -> int:
    """Encoded size of one map entry (text key -> non-negative int)."""
    n = len(peer.encode("utf-8"))
    return _cbor_head(n) + n + _cbor_head(abs(value) if value >= 0 else -1 - value)


def ranked(values: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))


def top(values: dict[str, int], budget: int = VECTOR_BUDGET) -> dict[str, int]:
    """The highest entries of ``values`` that fit in ``budget`` bytes (deterministic)."""
    out: dict[str, int] = {}
    used = _cbor_head(len(values))
    for peer, value in ranked(values):
        used += entry_size(peer, value)
        if used > budget:
            break
        out[peer] = value
    return dict(sorted(out.items()))


def digest(values: dict[str, int]) -> bytes:
    return hashlib.sha256(encoding.encode(dict(sorted(values.items())))).digest()


def snapshot_body(owner: str, at_ms: int, local: dict[str, int], global_: dict[str, int], damping: int,
                  anchors: list[str]) -> dict[str, Any]:
    """The ledger body of a snapshot: always within MAX_BODY, whatever the vectors' sizes."""
    return {"self": owner, "at": at_ms, "local": top(local), "global": top(global_), "damping": damping,
            "anchors": sorted(anchors)[:MAX_ANCHORS_STORED], "n_local": len(local), "n_global": len(global_),
            "d_local": digest(local)}


def is_partial(body: dict[str, Any]) -> bool:
    """Whether the body is in the bounded format (else an older, complete snapshot)."""
    return "n_local" in body


def check_local(body: dict[str, Any], recomputed: dict[str, int]) -> str | None:
    """Why a stored local vector does not match the recomputed one (None if it does)."""
    stored = body["local"]
    if not is_partial(body):
        return None if stored == recomputed else "stored local trust differs from trust recomputed from the ledger"
    if body["n_local"] != len(recomputed) or body["d_local"] != digest(recomputed) or stored != top(recomputed):
        return "stored local trust differs from trust recomputed from the ledger"
    return None


def check_global(body: dict[str, Any], recomputed: dict[str, int], tolerance: int) -> list[str]:
    """Peers whose stored global trust disagrees with the recomputed one by more than
    ``tolerance`` millionths (cold and warm-started power iterations differ slightly); for a
    bounded snapshot also peers left out although they rank above the lowest kept value."""
    stored = body["global"]
    if not is_partial(body) or len(stored) == len(recomputed):
        bad = [p for p in set(recomputed) | set(stored) if abs(recomputed.get(p, 0) - stored.get(p, 0)) > tolerance]
    else:
        bad = [p for p, v in stored.items() if p not in recomputed or abs(recomputed[p] - v) > tolerance]
        floor = min(stored.values(), default=0)
        bad += [p for p, v in recomputed.items() if p not in stored and v > floor + tolerance]
    if is_partial(body) and body["n_global"] != len(recomputed):
        bad.append(f"(count: stored {body['n_global']}, recomputed {len(recomputed)})")
    return bad
