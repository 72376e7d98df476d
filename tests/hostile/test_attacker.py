"""The attacker harness itself: its hosts reach a real node and report back."""
from __future__ import annotations

import trio

import pytest

from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import NodeProc, wait_for

pytestmark = pytest.mark.network


async def report_connected(ctx: AttackContext) -> None:
    ctx.report("connected", sum(1 for h in ctx.hosts if ctx.target_id in h.get_connected_peers()))
    await trio.sleep_forever()


def test_attacker_hosts_connect_to_a_real_node(victim: NodeProc, tmp_path):
    with start_attacker(victim.addr, "tests.hostile.test_attacker:report_connected", identities=3,
                        log_dir=tmp_path) as atk:
        assert wait_for(lambda: atk.stats().get("connected"), "attacker stats") == 3
        status = victim.cli_json("status")
        assert status["connected_peers"] >= 3
