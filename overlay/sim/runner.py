"""Play a run: every variant on the same world and the same queries; keep the score; sweep.

The figures (docs/evaluation.md):

- fraction of inauthentic downloads: completed downloads of honest peers that turned out to be
  validly signed junk, over all completed downloads of honest peers (EigenTrust's metric);
- wasted bandwidth: bytes honest peers received that were thrown away (junk files, and the
  chunks in flight when a corrupted chunk was caught), over all bytes they received;
- unserved: queries with at least one responder where no download completed (every provider
  refused, distrusted or caught corrupting), over those queries. A variant cannot look good by
  refusing everything: this number shows it.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from overlay.sim.config import SWEEP_FRACTIONS, MODELS, SimConfig
from overlay.sim.variants import BASELINES, Variant
from overlay.sim.world import CORRUPT, GOOD, JUNK, NEWCOMER, Population, World


@dataclass
class Score:
    queries: int = 0        # queries by honest peers that at least one peer answered
    downloads: int = 0      # completed
    inauthentic: int = 0
    unserved: int = 0
    corrupt_attempts: int = 0
    bytes_total: int = 0
    bytes_wasted: int = 0
    per_round: list[list[int]] = field(default_factory=list)  # [downloads, inauthentic] per round

    def add(self, other: "Score") -> None:
        for k in ("queries", "downloads", "inauthentic", "unserved", "corrupt_attempts", "bytes_total",
                  "bytes_wasted"):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    @property
    def frac_inauthentic(self) -> float:
        return self.inauthentic / self.downloads if self.downloads else 0.0

    @property
    def wasted(self) -> float:
        return self.bytes_wasted / self.bytes_total if self.bytes_total else 0.0

    @property
    def frac_unserved(self) -> float:
        return self.unserved / self.queries if self.queries else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "downloads": self.downloads, "inauthentic": self.inauthentic,
                "unserved": self.unserved, "corrupt_attempts": self.corrupt_attempts,
                "bytes_total": self.bytes_total, "bytes_wasted": self.bytes_wasted,
                "frac_inauthentic": round(self.frac_inauthentic, 6), "wasted": round(self.wasted, 6),
                "frac_unserved": round(self.frac_unserved, 6)}


def make_variant(name: str, world: World, pop: Population, cfg: SimConfig) -> Variant:
    if name == "vouchnet":
        from overlay.sim.vouchnet import Vouchnet  # imports the node's services: only when needed
        return Vouchnet(world, pop, cfg)
    return BASELINES[name](world, pop, cfg)


class _Play:
    """One variant's run: its identities, its choices, its score."""

    def __init__(self, name: str, world: World, cfg: SimConfig) -> None:
        self.world, self.cfg = world, cfg
        self.pop = Population(world)
        self.variant = make_variant(name, world, self.pop, cfg)
        self.established = Score()
        self.newcomers = Score()
        self.seconds = 0.0

    def round(self, r: int, queries: list) -> None:
        t = time.perf_counter()
        w, pop, v = self.world, self.pop, self.variant
        pop.start_round(r)
        v.start_round(r)
        self.established.per_round.append([0, 0])
        self.newcomers.per_round.append([0, 0])
        for q in queries:
            querier = pop.identity(q.querier)
            cands = [pop.identity(t) for t in q.responders]
            if q.querier < 0:  # a malicious peer downloads: honest providers serve (and remember) it
                for c in cands:
                    if pop.is_honest(c):
                        v.served(c, querier, w.chunks[q.file])
                        break
                continue
            if not cands:
                continue
            if not v.measured(querier):  # outside the measured sample (large N): plays, not counted
                self._download(q, querier, cands, r, Score(per_round=[[0, 0]]))
                continue
            score = self.newcomers if pop.kind[querier] == NEWCOMER else self.established
            self._download(q, querier, cands, r, score)
        v.end_round(r)
        self.seconds += time.perf_counter() - t

    def _download(self, q, querier: int, cands: list[int], r: int, score: Score) -> None:
        w, pop, v, cfg = self.world, self.pop, self.variant, self.cfg
        rng = random.Random(q.seed)
        chunks = w.chunks[q.file]
        size = chunks * cfg.chunk_bytes
        score.queries += 1
        for p in v.order(querier, cands, q.file, rng):
            honest = pop.is_honest(p)
            outcome = GOOD if honest else w.behaviour(pop.owner[p], r, rng)
            if not honest and outcome != GOOD:
                pop.caught.add(pop.owner[p])
            if outcome == CORRUPT:
                waste = min(cfg.corrupt_waste, chunks) * cfg.chunk_bytes
                score.corrupt_attempts += 1
                score.bytes_total += waste
                score.bytes_wasted += waste
                v.observe(querier, p, CORRUPT, 0)
                continue
            v.observe(querier, p, outcome, chunks)
            if honest:
                v.served(p, querier, chunks)
            score.downloads += 1
            score.bytes_total += size
            score.per_round[-1][0] += 1
            if outcome == JUNK:
                score.inauthentic += 1
                score.bytes_wasted += size
                score.per_round[-1][1] += 1
            return
        score.unserved += 1

    def close(self) -> None:
        close = getattr(self.variant, "close", None)
        if close is not None:
            close()


def run(cfg: SimConfig) -> dict[str, Any]:
    """One run: every variant in cfg.variants on the same world and queries. JSON-ready."""
    t0 = time.perf_counter()
    world = World(cfg)
    plays = [_Play(name, world, cfg) for name in cfg.variants]
    try:
        for r in range(cfg.rounds):
            queries = world.round_queries(r)
            for play in plays:
                play.round(r, queries)
    finally:
        for play in plays:
            play.close()
    out: dict[str, Any] = {"model": cfg.model, "malicious": cfg.malicious, "seed": cfg.seed, "peers": cfg.peers,
                           "rounds": cfg.rounds, "variants": {}}
    for play in plays:
        total = Score()
        total.add(play.established)
        total.add(play.newcomers)
        res = total.to_dict()
        res["seconds"] = round(play.seconds, 3)
        res["newcomer_downloads"] = play.newcomers.to_dict()
        res["per_round"] = [[a[0] + b[0], a[1] + b[1]] for a, b in
                            zip(play.established.per_round, play.newcomers.per_round)]
        res["identities"] = len(play.pop.kind)
        res.update(play.variant.extra())
        out["variants"][play.variant.name] = res
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out


def _run_task(cfg: SimConfig) -> dict[str, Any]:
    return run(cfg)


def sweep(base: SimConfig, models: Iterable[str] = tuple(MODELS), fractions: Iterable[float] = SWEEP_FRACTIONS,
          workers: int = 2, progress: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Every model at every malicious fraction (each a run of all variants), `workers` at a time.
    Results come back in (model, fraction) order whatever order the workers finish in."""
    tasks = [base.replace(model=m, malicious=f) for m in models for f in fractions]
    # Longest first (E signs attestations for fresh sybils every round; fewer malicious peers
    # means more honest nodes to simulate), so the two workers finish together.
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].model not in ("E", "G"), tasks[i].malicious))
    results: list[dict[str, Any] | None] = [None] * len(tasks)
    if workers <= 1 or len(tasks) == 1:
        for i in order:
            results[i] = run(tasks[i])
            if progress:
                progress(results[i])
    else:
        ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
        with ctx.Pool(workers) as pool:
            pending = {i: pool.apply_async(_run_task, (tasks[i],)) for i in order}
            for i in order:
                results[i] = pending[i].get()
                if progress:
                    progress(results[i])
    return [r for r in results if r is not None]
