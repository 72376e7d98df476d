"""`vouchnet sim --real` end to end: real node processes on 127.0.0.1, real libp2p, no mocks.

Six nodes: a publisher, three honest fetchers, an adversary serving corrupted chunks and one
gossiping equivocating attestations. Two rounds of fetches. The run must catch both
adversaries everywhere, accept no inauthentic byte, measure gossip propagation and overhead,
and leave no process behind, also when it is interrupted.
"""
import math
import os
from pathlib import Path

import pytest

from overlay.lab.localnet import run_cli
from overlay.sim.realnet import RealnetConfig, run_real

pytestmark = pytest.mark.network


def running_under(path: Path) -> list[int]:
    """PIDs of live processes whose command line mentions ``path``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if str(path).encode() in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def small(tmp_path: Path, **kw) -> RealnetConfig:
    base = dict(nodes=6, adversaries=2, publishers=1, rounds=2, modes=("corrupt", "equivocate"), seed=3,
                chunks_per_file=16, request_timeout=5.0, warmup=10.0, between_rounds=5.0, settle=10.0,
                time_limit=100.0, reserve=20.0, workdir=tmp_path / "net")
    base.update(kw)
    return RealnetConfig(**base)


def test_small_real_network(tmp_path):
    cfg = small(tmp_path)
    r = run_real(cfg)
    assert running_under(cfg.workdir) == []

    assert len(r.rounds) == 2 and r.fetches == 6 and r.fetches_ok >= 5, r.fetch_log
    assert r.inauthentic_accepted == 0 and r.bad_chunks_from_honest == 0
    assert all(f.authentic for f in r.fetch_log if f.ok)

    corrupt, equivocator = r.adversaries
    for a in r.adversaries:
        assert a.distrusted_by == a.honest == 4, a
        assert a.all_distrusted_s is not None and a.stopped, a
    assert corrupt.bad_chunks >= 1 and corrupt.authentic_chunks == 0  # caught chunk by chunk
    assert corrupt.asked_by_round[-1] == 0 and corrupt.skipped_by_round[-1] == 3
    assert equivocator.all_distrusted_round in (0, 1)  # its gossip gives it away before it serves
    assert 0 < r.wasted_fraction < 0.5

    p = r.propagation
    assert p.receivers == 3 and p.attestations >= 3
    assert p.reached / p.attestations >= 0.9  # >= 99% of the receivers: all three
    assert 0 <= p.t99_median_ms <= p.t99_max_ms < 10_000

    o = r.overhead
    for spread in (o.rpcs_sent, o.rpcs_received, o.messages_sent, o.messages_received, o.bytes_sent,
                   o.bytes_received):
        assert 0 < spread.min <= spread.mean <= spread.max and math.isfinite(spread.max)
    assert o.nodes == 4 and o.bytes_received.mean > o.messages_received.mean * 100  # signed records are 100s of bytes
    assert r.poll_resolution_s < 3


def test_interrupted_run_stops_every_node(tmp_path):
    cfg = small(tmp_path, nodes=4, adversaries=1, modes=("corrupt",))

    def interrupt(msg: str) -> None:
        if msg.startswith("connecting"):  # every node process is running by now
            assert len(running_under(cfg.workdir)) == 4
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_real(cfg, progress=interrupt)
    assert running_under(cfg.workdir) == []


def test_cli_real_options():
    assert run_cli("sim", "--real", "--sweep").returncode == 2
    bad = run_cli("sim", "--nodes", "6")
    assert bad.returncode == 2 and b"needs --real" in bad.stderr
    few = run_cli("sim", "--real", "--nodes", "4", "--adversaries", "3")
    assert few.returncode == 2 and b"too few honest" in few.stderr
