"""Witness reports: what credible peers' attestations say about a provider before we deal with it.

EigenTrust's local trust only ever says "how much": a peer that cheated its rater drops to zero
in that rater's row, and the global vector cannot tell "cheated everyone who tried it" from "few
have tried it". A peer that earns trust honestly first (camouflage, spies, oscillation) is then
chosen again and again, and each honest peer learns the truth once, first-hand. vouchnet reads
an attestation of value 0 from an issuer that dealt with the subject as a *fault report*, and a
node uses the reports of credible witnesses to demote or distrust a provider before it is
cheated itself.

Who is a credible witness, from one node's own point of view:

- never itself, and never a peer it distrusts (a caught cheater's opinions count for nothing,
  in either direction);
- an issuer whose attestations agree with this node's own first-hand verdicts (trusted: local
  trust > 0 earned by serving us verified content; cheated us: proven faults and local trust 0) at least as often as they disagree:
  credibility (1 + agree) / (2 + agree + disagree) >= 1/2. Slanderers rate zero the honest
  peers this node knows to be good, and spies vouch for the peers that cheated it, so both fall
  below the bar as soon as their claims meet this node's experience;
- where this node has no first-hand verdict on a subject, its anchors' latest attestations
  stand in for one (`anchor_verdicts`): a newcomer has no experience to check witnesses
  against, but it does have the peers it trusts out of band;
- weighted by its global trust here times its credibility (global trust alike when no witness
  has any), so sybils nobody trusts add nothing.

Pure numpy over index arrays; the node (overlay.services.reputation) and the simulator feed it
the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from trust.local_trust import PROVEN_FAULTS

TRUSTED, UNKNOWN, CHEATED = 1, 0, -1


SERVICE_EVIDENCE = ("chunk_verified", "content_good")


def first_hand_verdict(counts: Mapping[str, int]) -> int:
    """The verdict behind a positive local trust: TRUSTED only if the peer served this node
    verified content. Being served by us (`served`) earns local trust but says nothing about
    the peer as a provider, so it leaves the peer UNKNOWN here."""
    return TRUSTED if any(counts.get(k) for k in SERVICE_EVIDENCE) else UNKNOWN


def own_verdicts(n: int, index: Mapping[str, int], local: Mapping[str, float],
                 counts: Mapping[str, Mapping[str, int]],
                 borrowed: Mapping[str, int] | None = None) -> tuple[np.ndarray, set[str]]:
    """This node's first-hand verdict per peer index, and the peers it holds proven faults
    against (local trust 0 and a proven fault: they cheated it). Peers without an index < n
    keep no verdict but are still returned as faulted.

    `borrowed` (see `anchor_verdicts`) fills in verdicts on peers this node has none of its own
    on, so that a node without experience (a newcomer) can still tell a slanderer from a
    witness; it never makes a peer faulted here."""
    own = np.zeros(n, dtype=np.int8)
    borrowed = borrowed or {}
    for p, v in borrowed.items():
        i = index.get(p)
        if i is not None and i < n:
            own[i] = v
    for p, v in local.items():
        i = index.get(p)
        if v > 0 and i is not None and i < n:
            verdict = first_hand_verdict(counts.get(p, {}))
            if verdict != UNKNOWN or p not in borrowed:
                own[i] = verdict
    faulted = set()
    for p, c in counts.items():
        if local.get(p, 0) == 0 and any(c.get(k) for k in PROVEN_FAULTS):
            faulted.add(p)
            i = index.get(p)
            if i is not None and i < n:
                own[i] = CHEATED
    return own, faulted


def anchor_verdicts(values: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Verdicts borrowed from this node's anchors (peers it trusts out of band), given as
    (subject, attested value) pairs from the anchors' latest attestations: CHEATED where any
    anchor attests zero, else TRUSTED."""
    out: dict[str, int] = {}
    for subject, value in values:
        if value == 0:
            out[subject] = CHEATED
        else:
            out.setdefault(subject, TRUSTED)
    return out


def index_mask(n: int, index: Mapping[str, int], peers: Iterable[str]) -> np.ndarray:
    """Boolean mask over n peer indices marking `peers` (those without an index are skipped)."""
    mask = np.zeros(n, dtype=bool)
    for p in peers:
        i = index.get(p)
        if i is not None and i < n:
            mask[i] = True
    return mask


@dataclass(frozen=True)
class WitnessReports:
    """Per peer index: weighted fault reports, weighted positive reports, and per issuer its
    credibility and whether its reports counted."""

    neg: np.ndarray
    pos: np.ndarray
    credibility: np.ndarray
    counted: np.ndarray

    def risk(self, i: int) -> float:
        """Share of the credible weight that reports a fault (0 when nobody credible spoke)."""
        total = self.neg[i] + self.pos[i]
        return float(self.neg[i] / total) if total > 0 else 0.0


def witness_reports(n: int, issuers: np.ndarray, subjects: np.ndarray, zero: np.ndarray,
                    global_trust: np.ndarray, own: np.ndarray, excluded: np.ndarray) -> WitnessReports:
    """Aggregate attestations (issuers[k] says subjects[k] is zero or not) over n peers.

    `own[i]` is this node's first-hand verdict on peer i (TRUSTED, UNKNOWN or CHEATED);
    `excluded[i]` marks issuers whose reports never count (this node, peers it distrusts).
    """
    iss = np.asarray(issuers, dtype=np.int64)
    sub = np.asarray(subjects, dtype=np.int64)
    zero = np.asarray(zero, dtype=bool)
    if not (iss.shape == sub.shape == zero.shape) or own.shape != (n,) or excluded.shape != (n,):
        raise ValueError("witness arrays disagree in shape")
    said = np.where(zero, CHEATED, TRUSTED) * own[sub]
    agree = np.bincount(iss, weights=said > 0, minlength=n)
    disagree = np.bincount(iss, weights=said < 0, minlength=n)
    credibility = (1.0 + agree) / (2.0 + agree + disagree)
    counted = (credibility >= 0.5) & ~excluded
    g = np.asarray(global_trust, dtype=np.float64)
    speakers = np.unique(iss[counted[iss]])
    weight = g if speakers.size and (g[speakers] > 0).any() else np.ones(n)
    w = np.where(counted[iss], weight[iss] * credibility[iss], 0.0)
    neg = np.bincount(sub, weights=w * zero, minlength=n)
    pos = np.bincount(sub, weights=w * ~zero, minlength=n)
    return WitnessReports(neg, pos, credibility, counted)


__all__ = ["CHEATED", "TRUSTED", "UNKNOWN", "WitnessReports", "anchor_verdicts", "first_hand_verdict", "index_mask",
           "own_verdicts", "witness_reports"]
