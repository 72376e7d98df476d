"""Finding 3: streams that send their request one byte a second (slowloris) must not starve
honest fetches.

On main before overlay/net/stream_limits.py, a stream took one of the node's 64 serving slots as it
opened and kept it while its request trickled in (up to the 10 s request timeout, then the
attacker opened another): 16 identities x 4 such streams held all 64, every honest request got
BUSY, and a BUSY answer to the manifest request ended the fetch (no retry, no other provider)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

CONTENT = "/vouchnet/content/1.0.0"
IDENTITIES = 16
STREAMS = 4  # per identity: the victim's node.streams_per_peer


async def trickle_requests(ctx: AttackContext) -> None:
    """Every identity keeps STREAMS streams open, each sending its request a byte at a time,
    and opens a new one as soon as the victim ends one."""
    from overlay.wire import protocol
    from overlay.wire.framing import encode_frame_parts
    from trust.manifest import parse_cid

    request = encode_frame_parts(protocol.encode_parts(protocol.GetManifest(ctx.options["cid"])),
                                 protocol.MAX_MESSAGE)
    assert len(request) > 8, len(request)  # many seconds of trickling at one byte a second
    pause = float(ctx.options.get("pause", 1.0))
    held = 0
    opened = 0
    parse_cid(ctx.options["cid"])

    async def one_slot(host) -> None:
        nonlocal held, opened
        while True:
            try:
                stream = await ctx.open(host, CONTENT)
            except Exception:  # refused or busy: try again shortly
                await trio.sleep(pause)
                continue
            opened += 1
            held += 1
            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(watch, stream, inner.cancel_scope)
                    for i in range(len(request)):
                        await stream.write(request[i:i + 1])
                        await trio.sleep(pause)
                    await trio.sleep_forever()  # sent it all (never on a defended node): keep the slot
            except Exception:  # nosec B110 - the victim ended the stream: open the next one
                pass
            finally:
                held -= 1

    async def watch(stream, scope: trio.CancelScope) -> None:
        """Any answer (ERROR busy or too slow) or EOF ends the stream: stop and reopen."""
        try:
            await stream.read(1)
        except Exception:  # nosec B110 - a reset is an end too
            pass
        scope.cancel()

    async def report() -> None:
        peak, last = 0, None
        while True:
            peak = max(peak, held)
            if (held, peak, opened) != last:
                last = (held, peak, opened)
                ctx.report("held", held)
                ctx.report("peak", peak)
                ctx.report("opened", opened)
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(report)
        for host in ctx.hosts:
            for _ in range(STREAMS):
                nursery.start_soon(one_slot, host)


def test_slow_requests_hold_no_serving_slot(cluster: Cluster, loopback_victim: NodeProc, tmp_path: Path):
    victim = loopback_victim
    src = tmp_path / "old.bin"
    src.write_bytes(os.urandom(200_000))
    old = victim.cli_json("share", str(src))
    with start_attacker(victim.addr, "tests.hostile.test_slow_requests:trickle_requests", identities=IDENTITIES,
                        options={"cid": old["cid"]}, log_dir=tmp_path) as atk:
        # All 64 of its streams open at once: on main that is every serving slot of the node.
        wait_for(lambda: (atk.stats().get("peak") or 0) >= IDENTITIES * STREAMS or atk.done(),
                 "the slow streams to be open", timeout=120)
        assert not atk.done(), atk.log()
        honest = cluster.add("honest")
        for n in range(2):  # fresh content each time, so nothing is cached anywhere
            data = os.urandom(1 << 20)
            fresh = tmp_path / f"fresh{n}.bin"
            fresh.write_bytes(data)
            cid = victim.cli_json("share", str(fresh))["cid"]
            out = tmp_path / f"out{n}.bin"
            res = honest.cli_json("fetch", cid, "-o", str(out), "--from", victim.addr, timeout=120)
            assert res["cid"] == cid and out.read_bytes() == data
        streams = victim.cli_json("status")["streams"]
        assert streams["in_use"]["pending"] >= 1, (streams, atk.stats())  # the attack was still under way
        assert streams["in_use"]["serving"] <= streams["limits"]["total"], streams
        assert (atk.stats().get("opened") or 0) > IDENTITIES * STREAMS  # the victim ended slow streams
    assert victim.proc.poll() is None, victim.log()[-2000:]
