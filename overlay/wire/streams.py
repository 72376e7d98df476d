"""Driving the sans-IO content protocol over libp2p streams, with deadlines."""
from __future__ import annotations

import trio

from overlay.wire import protocol
from overlay.wire.framing import FrameReader, encode_frame_parts, read_frame, write_frame

async def send(stream, msg: object) -> None:
    await stream.write(encode_frame_parts(protocol.encode_parts(msg), protocol.MAX_MESSAGE))  # type: ignore[arg-type]


async def send_payload(stream, payload: bytes) -> None:
    await write_frame(stream, payload, protocol.MAX_MESSAGE)


async def receive(stream, timeout: float, limit: int = protocol.MAX_MESSAGE) -> bytes | None:
    """One frame within ``timeout`` seconds (trio.TooSlowError otherwise); None at clean EOF."""
    with trio.fail_after(timeout):
        return await read_frame(stream, limit)


def frame_reader(stream, limit: int = protocol.MAX_MESSAGE) -> FrameReader:
    """A read-ahead frame reader for a stream whose every remaining byte is frames for us."""
    return FrameReader(stream, limit)


async def receive_from(reader: FrameReader, timeout: float) -> bytes | None:
    """Like :func:`receive`, from a :class:`FrameReader`."""
    with trio.fail_after(timeout):
        return await reader.read()


async def close_quietly(stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.close()
        except Exception:  # nosec B110 - the peer may already have reset the stream
            pass


async def reset_quietly(stream) -> None:
    with trio.move_on_after(1):
        try:
            await stream.reset()
        except Exception:  # nosec B110 - already reset or closed by the peer
            pass
