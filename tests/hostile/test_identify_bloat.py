"""Issue 10, finding 6: identify bloat broke the CLI.

As filed: 40 peers identifying with 1,000 long addresses each made ``vouchnet peers`` fail with a
JSONDecodeError: the node stored everything identify brought (py-libp2p caps only the message at
1 MiB and listen addresses at 1,000, of any length) and answered every peer with every address on
one control line, far past the 4 MiB the CLI reads. Here every attacker answers the victim's
identify with such a message and then pushes three more (identify-push), each with fresh addresses,
a long agent version and thousands of protocols. After the fix the victim keeps a bounded record of
each (overlay/net/libp2p_compat/identify.py, workaround (v)), `vouchnet peers --json` answers in pages
that cannot outgrow the line, the node's memory stays sane and it still serves an honest fetch."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

IDENTIFY = "/ipfs/id/1.0.0"
PUSH = "/ipfs/id/push/1.0.0"
IDENTITIES = 40
ADDRS = 1000  # in the identify answer, as filed: what py-libp2p itself still accepts
ADDR_LEN = 200  # characters of each /unix/ path; every 10th is far longer
PUSHES = 3  # then pushes small enough to be read (< 64 KiB) but over every per-field limit
PUSH_ADDRS = 120
MiB = 1 << 20


def bloated_identify(host: object, round_: int, n_addrs: int, n_protocols: int, version_len: int) -> bytes:
    """A valid identify message (the host's own key) carrying as much as py-libp2p accepts."""
    from libp2p.identity.identify.pb.identify_pb2 import Identify
    from libp2p.utils import varint
    from multiaddr import Multiaddr

    tag = str(host.get_id())[-8:]  # type: ignore[attr-defined]
    addrs = [Multiaddr(f"/unix/{tag}-{round_}-{i:04d}-" + "a" * (900 if i % 10 == 9 else ADDR_LEN)).to_bytes()
             for i in range(n_addrs)]
    msg = Identify(protocol_version="ipfs/0.1.0" + "v" * version_len, agent_version="bloat/" + "a" * version_len,
                   public_key=host.get_public_key().serialize(),  # type: ignore[attr-defined]
                   listen_addrs=addrs, observed_addr=Multiaddr("/unix/" + "o" * 900).to_bytes(),
                   protocols=[f"/bloat/{round_}/{i}/" + ("p" * 200 if i % 50 == 0 else "p" * 30)
                              for i in range(n_protocols)])
    raw = msg.SerializeToString()
    return varint.encode_uvarint(len(raw)) + raw


async def announce_bloat(ctx: AttackContext) -> None:
    """Answer identify with a bloated message, connect, then push PUSHES more of them."""
    from libp2p.custom_types import TProtocol

    for host in ctx.hosts:
        payload = bloated_identify(host, 0, ADDRS, 4000, 20000)

        async def reply(stream: object, payload: bytes = payload) -> None:
            try:
                await stream.write(payload)  # type: ignore[attr-defined]
            finally:
                await stream.close()  # type: ignore[attr-defined]

        host.set_stream_handler(TProtocol(IDENTIFY), reply)
    pushed = 0
    failures: list[str] = []

    async def connect_and_push(host: object) -> None:
        nonlocal pushed
        try:
            with trio.fail_after(60):
                await host.connect(ctx.target)  # type: ignore[attr-defined]
                for r in range(1, PUSHES + 1):
                    stream = await ctx.open(host, PUSH)
                    await stream.write(bloated_identify(host, r, PUSH_ADDRS, 300, 2000))
                    await stream.close()
                    pushed += 1
        except Exception as exc:  # the victim may refuse or reset; report it, the test decides
            failures.append(f"{type(exc).__name__}: {exc}"[:200])

    async with trio.open_nursery() as nursery:
        for host in ctx.hosts:
            nursery.start_soon(connect_and_push, host)
    ctx.report("peers", [str(h.get_id()) for h in ctx.hosts])
    ctx.report("failures", failures[:5])
    ctx.report("pushed", pushed)
    await trio.sleep_forever()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def peers_json(node: NodeProc) -> tuple[list[dict], int]:
    """`vouchnet peers --json` must succeed whatever peers sent (it failed on JSONDecodeError)."""
    proc = node.cli("peers", "--json", check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    return json.loads(proc.stdout), len(proc.stdout)


def test_identify_bloat_is_bounded_and_peers_still_answers(cluster: Cluster, loopback_victim: NodeProc,
                                                           tmp_path: Path):
    victim = loopback_victim
    rss_before = rss_bytes(victim.proc.pid)
    with start_attacker(victim.addr, "tests.hostile.test_identify_bloat:announce_bloat", identities=IDENTITIES,
                        connect=False, log_dir=tmp_path, timeout=60) as atk:
        stats = wait_for(lambda: (st := atk.stats()).get("pushed") is not None and st or atk.done(),
                         "attackers connected and pushed", timeout=240)
        assert stats is not True, atk.log()[-2000:]
        attackers = set(stats["peers"])
        assert stats["pushed"] > 0, stats

        def all_identified() -> dict[str, dict] | None:
            rows, _ = peers_json(victim)
            got = {r["peer_id"]: r for r in rows if r["peer_id"] in attackers}
            return got if len(got) == len(attackers) and all(r.get("addrs_total", len(r["addrs"])) >= 32 for r in got.values()) else None

        got = wait_for(all_identified, "every attacker's identify stored", timeout=120, poll=1.0)
        from overlay.node.control import MAX_RESPONSE_LINE
        from overlay.net.libp2p_compat.identify import IdentifyLimits
        from overlay.node.operations import MAX_ADDRS_SHOWN
        from overlay.node.paging import MAX_FIELD_CHARS

        limits = IdentifyLimits()
        rows, size = peers_json(victim)
        assert size < MAX_RESPONSE_LINE
        for r in got.values():
            assert r["addrs_total"] == limits.max_addrs  # the peerstore kept a bounded set...
            assert len(r["addrs"]) <= MAX_ADDRS_SHOWN  # ...of which the answer shows a few
            assert all(len(a) <= MAX_FIELD_CHARS for a in r["addrs"])
            assert all("aaaa" * 100 not in a for a in r["addrs"])  # over-long addresses were dropped
        # one page of a few peers, and the cursor that leads to the next one
        page = victim.cli("peers", "--json", "--limit", "5")
        assert len(json.loads(page.stdout)) == 5 and "--after" in page.stderr.decode()
        log = victim.log()
        trimmed = [p for p in attackers if f"identify from {p} trimmed" in log]
        assert len(trimmed) == len(attackers), log[-3000:]
        assert all(log.count(f"identify from {p} trimmed") == 1 for p in attackers)  # once per peer
        assert rss_bytes(victim.proc.pid) < rss_before + 200 * MiB
        assert victim.proc.poll() is None

        src = tmp_path / "fresh.bin"
        src.write_bytes(os.urandom(1 << 20))
        fresh = victim.cli_json("share", str(src))
        honest = cluster.add("honest")
        out = tmp_path / "out.bin"
        res = honest.cli_json("fetch", fresh["cid"], "-o", str(out), "--from", victim.addr, timeout=120)
        assert res["cid"] == fresh["cid"] and out.read_bytes() == src.read_bytes()
