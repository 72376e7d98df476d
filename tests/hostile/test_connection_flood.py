"""H10: a flood of inbound connections from many identities must not lock honest peers out.

On main (py-libp2p's defaults only) inbound connections were taken first come, first served up
to 250, whoever asked; and every inbound connection that ever completed its handshake kept one
of those 250 slots for the life of the node, closed or not, so 250 connect-and-close cycles by
anyone made the node refuse every inbound connection for good. Here the victim's [limits] give
strangers a share of the connections and keep the rest for its anchors (libp2p_compat (t))."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from overlay.lab.localnet import init_home, run_cli, start_node
from tests.hostile.attacker import AttackContext, start_attacker
from tests.hostile.attacks import LOOPBACK_LIMITS, set_limits
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

SYBILS = 20
LIMITS = {"connections_total": 12, "connections_strangers": 8, "connections_per_peer": 2,
          "handshakes_pending": 16, **LOOPBACK_LIMITS}


async def hold_and_redial(ctx: AttackContext) -> None:
    """Each sybil keeps the connection it got and keeps re-dialing if it was refused."""
    import trio

    from overlay.net.libp2p_compat import connect_fresh

    def held() -> int:
        return sum(1 for h in ctx.hosts if h.get_network().get_connections(ctx.target_id))

    for _ in range(int(ctx.options.get("rounds", 5))):
        async with trio.open_nursery() as nursery:
            for h in ctx.hosts:
                if not h.get_network().get_connections(ctx.target_id):
                    nursery.start_soon(_try_connect, connect_fresh, h, ctx.target)
        ctx.report("held", held())
    ctx.report("redials_done", True)
    await trio.sleep_forever()


async def churn(ctx: AttackContext) -> None:
    """Connect and close again, over and over, from a handful of identities."""
    from overlay.net.libp2p_compat import connect_fresh

    want = int(ctx.options["connections"])
    accepted = refused = 0
    for _ in range(2 * want):
        if accepted >= want or refused > 50:
            break
        for h in ctx.hosts:
            if await _try_connect(connect_fresh, h, ctx.target):
                accepted += 1
                await h.get_network().close_peer(ctx.target_id)
            else:
                refused += 1
    ctx.report("accepted", accepted)
    ctx.report("refused", refused)


async def _try_connect(connect_fresh, host, target) -> bool:
    import trio

    try:
        with trio.fail_after(10):
            await connect_fresh(host, target)
        return True
    except Exception:  # refused by the victim: that is the point of the test
        return False


def _share_and_fetch(victim: NodeProc, friend: NodeProc, tmp_path: Path) -> None:
    """The friend reaches the victim and gets fresh content from it, byte for byte."""
    data = os.urandom(300_000)
    src = tmp_path / "fresh.bin"
    src.write_bytes(data)
    cid = victim.cli_json("share", str(src))["cid"]
    out = tmp_path / "fresh.out"
    res = json.loads(friend.cli("fetch", cid, "-o", str(out), "--from", victim.addr, "--json", timeout=120).stdout)
    assert res["cid"] == cid and out.read_bytes() == data


def _peer_id(home: Path) -> str:
    return json.loads(run_cli("id", "--json", home=home, check=True).stdout)["peer_id"]


def test_sybil_flood_cannot_take_the_connections_kept_for_an_anchor(cluster: Cluster, tmp_path: Path):
    friend_home = init_home(tmp_path / "friend")
    victim_home = init_home(tmp_path / "victim")
    cfg = victim_home / "config.toml"
    cfg.write_text(cfg.read_text().replace("anchors = []", f'anchors = ["{_peer_id(friend_home)}"]', 1))
    set_limits(victim_home, LIMITS)
    victim = start_node(victim_home)
    cluster.nodes.append(victim)

    with start_attacker(victim.addr, "tests.hostile.test_connection_flood:hold_and_redial", identities=SYBILS,
                        options={"rounds": 5}, log_dir=tmp_path) as atk:
        wait_for(lambda: atk.stats().get("redials_done") or atk.done(), "the sybils' redials", timeout=120)
        conns = victim.cli_json("status")["connections"]
        assert conns["in_use"]["strangers"] <= 8 and conns["in_use"]["total"] <= 12, conns
        assert conns["refused"]["strangers"] >= SYBILS - 8, conns

        friend = start_node(friend_home, "--bootstrap", victim.addr)
        cluster.nodes.append(friend)
        wait_for(lambda: friend.peer_id in {p["peer_id"] for p in victim.cli_json("peers") if p["connected"]},
                 "the anchor to be connected", timeout=30)
        _share_and_fetch(victim, friend, tmp_path)
        after = victim.cli_json("status")["connections"]
        assert after["in_use"]["trusted"] >= 1 and after["in_use"]["strangers"] <= 8, after
        assert victim.proc.poll() is None


def test_connection_churn_does_not_lock_inbound_out(cluster: Cluster, victim: NodeProc, tmp_path: Path):
    """Default config: 260 connect-and-close cycles, then a newcomer (a stranger) still gets in."""
    with start_attacker(victim.addr, "tests.hostile.test_connection_flood:churn", identities=10,
                        options={"connections": 260}, connect=False, log_dir=tmp_path) as atk:
        wait_for(atk.done, "the churn", timeout=300, poll=0.5)
        stats = atk.stats()
    assert stats.get("accepted", 0) >= 260, (stats, atk.log()[-2000:])
    friend = cluster.add("newcomer", "--bootstrap", victim.addr)
    wait_for(lambda: friend.peer_id in {p["peer_id"] for p in victim.cli_json("peers") if p["connected"]},
             "the newcomer to be connected", timeout=30)
    _share_and_fetch(victim, friend, tmp_path)
    status = victim.cli_json("status")
    assert status["connections"]["in_use"]["total"] <= 3, status  # the churned connections were all freed
    assert victim.proc.poll() is None
