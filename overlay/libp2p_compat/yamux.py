"""Workaround (j): Yamux flow control and framing on content streams. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

import struct


# ---------------------------------------------------------------------------------------
# (j) [overlay.fetch, overlay.node] Yamux flow control and framing cost a content transfer
# more than its bytes do.  Used only through :func:`window_for_response` (client),
# :func:`whole_frames` and ``WRITE_SIZE`` (server).
#
# Verified (paths relative to site-packages/libp2p/stream_muxer/yamux/yamux.py):
# - `YamuxStream.__init__` starts both windows at `DEFAULT_WINDOW_SIZE` (256 KiB, line 148)
#   and `Yamux.open_stream` sends its SYN with a window delta of 0 (line 900), so a new
#   stream carries 256 KiB before its sender waits; `YamuxStream.write` then polls the
#   window with `trio.sleep(0.01)` in a loop (line 285), not on an event. A fetch opens a
#   stream per request of up to 4 MiB: its server stalled for 10 ms whenever the client fell
#   256 KiB behind.
# - `YamuxStream.read` ends every read with `_auto_tune_and_send_window_update` (lines 529,
#   581), which with the default `PY_YAMUX_RELEASE_ON_READ` sends a WINDOW_UPDATE frame for
#   nearly every read: one Noise-encrypted frame and one `send` per read on the client, one
#   frame to decrypt on the server, for each ~64 KiB received.
# - `YamuxStream.write` cuts every write into DATA frames of at most
#   `MAX_MESSAGE_SIZE - HEADER_SIZE` = 65524 payload bytes (line 247), and each frame costs
#   the receiver a pass through `Yamux.handle_incoming`'s Python loop, about as much as
#   decrypting it. Yamux itself allows a frame as long as the receive window (py-libp2p
#   accepts up to `MAX_WINDOW_SIZE`, line 1265). And a 64 KiB frame does not fit one Noise
#   message: the Noise transport splits anything over `MAX_PLAINTEXT_LENGTH` = 65519 bytes
#   (security/noise/io.py lines 27, 62-78), so every frame was a full message and a
#   17-byte one, each with its own encryption, `send`, reads and decryption.
#
# Fix: a client that knows the most its peer will send on a stream (a request's whole
# answer) grants exactly that with one WINDOW_UPDATE right after opening the stream (as
# go-yamux does when it opens a stream with a larger window), and that stream's reads send
# no further updates. The grant bounds what the peer may send, as the window did; a peer
# sending more than it announced only stalls its own stream. A server writes its answer with
# :func:`whole_frames` in pieces of `WRITE_SIZE` bytes: each piece is one Yamux DATA frame
# (built as `YamuxStream.write` builds them, under the same locks, when the granted window
# covers it; otherwise by `YamuxStream.write`) of exactly 4 Noise messages. Measured with two
# hosts in one process moving 64 MiB: about half the CPU of 64 KiB frames.
# ---------------------------------------------------------------------------------------
async def window_for_response(stream: Any, nbytes: int) -> None:
    """Let the peer send ``nbytes`` on ``stream`` in all, without window updates (see (j)).

    ``stream`` is a libp2p net stream (or a muxed stream) that has received nothing yet; one
    that is not Yamux is left alone. Above Yamux's largest window (16 MiB) the window is
    granted up to that and then topped up by reads as usual."""
    from libp2p.stream_muxer.yamux.yamux import MAX_WINDOW_SIZE, YamuxStream  # noqa: PLC0415

    muxed = getattr(stream, "muxed_stream", stream)
    if not isinstance(muxed, YamuxStream):
        return
    if type(muxed)._auto_tune_and_send_window_update is not _YAMUX_WINDOW_UPDATE:
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/libp2p_compat/yamux.py")

    async def _no_window_update(*, bytes_read: int = 0) -> None:
        return None

    async with muxed.window_lock:
        extra = min(nbytes, MAX_WINDOW_SIZE) - muxed.recv_window
        if nbytes <= MAX_WINDOW_SIZE:  # else the usual updates must top the window up
            muxed._auto_tune_and_send_window_update = _no_window_update  # type: ignore[method-assign]
        if extra <= 0:
            return
        muxed.recv_window += extra
    await muxed.send_window_update(extra)


import struct  # noqa: E402 - (j) keeps its imports in its own section

class _WholeFrames:
    """A stream's ``write`` that sends each call as one Yamux DATA frame (see (j))."""

    __slots__ = ("_stream", "_muxed")

    def __init__(self, stream: Any) -> None:
        from libp2p.stream_muxer.yamux.yamux import YamuxStream  # noqa: PLC0415

        self._stream = stream
        muxed = getattr(stream, "muxed_stream", stream)
        self._muxed = muxed if isinstance(muxed, YamuxStream) else None

    async def write(self, data: bytes) -> None:
        muxed = self._muxed
        if muxed is not None and 0 < len(data) <= _YAMUX_MAX_WINDOW:
            async with muxed.rw_lock.write_lock():
                async with muxed.window_lock:
                    whole = not (muxed.send_closed or muxed.closed) and muxed.send_window >= len(data)
                    if whole:
                        muxed.send_window -= len(data)
            if whole:
                header = struct.pack(_YAMUX_HEADER, 0, _YAMUX_DATA, 0, muxed.stream_id, len(data))
                await muxed.conn._write_frame(header + data)
                return
        await self._stream.write(data)  # no window for it (or not Yamux): the library's way


def whole_frames(stream: Any) -> _WholeFrames:
    """Something to ``write`` pieces of up to ``WRITE_SIZE`` bytes to, each sent on ``stream``
    as one Yamux frame when the peer granted the window for it (see (j))."""
    return _WholeFrames(stream)


def _yamux_facts() -> tuple[Any, str, int, int, int]:
    from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH  # noqa: PLC0415
    from libp2p.stream_muxer.yamux import yamux  # noqa: PLC0415

    needed = ("rw_lock", "window_lock", "send_window", "send_closed", "closed", "stream_id", "conn")
    probe = yamux.YamuxStream.__init__.__code__.co_names
    if not all(name in probe for name in needed) or not hasattr(yamux.Yamux, "_write_frame"):
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/libp2p_compat/yamux.py")
    return (getattr(yamux.YamuxStream, "_auto_tune_and_send_window_update", None), yamux.YAMUX_HEADER_FORMAT,
            yamux.TYPE_DATA, yamux.MAX_WINDOW_SIZE, 4 * MAX_PLAINTEXT_LENGTH - yamux.HEADER_SIZE)


_YAMUX_WINDOW_UPDATE, _YAMUX_HEADER, _YAMUX_DATA, _YAMUX_MAX_WINDOW, WRITE_SIZE = _yamux_facts()


# ---------------------------------------------------------------------------------------
# (k) [overlay.node] A DHT provider lookup returns nothing until it has searched everything.
# KadDHT.find_providers (kad_dht/provider_store.py, find_providers) runs the iterative lookup
# until it has `count` providers (we ask 20) or no candidate is left, querying ALPHA (10)
# peers at a time and waiting up to QUERY_TIMEOUT (10 s) on each silent one. With fewer than
# 20 holders it always runs to the end, and a caller's timeout cancels it with every provider
# it had found lost. Each provider it finds is added to the local provider store on the way,
# though, so: run the lookup, watch the store, and return once there are `enough` providers,
