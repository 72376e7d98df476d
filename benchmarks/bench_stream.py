"""Baseline: how fast one plain py-libp2p stream moves bytes over vouchnet's host stack.

Two hosts built by ``overlay.net.host.build_host`` (TCP + Noise + Yamux) on 127.0.0.1; the
client opens a stream on a bench protocol, asks for N bytes, and the server writes them
and closes. Timed from opening the stream to the last byte received (the connection is
set up beforehand, as a fetch would normally reuse one).

Modes:
- two processes: the server runs as ``python -m benchmarks.bench_stream serve`` (it prints
  its multiaddr on stdout and serves until its stdin closes);
- one process: both hosts in one trio loop (the baseline in :func:`run`).

Usage: ``python -m benchmarks.bench_stream [--mib 64] [--repeat 3]`` prints MiB/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import trio

from benchmarks.common import Result
from overlay.wire.framing import write_frame
from trust.errors import DecodeError

PROTO = "/vouchnet/bench/raw/1.0.0"
SERVER_SEED = b"\x51" * 32
CLIENT_SEED = b"\x52" * 32
LISTEN = ["/ip4/127.0.0.1/tcp/0"]
WRITE_CHUNK = 1 << 20
READ_CHUNK = 1 << 20
MiB = 1 << 20
_REPO = Path(__file__).resolve().parent.parent


# --------------------------------------------------------------------------- both sides


async def _serve_request(stream) -> None:
    """Handler: read a frame holding an 8-byte big-endian byte count, write that many raw
    bytes, close."""
    from overlay.wire.framing import read_frame

    try:
        req = await read_frame(stream, 8)
        if req is None or len(req) != 8:
            return
        remaining = int.from_bytes(req, "big")
        block = bytes(WRITE_CHUNK)
        while remaining > 0:
            n = min(remaining, WRITE_CHUNK)
            await stream.write(block if n == WRITE_CHUNK else block[:n])
            remaining -= n
    except DecodeError:
        pass
    finally:
        await stream.close()


async def _fetch(host, peer_id, nbytes: int) -> float:
    """Seconds to receive ``nbytes`` over a new stream to ``peer_id``."""
    t0 = time.perf_counter()
    stream = await host.new_stream(peer_id, [PROTO])
    await write_frame(stream, nbytes.to_bytes(8, "big"))
    got = 0
    from libp2p.network.stream.exceptions import StreamEOF

    try:
        while got < nbytes:
            chunk = await stream.read(READ_CHUNK)
            if not chunk:
                break
            got += len(chunk)
    except StreamEOF:
        pass
    elapsed = time.perf_counter() - t0
    await stream.close()
    if got != nbytes:
        raise RuntimeError(f"received {got} of {nbytes} bytes")
    return elapsed


# --------------------------------------------------------------------------- server process


async def _serve_main(max_seconds: float) -> None:
    from overlay.net.host import running_host

    async with running_host(SERVER_SEED, LISTEN) as host:
        host.set_stream_handler(PROTO, _serve_request)
        print("ADDR", host.get_addrs()[0], flush=True)
        # Serve until the parent closes our stdin (or dies), with a hard upper bound.
        with trio.move_on_after(max_seconds):
            await trio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


# --------------------------------------------------------------------------- measurements


def _two_process_seconds(nbytes: int, repeat: int) -> list[float]:
    from overlay.net.host import parse_peer_multiaddr, peer_id_from_seed, running_host

    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_stream", "serve"],
        cwd=_REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        assert proc.stdout is not None
        while not line.startswith("ADDR "):
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("bench server exited before printing its address")
        info = parse_peer_multiaddr(line.split(" ", 1)[1].strip())
        if str(info.peer_id) != peer_id_from_seed(SERVER_SEED):
            raise RuntimeError("bench server has an unexpected peer ID")

        async def client() -> list[float]:
            async with running_host(CLIENT_SEED, LISTEN) as host:
                with trio.fail_after(120):
                    await host.connect(info)
                    return [await _fetch(host, info.peer_id, nbytes) for _ in range(repeat)]

        return trio.run(client)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _one_process_seconds(nbytes: int, repeat: int) -> list[float]:
    from overlay.net.host import parse_peer_multiaddr, running_host

    async def main() -> list[float]:
        async with running_host(SERVER_SEED, LISTEN) as server, running_host(CLIENT_SEED, LISTEN) as client:
            server.set_stream_handler(PROTO, _serve_request)
            info = parse_peer_multiaddr(str(server.get_addrs()[0]))
            with trio.fail_after(120):
                await client.connect(info)
                return [await _fetch(client, info.peer_id, nbytes) for _ in range(repeat)]

    return trio.run(main)


def raw_stream_seconds(nbytes: int, *, two_processes: bool = True, repeat: int = 1) -> float:
    """Median seconds to move ``nbytes`` over one stream (one warm connection)."""
    fn = _two_process_seconds if two_processes else _one_process_seconds
    return statistics.median(fn(nbytes, repeat))


def raw_stream_throughput(nbytes: int, *, two_processes: bool = True, repeat: int = 1) -> float:
    """Measure, print and return MiB/s of a plain py-libp2p stream moving ``nbytes``."""
    secs = raw_stream_seconds(nbytes, two_processes=two_processes, repeat=repeat)
    rate = nbytes / MiB / secs
    mode = "2 processes" if two_processes else "1 process"
    print(f"raw libp2p stream, {nbytes / MiB:.0f} MiB, {mode}: {secs:.3f} s = {rate:.1f} MiB/s")
    return rate


def run(quick: bool = False) -> list[Result]:
    """Raw stream throughput (64 MiB, or 16 MiB if quick), two processes vs one process.

    Informational: this is the baseline vouchnet's verified fetch is later compared with.
    """
    nbytes = (16 if quick else 64) * MiB
    repeat = 1 if quick else 3
    two = raw_stream_seconds(nbytes, two_processes=True, repeat=repeat)
    one = raw_stream_seconds(nbytes, two_processes=False, repeat=repeat)
    mib = nbytes / MiB
    return [
        Result(
            name=f"raw py-libp2p stream, {mib:.0f} MiB, 2 processes (TCP+Noise+Yamux, loopback)",
            baseline="same transfer with both hosts in one process",
            subject_s=two,
            baseline_s=one,
            target="info",
            ok=True,
            detail=f"{mib / two:.1f} MiB/s (2 processes), {mib / one:.1f} MiB/s (1 process), median of {repeat}",
        )
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_stream")
    parser.add_argument("mode", nargs="?", choices=["measure", "serve"], default="measure")
    parser.add_argument("--mib", type=int, default=64, help="MiB to transfer (measure mode)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one-process", action="store_true", help="run both hosts in this process")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="serve mode: stop after this long")
    args = parser.parse_args(argv)
    if args.mode == "serve":
        trio.run(_serve_main, args.max_seconds)
        return 0
    raw_stream_throughput(args.mib * MiB, two_processes=not args.one_process, repeat=args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
