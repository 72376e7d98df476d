"""Finding 2: a peer sending past the Yamux receive window it was granted (H2).

On main, py-libp2p's Yamux logged "peer exceeded receive window" and buffered the data anyway:
a serving node's RSS went 198 -> 1,718 MB in 8 s, a fetching node's to 2.2 GB. The attackers
here are real py-libp2p hosts that write raw Yamux DATA frames on their muxed connection, past
any window (py-libp2p's own ``YamuxStream.write`` would wait for window updates).

Memory is measured as the victim process's peak RSS (``VmHWM``) against its idle RSS."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
import trio

from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

CONTENT = "/vouchnet/content/1.0.0"
FLOOD = 320 << 20        # bytes an attacker sends past the window (more than the bound below)
FRAME = 64 * 1024 - 12   # payload per DATA frame, as py-libp2p's own writer sends
RSS_BOUND = 256 << 20    # the victim's peak RSS may exceed its idle RSS by at most this


# -- the attacker side ---------------------------------------------------------------------------

async def _flood(muxed: object, budget: list[int]) -> tuple[int, str]:
    """Write raw DATA frames on ``muxed``'s stream, ignoring its send window, until ``budget``
    is spent or the connection breaks; (bytes sent, why it stopped)."""
    from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, YAMUX_HEADER_FORMAT

    frame = struct.pack(YAMUX_HEADER_FORMAT, 0, TYPE_DATA, 0, muxed.stream_id, FRAME) + bytes(FRAME)  # type: ignore[attr-defined]
    sent = 0
    while budget[0] > 0:
        if muxed.conn.event_shutting_down.is_set():  # type: ignore[attr-defined]
            # (py-libp2p's writes to a TCP connection it closed itself return silently)
            return sent, "connection closed (GO_AWAY or EOF from the victim)"
        try:
            await muxed.conn._write_frame(frame)  # type: ignore[attr-defined]
        except Exception as exc:  # the victim hung up: what the test wants
            return sent, f"{type(exc).__name__}: {exc}"[:200]
        sent += FRAME
        budget[0] -= FRAME
    return sent, "budget spent"


async def flood_request(ctx: AttackContext) -> None:
    """Serving side: open a content stream to the node and flood it past the window."""
    host = ctx.hosts[0]
    ctx.report("peer", str(host.get_id()))
    stream = await ctx.open(host, CONTENT)
    sent, why = await _flood(stream.muxed_stream, [ctx.options["bytes"]])
    ctx.report("sent", sent)
    ctx.report("stopped", why)
    await trio.sleep_forever()


async def flood_answers(ctx: AttackContext) -> None:
    """Fetching side: a provider that answers GET_MANIFEST honestly and GET_CHUNKS with an
    endless flood past the window the fetcher granted."""
    from overlay.wire import protocol
    from overlay.wire.streams import receive, send

    host = ctx.hosts[0]
    signed = bytes.fromhex(ctx.options["manifest"])
    budget = [ctx.options["bytes"]]
    floods: list[tuple[int, str]] = []

    async def serve(stream: object) -> None:
        payload = await receive(stream, 10, limit=protocol.MAX_REQUEST)
        request = protocol.ServerExchange().receive_request(payload or b"")
        if isinstance(request, protocol.GetManifest):
            await send(stream, protocol.ManifestMsg(signed))
            await stream.close()  # type: ignore[attr-defined]
            return
        ctx.report("floods", len(floods) + 1)
        floods.append(await _flood(stream.muxed_stream, budget))  # type: ignore[attr-defined]
        ctx.report("sent", sum(s for s, _ in floods))
        ctx.report("stopped", floods[-1][1])
        await trio.sleep_forever()

    host.set_stream_handler(CONTENT, serve)
    ctx.report("peer", str(host.get_id()))
    ctx.report("addr", str(host.get_addrs()[0]))
    await trio.sleep_forever()


# -- the test side -------------------------------------------------------------------------------

def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def rss(pid: int) -> int:
    return _status_kib(pid, "VmRSS") << 10


def peak_rss(pid: int) -> int:
    return _status_kib(pid, "VmHWM") << 10


def share(node: NodeProc, tmp: Path, name: str, size: int) -> tuple[dict, Path]:
    src = tmp / name
    src.write_bytes(os.urandom(size))
    return node.cli_json("share", str(src)), src


def peer_row(node: NodeProc, peer: str) -> dict:
    return next((r for r in node.cli_json("peers") if r["peer_id"] == peer), {})


def test_serving_node_drops_a_peer_sending_past_the_window(cluster: Cluster, victim: NodeProc, tmp_path: Path):
    item, src = share(victim, tmp_path, "content.bin", 1 << 20)
    idle = rss(victim.proc.pid)
    with start_attacker(victim.addr, "tests.hostile.test_receive_window:flood_request",
                        options={"bytes": FLOOD}, log_dir=tmp_path) as atk:
        stats = wait_for(lambda: atk.stats() if "stopped" in atk.stats() or atk.done() else None,
                         "the attacker to be cut off or to send everything", timeout=90)
        grown = peak_rss(victim.proc.pid) - idle
        print(f"victim RSS +{grown >> 20} MiB over idle {idle >> 20} MiB; attacker sent {stats.get('sent', 0)} bytes")
        assert grown <= RSS_BOUND, f"victim RSS grew by {grown >> 20} MiB (sent {stats.get('sent', 0) >> 20} MiB)"
        assert stats["sent"] < FLOOD and stats["stopped"] != "budget spent", stats  # cut off, not drained
        attacker = stats["peer"]
        row = wait_for(lambda: (r := peer_row(victim, attacker)) and not r["connected"]
                       and r["observations"].get("protocol_violation") and r,
                       "the attacker disconnected and its violation recorded", timeout=30)
        assert "receive window" in victim.log(), victim.log()[-2000:]
    assert victim.proc.poll() is None
    honest = cluster.add("honest")
    out = tmp_path / "out.bin"
    res = honest.cli_json("fetch", item["cid"], "-o", str(out), "--from", victim.addr, timeout=90)
    assert res["cid"] == item["cid"] and out.read_bytes() == src.read_bytes()
    assert row["misbehaved"] or row["observations"]["protocol_violation"] >= 1


def _manifest_hex(node: NodeProc, cid: str) -> str:
    from overlay.store import ContentStore

    store = ContentStore(node.home / "store")
    try:
        return store.require(cid).signed_manifest.hex()
    finally:
        store.close()


def test_fetching_node_drops_a_provider_flooding_past_the_window(cluster: Cluster, tmp_path: Path):
    publisher = cluster.add("publisher")
    item, src = share(publisher, tmp_path, "content.bin", 8 << 20)
    fetcher = cluster.add("fetcher")
    idle = rss(fetcher.proc.pid)
    with start_attacker(fetcher.addr, "tests.hostile.test_receive_window:flood_answers", connect=False,
                        options={"bytes": FLOOD, "manifest": _manifest_hex(publisher, item["cid"])},
                        log_dir=tmp_path) as atk:
        addr = wait_for(lambda: atk.stats().get("addr"), "the attacker's address")
        out = tmp_path / "out.bin"
        # the attacker is named first: it is asked for the manifest and gets chunk requests
        res = fetcher.cli_json("fetch", item["cid"], "-o", str(out), "--from", addr, "--from", publisher.addr,
                               timeout=120)
        stats = wait_for(lambda: (s := atk.stats()).get("stopped") and s, "the flood to end", timeout=90)
        assert stats.get("floods"), (stats, atk.log()[-2000:])
        assert stats["sent"] < FLOOD, stats  # cut off, not drained
        grown = peak_rss(fetcher.proc.pid) - idle
        print(f"fetcher RSS +{grown >> 20} MiB over idle {idle >> 20} MiB; attacker sent {stats.get('sent', 0)} "
              f"bytes in {stats['floods']} floods")
        assert grown <= RSS_BOUND, f"fetcher RSS grew by {grown >> 20} MiB (sent {stats.get('sent', 0) >> 20} MiB)"
        assert out.read_bytes() == src.read_bytes()
        attacker = stats["peer"]
        assert res["providers"][attacker]["chunks"] == 0
        assert res["providers"][attacker]["dropped"], res
        # the flooding connection was closed by the fetcher (its DHT may dial the attacker again later)
        assert stats["stopped"] != "budget spent" and f"disconnecting {attacker}" in fetcher.log(), stats
        wait_for(lambda: peer_row(fetcher, attacker).get("observations", {}).get("protocol_violation"),
                 "the attacker's violation recorded", timeout=30)


async def fill_many_streams(ctx: AttackContext) -> None:
    """Serving side, every window respected: open stream after stream, fill each one's 256 KiB
    window and half-close it; the node never reads what its handlers did not ask for."""
    from libp2p.stream_muxer.yamux.yamux import DEFAULT_WINDOW_SIZE

    host = ctx.hosts[0]
    ctx.report("peer", str(host.get_id()))
    budget = [ctx.options["bytes"]]
    opened = 0
    why = "budget spent"
    while budget[0] > 0:
        try:
            stream = await ctx.open(host, CONTENT)
        except Exception as exc:  # the victim hung up
            why = f"{type(exc).__name__}: {exc}"[:200]
            break
        opened += 1
        fill = [min(budget[0], DEFAULT_WINDOW_SIZE)]
        budget[0] -= fill[0]
        _, why = await _flood(stream.muxed_stream, fill)
        if why != "budget spent":
            break
        try:
            await stream.close()  # frees the attacker's own stream slot; the data stays with the victim
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"[:200]
            break
        if opened % 64 == 0:
            ctx.report("opened", opened)
    ctx.report("opened", opened)
    ctx.report("sent", ctx.options["bytes"] - budget[0])
    ctx.report("stopped", why)
    await trio.sleep_forever()


def test_serving_node_bounds_what_many_streams_buffer(cluster: Cluster, victim: NodeProc, tmp_path: Path):
    item, src = share(victim, tmp_path, "content.bin", 1 << 20)
    idle = rss(victim.proc.pid)
    with start_attacker(victim.addr, "tests.hostile.test_receive_window:fill_many_streams",
                        options={"bytes": FLOOD}, log_dir=tmp_path) as atk:
        stats = wait_for(lambda: (s := atk.stats()).get("stopped") and s, "the attacker to be cut off or done",
                         timeout=120)
        grown = peak_rss(victim.proc.pid) - idle
        print(f"victim RSS +{grown >> 20} MiB over idle {idle >> 20} MiB; attacker opened {stats['opened']} streams, "
              f"sent {stats['sent']} bytes")
        assert grown <= RSS_BOUND, f"victim RSS grew by {grown >> 20} MiB ({stats['opened']} streams)"
        assert stats["stopped"] != "budget spent", stats
        assert f"disconnecting {stats['peer']}" in victim.log()
    assert victim.proc.poll() is None
    honest = cluster.add("honest")
    out = tmp_path / "out.bin"
    res = honest.cli_json("fetch", item["cid"], "-o", str(out), "--from", victim.addr, timeout=90)
    assert res["cid"] == item["cid"] and out.read_bytes() == src.read_bytes()
