"""Shared shape of a benchmark result: every figure is a ratio against a baseline run alongside."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class Result:
    name: str  # what is measured, e.g. "Merkle tree of 1 GiB vs hashlib.sha256"
    baseline: str  # what the baseline is
    subject_s: float  # median seconds of the measured thing
    baseline_s: float  # median seconds of the baseline, same run
    target: str  # the target, e.g. "<= 1.10x"
    ok: bool  # whether the target holds
    detail: str = ""  # extra figures (throughput, sizes)
    unit: str = "s"  # what subject_s/baseline_s hold: seconds, or another unit such as "MiB"

    @property
    def ratio(self) -> float:
        return self.subject_s / self.baseline_s if self.baseline_s else float("inf")


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def interleaved(subject: Callable[[], object], baseline: Callable[[], object], repeat: int = 5) -> tuple[float, float]:
    """Alternate subject and baseline so machine noise hits both alike; return medians."""
    s, b = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        baseline()
        b.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subject()
        s.append(time.perf_counter() - t0)
    return statistics.median(s), statistics.median(b)
