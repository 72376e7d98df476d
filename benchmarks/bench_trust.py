"""EigenTrust compute vs a bare scipy power iteration on the same random graph.

Graph: n peers, m edges with uniform random endpoints and weights (numpy, seeded), self-loops
dropped, duplicates summed; anchors are 10 random peers. Both sides iterate from p with
damping 0.1 to an L1 change < 1e-9.

Baseline: `t = (1 - a) * (CT @ t) + a * p` with an L1 check, on a prebuilt row-normalised Cᵀ
and a precomputed a·p. (Written `(1 - a) * CT @ t` Python would scale the whole matrix each
step; the bracketed form is the faster, fairer baseline.)
Subject: TrustEngine.compute(warm_start=False) on the same edges. Timed per call: building p,
the dangling terms, the iteration and the result. Not timed: the one-off Cᵀ build, which the
engine repeats only after the graph changes (reported in detail), like the baseline's Cᵀ.
"""
from __future__ import annotations

import resource
import time
import tracemalloc

import numpy as np
import scipy.sparse as sp

from benchmarks.common import Result, interleaved
from trust.trust_engine import TrustEngine, TrustParams

DAMPING = 0.1
TOL = 1e-9
MAX_ITER = 1000
ANCHORS = 10


def _graph(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, m, dtype=np.int32)
    cols = rng.integers(0, n, m, dtype=np.int32)
    vals = rng.random(m) + 1e-3  # strictly positive, so both sides keep every edge
    keep = rows != cols
    anchors = rng.choice(n, ANCHORS, replace=False)
    return rows[keep], cols[keep], vals[keep], anchors


def _baseline_inputs(n: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, anchors: np.ndarray):
    c = sp.csr_array((vals, (rows, cols)), shape=(n, n))
    c.sum_duplicates()
    row_sum = np.asarray(c.sum(axis=1)).ravel()
    row_sum[row_sum == 0] = 1.0
    c.data /= np.repeat(row_sum, np.diff(c.indptr))
    ct = c.T.tocsr()
    ct.sum_duplicates()
    p = np.zeros(n)
    p[anchors] = 1.0 / len(anchors)
    return ct, p


def _bare_power_iteration(ct: sp.csr_array, p: np.ndarray) -> tuple[np.ndarray, int]:
    a = DAMPING
    ap = a * p
    t = p.copy()
    for k in range(1, MAX_ITER + 1):
        t_new = (1 - a) * (ct @ t) + ap
        res = np.abs(t_new - t).sum()
        t = t_new
        if res < TOL:
            return t, k
    return t, MAX_ITER


def _peak_mib(fn) -> float:
    """Peak bytes numpy/scipy allocated while fn ran (tracemalloc sees numpy buffers)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _case(n: int, m: int, seed: int, repeat: int):
    rows, cols, vals, anchors = _graph(n, m, seed)
    ct, p = _baseline_inputs(n, rows, cols, vals, anchors)
    params = TrustParams(damping=DAMPING, tolerance=TOL, max_iterations=MAX_ITER)
    engine = TrustEngine.from_arrays(n, rows, cols, vals, anchors, params=params)
    del rows, cols, vals
    t0 = time.perf_counter()
    first = engine.compute(warm_start=False)  # includes the one-off Cᵀ build
    build_s = time.perf_counter() - t0

    subject_s, baseline_s = interleaved(lambda: engine.compute(warm_start=False), lambda: _bare_power_iteration(ct, p), repeat)
    base_vec, base_iter = _bare_power_iteration(ct, p)
    cold = engine.compute(warm_start=False)
    warm_t0 = time.perf_counter()
    warm = engine.compute(warm_start=True)
    warm_s = time.perf_counter() - warm_t0
    l1 = float(np.abs(cold.vector - base_vec / base_vec.sum()).sum())
    assert np.array_equal(cold.vector, first.vector), "compute is not deterministic"

    peak_engine = _peak_mib(lambda: engine.compute(warm_start=False))
    peak_base = _peak_mib(lambda: _bare_power_iteration(ct, p))
    ct_mib = (ct.data.nbytes + ct.indices.nbytes + ct.indptr.nbytes) / 2**20
    detail = (
        f"nnz={ct.nnz:,}; iterations engine {cold.iterations} / baseline {base_iter}; "
        f"L1(engine - baseline)={l1:.1e}; first compute incl. Cᵀ build {build_s:.2f} s; "
        f"warm recompute {warm_s * 1e3:.1f} ms ({warm.iterations} it); "
        f"peak extra per compute {peak_engine:.0f} MiB engine / {peak_base:.0f} MiB baseline; "
        f"Cᵀ {ct_mib:.0f} MiB"
    )
    return subject_s, baseline_s, detail


def run(quick: bool = False) -> list[Result]:
    results: list[Result] = []
    n_big, m_big = (100_000, 2_000_000) if quick else (1_000_000, 20_000_000)
    s, b, detail = _case(n_big, m_big, seed=20240601, repeat=3 if not quick else 5)
    results.append(
        Result(
            name=f"EigenTrust compute, {n_big:,} peers / {m_big:,} edges",
            baseline="bare scipy power iteration (same graph, a=0.1, L1<1e-9)",
            subject_s=s,
            baseline_s=b,
            target="<= 2.0x",
            ok=s / b <= 2.0,
            detail=detail + f"; process max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB",
        )
    )
    s, b, detail = _case(100_000, 2_000_000, seed=20240602, repeat=7)
    results.append(
        Result(
            name="EigenTrust compute, 100,000 peers / 2,000,000 edges (absolute)",
            baseline="bare scipy power iteration (same graph, a=0.1, L1<1e-9)",
            subject_s=s,
            baseline_s=b,
            target="< 100 ms",
            ok=s < 0.100,
            detail=detail,
        )
    )
    return results


if __name__ == "__main__":
    import sys

    for r in run(quick="--quick" in sys.argv):
        print(f"{'OK  ' if r.ok else 'FAIL'} {r.name}: {r.subject_s * 1e3:.1f} ms vs {r.baseline_s * 1e3:.1f} ms "
              f"({r.ratio:.2f}x, target {r.target})")
        print(f"     baseline: {r.baseline}")
        print(f"     {r.detail}")
