"""Finding 1: a failure inside one stream (here: a reader that never reads) ends that stream only.

On main before the stream guard, a GET_CHUNKS whose answer is never read made Yamux's write time
out after 5 s; the ``StreamReset`` escaped the content handler and the swarm stopped the host."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

CONTENT = "/vouchnet/content/1.0.0"
STREAMS = 4


async def request_and_never_read(ctx: AttackContext) -> None:
    from overlay.wire import protocol
    from overlay.wire.streams import send
    from trust.manifest import parse_cid

    digest = parse_cid(ctx.options["cid"])
    opened = 0
    for host in ctx.hosts:
        for _ in range(STREAMS):
            stream = await ctx.open(host, CONTENT)
            await send(stream, protocol.GetChunks(digest, 0, ctx.options["chunks"]))
            opened += 1
    ctx.report("sent", opened)
    await trio.sleep_forever()


def share(node: NodeProc, tmp: Path, name: str, size: int) -> dict:
    src = tmp / name
    src.write_bytes(os.urandom(size))
    return node.cli_json("share", str(src))


def test_unread_answers_end_their_streams_only(cluster: Cluster, victim: NodeProc, tmp_path: Path):
    big = share(victim, tmp_path, "big.bin", 8 << 20)  # far past the 256 KiB Yamux window
    with start_attacker(victim.addr, "tests.hostile.test_stream_failures:request_and_never_read",
                        identities=2, options={"cid": big["cid"], "chunks": min(16, big["chunks"])},
                        log_dir=tmp_path) as atk:
        assert wait_for(lambda: atk.stats().get("sent") or atk.done(), "attack requests sent", timeout=60) == 2 * STREAMS, atk.log()
        # the node's guard reports each stream it ended; before the fix the first one stopped the host
        wait_for(lambda: "stream ended" in victim.log(), "a stuck stream ended by the guard", timeout=90)
        assert victim.proc.poll() is None, victim.log()[-2000:]
        fresh = share(victim, tmp_path, "fresh.bin", 1 << 20)
        honest = cluster.add("honest")
        out = tmp_path / "out.bin"
        res = honest.cli_json("fetch", fresh["cid"], "-o", str(out), "--from", victim.addr, timeout=90)
        assert res["cid"] == fresh["cid"]
        assert out.read_bytes() == (tmp_path / "fresh.bin").read_bytes()
