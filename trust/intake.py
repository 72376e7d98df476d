"""Gossip intake: how much of what one issuer gossips this node keeps (issue 10, finding 4).

Every attestation stored is replayed into memory at start-up and enters the trust
computation, and every peer head is a row in the ledger database, so what a stranger can
make this node keep must be bounded. Nothing was: one identity signing attestations about
fresh subjects grew the ledger and the trust vectors without limit.

The rules, checked after the signature and the replay rules (an unsigned forgery must not
spend an honest issuer's allowance) and before anything is stored:

- ``subjects``: distinct subjects one issuer's attestations may occupy; a newer attestation
  about a subject already held only replaces it;
- ``strangers_total`` / ``total``: (issuer, subject) pairs held from strangers all together,
  and from everyone; the room between the two is kept for trusted issuers, so sybils cannot
  fill it (as the strangers' share of inbound connections in overlay/net/limits.py);
- ``rate`` / ``burst``: a token bucket per issuer over the attestations it makes this node
  store (news and replacements); the same for heads (``head_rate``/``head_burst``);
- ``heads``: peer heads kept per issuer, the latest by sequence number (older ones are
  deleted: equivocation is still caught between any two heads kept).

Trusted issuers (anchors, or trust > 0 here) get the larger `Allowance`. Whatever is
refused is dropped and counted by reason in `Intake.dropped`:

``subjects``, ``strangers``, ``total``, ``rate``  attestations
``head_rate``                                   heads
``heads_kept``                                  older heads deleted to keep ``heads``

Pure bookkeeping: the caller says whether an issuer is trusted and what time it is.
"""
from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ATTESTATION_REASONS = ("subjects", "strangers", "total", "rate")
HEAD_REASONS = ("head_rate", "heads_kept")
MAX_RATE = 1e6  # per second; also rules out inf and NaN


@dataclass(frozen=True)
class Allowance:
    subjects: int      # distinct subjects one issuer's attestations may occupy
    rate: float        # attestations stored per second, sustained
    burst: int         # ... and at once (a node's first attestations come in one tick)
    heads: int         # peer heads kept, latest by seq
    head_rate: float   # heads accepted per second (an honest node signs one per tick, 2 s)
    head_burst: int


STRANGER = Allowance(subjects=256, rate=1.0, burst=256, heads=4, head_rate=1.0, head_burst=8)
TRUSTED = Allowance(subjects=8192, rate=50.0, burst=8192, heads=64, head_rate=10.0, head_burst=64)


@dataclass(frozen=True)
class IntakeLimits:
    stranger: Allowance = STRANGER
    trusted: Allowance = TRUSTED
    strangers_total: int = 10_000   # pairs admitted from strangers, all of them together
    total: int = 100_000            # pairs held from everyone (~0.5 KiB of memory each)
    buckets: int = 20_000           # issuers whose rate buckets are remembered, least recent forgotten

    def check(self) -> str | None:
        """Why these limits are unusable (None if they are fine)."""
        for name, a in (("stranger", self.stranger), ("trusted", self.trusted)):
            if min(a.subjects, a.burst, a.heads, a.head_burst) < 1 or \
                    not (0 < a.rate <= MAX_RATE and 0 < a.head_rate <= MAX_RATE):
                return f"{name}: every allowance must be positive (rates at most {MAX_RATE:g}/s)"
        if not 0 < self.strangers_total <= self.total or self.buckets < 1:
            return "strangers_total must be 1..total, and buckets positive"
        if self.stranger.subjects > self.trusted.subjects or self.stranger.heads > self.trusted.heads \
                or self.stranger.rate > self.trusted.rate:
            return "strangers may not get more room than trusted issuers"
        return None

    def allowance(self, trusted: bool) -> Allowance:
        return self.trusted if trusted else self.stranger


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, rate: float, burst: int, now: float) -> bool:
        # A clock going backwards refills nothing (never more than burst).
        self.tokens = min(float(burst), self.tokens + max(0.0, now - self.at) * rate)
        self.at = max(self.at, now)
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass
class Intake:
    limits: IntakeLimits = field(default_factory=IntakeLimits)
    on_drop: Callable[[str, str], None] | None = None   # (kind, reason): metrics
    held: dict[str, int] = field(default_factory=dict)  # issuer -> distinct subjects held
    total: int = 0
    strangers: int = 0  # pairs admitted while their issuer was a stranger (they stay counted)
    dropped: Counter[str] = field(default_factory=Counter)
    _att: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)
    _heads: OrderedDict[str, _Bucket] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        problem = self.limits.check()
        if problem:
            raise ValueError(f"intake limits: {problem}")

    def seed(self, pairs: Iterable[tuple[str, str]], trusted: Callable[[str], bool]) -> None:
        """Count what the ledger already holds (at start-up): it stays, and it counts."""
        for issuer, _subject in pairs:
            self.held[issuer] = self.held.get(issuer, 0) + 1
            self.total += 1
        self.strangers += sum(n for i, n in self.held.items() if not trusted(i))

    def admit_attestation(self, issuer: str, new_subject: bool, trusted: bool, now: float | None = None) -> str | None:
        """None if the attestation may be stored (and then it is counted as held), else the
        reason it must be dropped (counted). Caps first: a refused one spends no tokens."""
        a = self.limits.allowance(trusted)
        if new_subject:
            if self.held.get(issuer, 0) >= a.subjects:
                return self._drop("attestation", "subjects")
            if self.total >= self.limits.total:
                return self._drop("attestation", "total")
            if not trusted and self.strangers >= self.limits.strangers_total:
                return self._drop("attestation", "strangers")
        if not self._take(self._att, issuer, a.rate, a.burst, now):
            return self._drop("attestation", "rate")
        if new_subject:
            self.held[issuer] = self.held.get(issuer, 0) + 1
            self.total += 1
            self.strangers += not trusted
        return None

    def admit_head(self, issuer: str, trusted: bool, now: float | None = None) -> str | None:
        a = self.limits.allowance(trusted)
        if not self._take(self._heads, issuer, a.head_rate, a.head_burst, now):
            return self._drop("head", "head_rate")
        return None

    def heads_kept(self, trusted: bool) -> int:
        return self.limits.allowance(trusted).heads

    def heads_evicted(self, n: int) -> None:
        for _ in range(n):
            self._drop("head", "heads_kept")

    def _take(self, buckets: OrderedDict[str, _Bucket], issuer: str, rate: float, burst: int,
              now: float | None) -> bool:
        now = time.monotonic() if now is None else now
        b = buckets.get(issuer)
        if b is None:
            b = buckets[issuer] = _Bucket(float(burst), now)
            while len(buckets) > self.limits.buckets:  # bounded memory; a forgotten issuer starts full
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(issuer)
        return b.take(rate, burst, now)

    def _drop(self, kind: str, reason: str) -> str:
        self.dropped[reason] += 1
        if self.on_drop is not None:
            self.on_drop(kind, reason)
        return reason

    def snapshot(self) -> dict[str, Any]:
        """For `vouchnet status`: use, limits and drops by reason."""
        lim = self.limits
        return {"held": self.total, "held_strangers": self.strangers, "issuers": len(self.held),
                "limits": {"total": lim.total, "strangers_total": lim.strangers_total,
                           "subjects_stranger": lim.stranger.subjects, "subjects_trusted": lim.trusted.subjects,
                           "rate_stranger": lim.stranger.rate, "rate_trusted": lim.trusted.rate,
                           "heads_stranger": lim.stranger.heads, "heads_trusted": lim.trusted.heads},
                "dropped": {r: self.dropped.get(r, 0) for r in ATTESTATION_REASONS + HEAD_REASONS}}
