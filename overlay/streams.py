"""Driving the sans-IO content protocol over libp2p streams, with deadlines."""
from __future__ import annotations

import trio

from overlay import protocol
from overlay.framing import read_frame, write_frame

async def send(stream, msg: object) -> None:
    await send_payload(stream, protocol.encode(msg))


async def send_payload(stream, payload: bytes) -> None:
    await write_frame(stream, payload, protocol.MAX_MESSAGE)


async def receive(stream, timeout: float, limit: int = protocol.MAX_MESSAGE) -> bytes | None:
    """One frame within ``timeout`` seconds (trio.TooSlowError otherwise); None at clean EOF."""
    with trio.fail_after(timeout):
        return await read_frame(stream, limit)


async def close_quietly(stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.close()
        except Exception:  # nosec B110 - the peer may already have reset the stream
            pass
