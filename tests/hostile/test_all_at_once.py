"""Every attack of tests/hostile/attacks.py at once, against one default node.

The node must keep serving honest fetches of fresh content, keep producing trust snapshots,
stay within +256 MiB of its idle memory, and its ledger must pass `ledger audit` afterwards.
(Throughput under attack is measured by benchmarks/bench_hostile.py, not asserted here.)"""
from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path

import pytest

from overlay.lab.localnet import run_cli
from tests.hostile.attacker import start_attacker
from tests.hostile.attacks import ATTACKS, MiB, share
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

RSS_BUDGET_KIB = 256 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_every_attack_at_once(cluster: Cluster, loopback_victim: NodeProc, tmp_path: Path):
    victim = loopback_victim
    honest = cluster.add("honest")
    idle = rss_kib(victim.proc.pid)
    with ExitStack() as stack:
        running = []
        for attack in ATTACKS:
            atk = stack.enter_context(start_attacker(victim.addr, attack.spec, identities=attack.identities,
                                                     options=attack.options(victim, tmp_path), log_dir=tmp_path,
                                                     timeout=120))
            running.append((attack, atk))
        for attack, atk in running:
            wait_for(lambda: attack.under_way(atk.stats()) or atk.done(), f"{attack.name} under way", timeout=120)
        before = victim.cli_json("status")["trust_snapshot_age_s"]
        for n in range(2):  # fresh content, fetched whole and byte-identical, while attacked
            item = share(victim, tmp_path, 2 * MiB)
            out = tmp_path / f"honest-{n}.bin"
            res = honest.cli_json("fetch", item["cid"], "-o", str(out), "--from", victim.addr, timeout=180)
            assert res["cid"] == item["cid"] and out.stat().st_size == 2 * MiB
        # trust snapshots keep coming (a tick every 2 s by default): a newer one than before
        wait_for(lambda: (age := victim.cli_json("status")["trust_snapshot_age_s"]) is not None
                 and (before is None or age < before), "a new trust snapshot under attack", timeout=60)
        assert rss_kib(victim.proc.pid) <= idle + RSS_BUDGET_KIB
        assert victim.proc.poll() is None, victim.log()[-2000:]
    victim.stop()
    proc = run_cli("ledger", "audit", "--json", home=victim.home, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
