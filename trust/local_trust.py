"""Local trust: what this node's own evidence says about each peer.

Reference (EigenTrust): s_ij = sat_ij - unsat_ij, c_ij = max(s_ij, 0) / sum_j max(s_ij, 0).
vouchnet's form, and why each change (docs/trust.md has the long version):

    sat_ij   = min(cap, sum over positive events e: w(e) * n(e) * 2^(-age(e) / half_life_pos))
    unsat_ij =          sum over negative events e: w(e) * n(e) * 2^(-age(e) / half_life_neg)
    s_ij     = max(sat_ij - unsat_ij, 0), and 0 while a proven fault is younger than `sticky`
    c_ij     = s_ij / sum_j s_ij

- Failures weigh more than successes (a corrupted chunk costs 50 verified ones): cheating once
  must cost more than camouflage earns.
- Negative evidence decays slower than positive (30 vs 7 days): a peer cannot wait out its
  record faster than it can rebuild it (oscillation attacks).
- Positive evidence is capped: ballot stuffing by serving many tiny chunks buys nothing past
  the cap.
- Proven faults (a chunk failing its Merkle proof, a forged manifest, an equivocation, content
  rated bad) are sticky: the peer's local trust is zero for `sticky` seconds whatever it does
  meanwhile. These are cryptographic facts, not opinions, so no amount of good service offsets
  them for that period.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Mapping

POSITIVE_WEIGHTS: dict[str, float] = {
    "chunk_verified": 1.0,   # per verified chunk received from the peer
    "served": 0.1,           # we served the peer: weak evidence it is a real participant
    "content_good": 20.0,    # the user rated content from the peer authentic
}
NEGATIVE_WEIGHTS: dict[str, float] = {
    "chunk_invalid": 50.0,
    "manifest_invalid": 50.0,
    "protocol_violation": 20.0,
    "timeout": 2.0,          # may be an honest slow link: weighs little, not sticky
    "content_bad": 100.0,    # inauthentic content: the only thing Merkle checks cannot catch
    "equivocation": 1000.0,
}
PROVEN_FAULTS = frozenset({"chunk_invalid", "manifest_invalid", "content_bad", "equivocation"})


@dataclass(frozen=True)
class LocalTrustParams:
    half_life_pos: float = 7 * 86400.0
    half_life_neg: float = 30 * 86400.0
    positive_cap: float = 1000.0
    sticky: float = 7 * 86400.0


@dataclass(frozen=True)
class Evidence:
    peer: str
    kind: str
    count: int
    at: float  # unix seconds


@dataclass
class PeerScore:
    sat: float = 0.0
    unsat: float = 0.0
    last_fault: float = -math.inf
    events: dict[str, int] = field(default_factory=dict)

    def s(self, now: float, params: LocalTrustParams) -> float:
        if now - self.last_fault < params.sticky:
            return 0.0
        return max(min(self.sat, params.positive_cap) - self.unsat, 0.0)


def score_peers(evidence: Iterable[Evidence], now: float,
                params: LocalTrustParams = LocalTrustParams()) -> dict[str, PeerScore]:
    scores: dict[str, PeerScore] = {}
    for e in evidence:
        age = max(now - e.at, 0.0)
        ps = scores.setdefault(e.peer, PeerScore())
        ps.events[e.kind] = ps.events.get(e.kind, 0) + e.count
        if e.kind in POSITIVE_WEIGHTS:
            ps.sat += POSITIVE_WEIGHTS[e.kind] * e.count * 0.5 ** (age / params.half_life_pos)
        elif e.kind in NEGATIVE_WEIGHTS:
            ps.unsat += NEGATIVE_WEIGHTS[e.kind] * e.count * 0.5 ** (age / params.half_life_neg)
            if e.kind in PROVEN_FAULTS:
                ps.last_fault = max(ps.last_fault, e.at)
    return scores


def normalise(scores: Mapping[str, PeerScore], now: float,
              params: LocalTrustParams = LocalTrustParams(), exclude: Iterable[str] = ()) -> dict[str, float]:
    """c_ij over peers with positive s_ij (sums to 1, or empty when nobody earned trust)."""
    skip = set(exclude)
    s = {p: ps.s(now, params) for p, ps in scores.items() if p not in skip}
    total = sum(v for v in s.values() if v > 0)
    if total <= 0:
        return {}
    return {p: v / total for p, v in sorted(s.items()) if v > 0}
