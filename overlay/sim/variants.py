"""The baselines: no reputation, GossipSub-style local scoring, and plain EigenTrust.

A variant decides, for one honest querier, in which order to try the responders, and learns
from what happened. The runner (overlay/sim/runner.py) plays the downloads and keeps the
score; vouchnet's variant is in overlay/sim/vouchnet.py.
"""
from __future__ import annotations

import random
from typing import ClassVar

import numpy as np

from overlay.sim.config import SimConfig
from overlay.sim.world import CORRUPT, GOOD, JUNK, Population, World
from trust.trust_engine import TrustEngine, TrustParams


class Variant:
    name: ClassVar[str] = ""

    def __init__(self, world: World, pop: Population, cfg: SimConfig) -> None:
        self.world, self.pop, self.cfg = world, pop, cfg

    def start_round(self, r: int) -> None:
        pass

    def order(self, querier: int, candidates: list[int], file: int, rng: random.Random) -> list[int]:
        """Responders to try, first choice first (possibly fewer than given: refused ones); any iterable."""
        raise NotImplementedError

    def observe(self, querier: int, provider: int, outcome: str, chunks: int) -> None:
        """First-hand evidence of an honest querier about one attempt."""

    def served(self, provider: int, requester: int, chunks: int) -> None:
        """An honest provider served `chunks` chunks to `requester`."""

    def end_round(self, r: int) -> None:
        pass

    def measured(self, querier: int) -> bool:
        """Whether this querier's downloads count in the results (all honest peers by default)."""
        return True

    def extra(self) -> dict:
        """Variant-specific results for the JSON output."""
        return {}


class NoReputation(Variant):
    """Random provider: the responders in the (random) order they were heard."""

    name = "none"

    def order(self, querier, candidates, file, rng):
        return list(candidates)


class LocalScoring(Variant):
    """GossipSub v1.1-style peer scoring from first-hand evidence only (no attestations).

    Per (querier, provider): a capped, decaying counter of good deliveries (like P2, first
    message deliveries) and a slowly decaying counter of invalid ones (like P4, squared and
    negatively weighted); score = W_GOOD * min(good, CAP) - W_BAD * bad^2. Providers below the
    graylist threshold are never tried; the rest are tried best score first, unknown peers
    (score 0) in the order heard.
    """

    name = "local"
    W_GOOD, CAP, DECAY_GOOD = 1.0, 10.0, 0.9
    W_BAD, DECAY_BAD = 10.0, 0.99
    GRAYLIST = -5.0

    def __init__(self, world, pop, cfg):
        super().__init__(world, pop, cfg)
        self.good: dict[int, dict[int, float]] = {}
        self.bad: dict[int, dict[int, float]] = {}

    def score(self, i: int, j: int) -> float:
        g = self.good.get(i, {}).get(j, 0.0)
        b = self.bad.get(i, {}).get(j, 0.0)
        return self.W_GOOD * min(g, self.CAP) - self.W_BAD * b * b

    def order(self, querier, candidates, file, rng):
        scored = [(self.score(querier, c), c) for c in candidates]
        keep = [(s, c) for s, c in scored if s >= self.GRAYLIST]
        keep.sort(key=lambda sc: -sc[0])  # stable: ties stay in the order heard
        return [c for _, c in keep]

    def observe(self, querier, provider, outcome, chunks):
        table = self.good if outcome == GOOD else self.bad
        row = table.setdefault(querier, {})
        row[provider] = row.get(provider, 0.0) + 1.0

    def end_round(self, r):
        for table, decay in ((self.good, self.DECAY_GOOD), (self.bad, self.DECAY_BAD)):
            for row in table.values():
                for j in row:
                    row[j] *= decay


class EigenTrust(Variant):
    """Plain EigenTrust (Kamvar et al. 2003): s_ij = sat - unsat over downloads, one global
    pre-trusted set shared by everybody, t = (1-a) C^T t + a p computed once per round (the
    result the distributed algorithm converges to), and the paper's probabilistic provider
    choice: a responder with probability proportional to its trust, except that with
    probability `explore` (10%) a zero-trust responder is tried, so newcomers can earn trust.
    The trust computation is vouchnet's own TrustEngine with the pre-trusted set as anchors.
    """

    name = "eigentrust"

    def __init__(self, world, pop, cfg):
        super().__init__(world, pop, cfg)
        self.sat: dict[tuple[int, int], int] = {}
        self.t = np.zeros(0)

    def observe(self, querier, provider, outcome, chunks):
        key = (querier, provider)
        self.sat[key] = self.sat.get(key, 0) + (1 if outcome == GOOD else -1)

    def trust(self, j: int) -> float:
        return float(self.t[j]) if j < len(self.t) else 0.0

    def order(self, querier, candidates, file, rng):
        left = list(candidates)
        while left:  # a generator: the runner usually needs only the first pick or two
            pos = [(self.trust(c), c) for c in left if self.trust(c) > 0.0]
            zero = [c for c in left if self.trust(c) <= 0.0]
            if pos and not (zero and rng.random() < self.cfg.explore):
                total = sum(t for t, _ in pos)
                x, pick = rng.random() * total, pos[-1][1]
                for t, c in pos:
                    x -= t
                    if x < 0:
                        pick = c
                        break
            else:
                pick = zero[int(rng.random() * len(zero))]
            yield pick
            left.remove(pick)

    def end_round(self, r):
        n = len(self.pop.kind)
        rows, cols, vals = [], [], []
        for (i, j), s in self.sat.items():
            if s > 0:
                rows.append(i)
                cols.append(j)
                vals.append(float(s))
        for i, row in self.pop.opinions(r):
            for j, v in row.items():
                if v > 0:
                    rows.append(i)
                    cols.append(j)
                    vals.append(v)
        engine = TrustEngine.from_arrays(n, np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64),
                                         np.array(vals, dtype=np.float64), np.array(self.world.pretrusted),
                                         params=TrustParams(damping=self.cfg.damping))
        self.t = np.array(engine.compute(warm_start=False).vector)


BASELINES: dict[str, type[Variant]] = {v.name: v for v in (NoReputation, LocalScoring, EigenTrust)}

__all__ = ["BASELINES", "CORRUPT", "EigenTrust", "GOOD", "JUNK", "LocalScoring", "NoReputation", "Variant"]
