"""Honest fetches while hostile peers attack the serving node, against the same fetch unattacked.

A default node (the victim) serves; an honest node fetches fresh content from it (a new random
file shared for every fetch, so nothing is cached). First unattacked, then under each attack of
``tests/hostile`` (the attacker processes the hostile tests use: real py-libp2p hosts), then
under all of them at once. Reported per attack: the honest fetch time as a ratio of the
unattacked one (the issue's target: throughput >= 0.5x, i.e. time <= 2x) and the victim's
resident memory under attack against its idle RSS (target: within +256 MiB).

The fetch time is the ``seconds`` the fetching node reports (manifest request to last verified
chunk written); a fetch that fails counts as missed. Attacks are defined next to their tests
(``tests/hostile/test_*.py``) and listed in ``tests/hostile/attacks.py``, so the benchmark and the
tests attack alike.
"""
from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import Result
from overlay.lab.localnet import Cluster, NodeProc, wait_for
from tests.hostile.attacks import ATTACKS, Attack, add_loopback_victim, share

MiB = 1 << 20
RSS_BUDGET_MIB = 256.0


def attacks() -> list[Attack]:
    return list(ATTACKS)


class _RssSampler:
    """Peak VmRSS of a process, sampled every 0.1 s while active."""

    def __init__(self, pid: int):
        self.pid, self.peak_kib, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))
            self._stop.wait(0.1)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fetch_seconds(victim: NodeProc, honest: NodeProc, root: Path, size: int) -> float | None:
    item = share(victim, root, size)
    out = root / f"out-{time.monotonic_ns()}.bin"
    proc = honest.cli("fetch", item["cid"], "-o", str(out), "--from", victim.addr, "--json", check=False, timeout=300)
    if proc.returncode != 0:
        return None
    import json

    res = json.loads(proc.stdout)
    ok = out.stat().st_size == size
    out.unlink(missing_ok=True)
    return float(res["seconds"]) if ok else None


def _fetches(victim: NodeProc, honest: NodeProc, root: Path, size: int, repeat: int) -> tuple[float, int]:
    """Median seconds of the fetches that succeeded, and how many failed (inf if all did)."""
    times = [_fetch_seconds(victim, honest, root, size) for _ in range(repeat)]
    good = [t for t in times if t is not None]
    return (statistics.median(good) if good else float("inf")), len(times) - len(good)


def _under(victim: NodeProc, honest: NodeProc, root: Path, chosen: list[Attack], size: int,
           repeat: int) -> tuple[float, int, float]:
    from tests.hostile.attacker import spawn_attacker

    procs = []
    try:
        for a in chosen:
            procs.append((a, spawn_attacker(victim.addr, a.spec, identities=a.identities,
                                            options=a.options(victim, root), log_dir=root)))
        for a, atk in procs:
            wait_for(lambda: "attacker ready" in atk._read() or atk.proc.poll() is not None, f"{a.name} ready", 120)
            wait_for(lambda: a.under_way(atk.stats()) or atk.done(), f"{a.name} under way", 120)
        with _RssSampler(victim.proc.pid) as rss:
            seconds, failed = _fetches(victim, honest, root, size, repeat)
        return seconds, failed, rss.peak_kib / 1024
    finally:
        for _, atk in procs:
            atk.stop()


def run(quick: bool = False) -> list[Result]:
    size = (4 if quick else 16) * MiB
    repeat = 3
    results: list[Result] = []
    root = Path(tempfile.mkdtemp(prefix="vouchnet-bench-hostile-"))
    with Cluster(root) as cluster:
        victim = add_loopback_victim(cluster)
        honest = cluster.add("honest")
        _fetch_seconds(victim, honest, root, 1 * MiB)  # warm up: connection, first trust
        idle_mib = rss_kib(victim.proc.pid) / 1024
        base_s, base_failed = _fetches(victim, honest, root, size, repeat)
        runs = [([a], a.name) for a in attacks()]
        runs.append((attacks(), "all of the above at once"))
        for chosen, name in runs:
            if victim.proc.poll() is not None:
                results.append(Result(f"honest fetch under {name}", "unattacked", float("inf"), base_s,
                                      "<= 2.00x", False, "the victim node had stopped"))
                continue
            seconds, failed, peak = _under(victim, honest, root, chosen, size, repeat)
            alive = victim.proc.poll() is None
            results.append(Result(
                f"honest fetch of {size // MiB} MiB under {name}", f"the same fetch unattacked ({base_failed} failed)",
                seconds, base_s, "<= 2.00x", alive and failed == 0 and seconds <= 2 * base_s,
                f"{failed} of {repeat} fetches failed; throughput {size / MiB / seconds:.1f} vs "
                f"{size / MiB / base_s:.1f} MiB/s unattacked ({base_s / seconds:.2f}x); victim "
                f"{'alive' if alive else 'STOPPED'}"))
            results.append(Result(
                f"victim RSS under {name}", "the same node idle", peak, idle_mib,
                f"<= idle + {RSS_BUDGET_MIB:.0f} MiB", peak <= idle_mib + RSS_BUDGET_MIB,
                f"peak {peak:.0f} MiB, idle {idle_mib:.0f} MiB (+{peak - idle_mib:.0f} MiB)", unit="MiB"))
    return results


if __name__ == "__main__":
    for r in run(quick=True):
        print(f"{r.name}: {r.ratio:.2f}x ({r.target}) {'ok' if r.ok else 'MISSED'} - {r.detail}")
