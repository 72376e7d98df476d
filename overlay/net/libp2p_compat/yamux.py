"""Workaround (j): Yamux flow control and framing on content streams. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, NoReturn

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

import struct


# ---------------------------------------------------------------------------------------
# (j) [overlay.node.fetch, overlay.node.daemon] Yamux flow control and framing cost a content transfer
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
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/net/libp2p_compat/yamux.py")

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
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/net/libp2p_compat/yamux.py")
    return (getattr(yamux.YamuxStream, "_auto_tune_and_send_window_update", None), yamux.YAMUX_HEADER_FORMAT,
            yamux.TYPE_DATA, yamux.MAX_WINDOW_SIZE, 4 * MAX_PLAINTEXT_LENGTH - yamux.HEADER_SIZE)


_YAMUX_WINDOW_UPDATE, _YAMUX_HEADER, _YAMUX_DATA, _YAMUX_MAX_WINDOW, WRITE_SIZE = _yamux_facts()


# ---------------------------------------------------------------------------------------
# (o) [every connection] A peer sending past the receive window is buffered without limit.
# Used only through :func:`enforce_receive_windows` (installed by overlay.net.host.build_host).
#
# Verified (paths relative to site-packages/libp2p):
# - stream_muxer/yamux/yamux.py `Yamux.handle_incoming` appends every DATA payload to the
#   stream's `stream_buffers[stream_id]` bytearray (lines 1311 SYN, 1427 ACK, 1542 DATA)
#   and only then subtracts it from `recv_window`; when that goes negative it logs "peer
#   exceeded receive window" and sets the window to 0 (lines 1313-1319, 1431-1438,
#   1544-1551): the data stays buffered and the peer may go on. The only size check is one
#   frame's length against MAX_WINDOW_SIZE = 16 MiB (line 1265). Measured on main: a
#   serving node's RSS 198 -> 1,718 MB in 8 s, a fetching node's 2.2 GB in 12 s.
# - Inbound streams are created for every SYN with no limit (line 1292; the backlog
#   semaphore, line 880, counts only streams we open), each with a 256 KiB window (line 148):
#   many streams within their windows add up as well.
# - The reads under Yamux are bounded: a Noise message is at most 65535 bytes (2-byte length,
#   security/noise/io.py lines 22-27) and `SecureSession.read(n)` (security/secure_session.py
#   line 95) assembles at most the n bytes of the one Yamux frame being read (<= 16 MiB).
# - stream_muxer/muxer_multistream.py `new_conn` builds `Yamux(...)` by name (line 143),
#   ignoring the class given in `muxer_opt`, so a Yamux subclass would never be used.
#
# Fix: on each connection this host upgrades (its `MuxerMultistream.new_conn`), the stream
# buffers check every payload before it is appended, as go-yamux does (a frame past the
# window is a protocol error that ends the session): a payload longer than what is left of
# the stream's receive window, more than `max_buffered` bytes buffered over all the
# connection's streams, or more than `max_inbound_streams` open streams opened by the peer
# ends the whole connection (GO_AWAY protocol error, then closed), logged with the peer ID
# and reported to `on_violation`. Only the first is evidence of misbehaviour: a peer cannot
# exceed a window without breaking the protocol, while the other two are our own caps.
# Nothing past a violation is buffered. A frame is still read before it is refused, so at
# most one frame (<= 16 MiB, line 1265) is in memory beyond the limits, for a moment.
# ---------------------------------------------------------------------------------------
import dataclasses  # noqa: E402 - (o) keeps its imports in its own section


@dataclasses.dataclass(frozen=True)
class WindowViolation:
    """A connection ended by (o): who, which limit ("window", "buffered" or "streams"), and how."""

    peer: str
    reason: str
    detail: str

    @property
    def proves_misbehaviour(self) -> bool:
        """Only sending past a granted window breaks the protocol; the other limits are ours."""
        return self.reason == "window"


OnWindowViolation = Callable[[WindowViolation], None]


@dataclasses.dataclass(frozen=True)
class ReceiveLimits:
    """What one connection may make us hold (see (o)); pure, so it is tested on its own.

    The defaults are far above what an honest vouchnet peer needs (a fetch grants at most
    ~4 MiB on each of 3 streams per provider) and bound a hostile one to 64 MiB: 256 streams
    at the default 256 KiB window."""

    max_buffered: int = 64 << 20
    max_inbound_streams: int = 256

    def check_data(self, stream_id: int, window: int | None, nbytes: int, buffered: int) -> tuple[str, str] | None:
        """``nbytes`` arrived on ``stream_id`` with ``window`` bytes left of what we granted
        (None: not a stream of ours) and ``buffered`` bytes unread on the connection already:
        None if it may be buffered, else (reason, detail)."""
        if window is not None and nbytes > window:
            return "window", (f"yamux: {nbytes} bytes on stream {stream_id} with {max(window, 0)} bytes left of "
                              f"its receive window ({nbytes - max(window, 0)} past it)")
        if buffered + nbytes > self.max_buffered:
            return "buffered", (f"yamux: {buffered + nbytes} bytes unread on one connection (limit "
                                f"{self.max_buffered}); {nbytes} more on stream {stream_id}")
        return None

    def check_stream(self, stream_id: int, inbound_open: int) -> tuple[str, str] | None:
        """The peer opens ``stream_id`` with ``inbound_open`` of its streams open already."""
        if inbound_open >= self.max_inbound_streams:
            return "streams", (f"yamux: stream {stream_id} opened with {inbound_open} streams of the peer's open "
                               f"(limit {self.max_inbound_streams})")
        return None


class _Refused(Exception):
    """Raised into py-libp2p's frame loop to refuse a payload or stream (see (o))."""


class _ConnectionGuard:
    """The per-connection state of (o): the limits, and the first violation seen."""

    __slots__ = ("conn", "limits", "violation")

    def __init__(self, conn: Any, limits: ReceiveLimits) -> None:
        self.conn = conn
        self.limits = limits
        self.violation: WindowViolation | None = None

    def _trip(self, found: tuple[str, str]) -> NoReturn:
        if self.violation is None:
            self.violation = WindowViolation(str(self.conn.peer_id), *found)
        # py-libp2p's loop stops at the next frame; our `handle_incoming` wrapper closes.
        self.conn.event_shutting_down.set()
        raise _Refused(self.violation.detail)

    def admit_data(self, stream_id: int, nbytes: int) -> None:
        if self.violation is not None:
            raise _Refused(self.violation.detail)
        stream = self.conn.streams.get(stream_id)
        window = stream.recv_window if stream is not None else None
        buffered = sum(len(b) for b in self.conn.stream_buffers.values())
        found = self.limits.check_data(stream_id, window, nbytes, buffered)
        if found is not None:
            self._trip(found)

    def admit_stream(self, stream_id: int) -> None:
        if self.violation is not None:
            raise _Refused(self.violation.detail)
        stream = self.conn.streams.get(stream_id)
        if stream is None or stream.is_initiator:  # ours: not the peer's to count
            return
        inbound = sum(1 for s in self.conn.streams.values() if not s.is_initiator and s is not stream)
        found = self.limits.check_stream(stream_id, inbound)
        if found is not None:
            self._trip(found)


class _StreamBuffer(bytearray):
    """A stream's receive buffer that takes a payload only if (o)'s limits allow it."""

    __slots__ = ("_guard", "_stream_id")

    def __init__(self, guard: _ConnectionGuard, stream_id: int, initial: bytes = b"") -> None:
        super().__init__(initial)
        self._guard = guard
        self._stream_id = stream_id

    def extend(self, data: Any) -> None:  # type: ignore[override]
        self._guard.admit_data(self._stream_id, len(data))
        super().extend(data)


class _StreamBuffers(dict):  # type: ignore[type-arg]
    """``Yamux.stream_buffers``: every new stream's buffer is a :class:`_StreamBuffer`."""

    def __init__(self, guard: _ConnectionGuard, existing: dict[int, bytearray]) -> None:
        super().__init__()
        self._guard = guard
        for sid, buf in existing.items():
            dict.__setitem__(self, sid, _StreamBuffer(guard, sid, bytes(buf)))

    def __setitem__(self, stream_id: int, value: bytearray) -> None:
        if not isinstance(value, _StreamBuffer):
            self._guard.admit_stream(stream_id)
            value = _StreamBuffer(self._guard, stream_id, bytes(value))
        super().__setitem__(stream_id, value)


def enforce_receive_windows(host: IHost, on_violation: OnWindowViolation | None = None,
                            limits: ReceiveLimits | None = None) -> None:
    """End every connection of ``host`` whose peer sends past its receive window or over
    ``limits`` (see (o)), reporting each to ``on_violation``; idempotent."""
    muxers: Any = host.get_network().upgrader.muxer_multistream  # type: ignore[attr-defined]
    new_conn = muxers.new_conn
    if getattr(new_conn, "_vouchnet_windows", False):
        return
    _check_yamux_for_o()
    chosen = limits or ReceiveLimits()

    async def guarded_new_conn(conn: Any, peer_id: Any) -> Any:
        muxed = await new_conn(conn, peer_id)
        _guard_connection(muxed, chosen, on_violation)
        return muxed

    guarded_new_conn._vouchnet_windows = True  # type: ignore[attr-defined]
    muxers.new_conn = guarded_new_conn


def _check_yamux_for_o() -> None:
    from libp2p.stream_muxer.yamux import yamux  # noqa: PLC0415

    loop = yamux.Yamux.handle_incoming.__code__
    ready = yamux.Yamux._handle_incoming_with_ready_signal.__code__
    if ("stream_buffers" not in loop.co_names or "extend" not in loop.co_names or "recv_window" not in loop.co_names
            or "handle_incoming" not in ready.co_names or not hasattr(yamux.Yamux, "_cleanup_on_error")):
        raise RuntimeError("py-libp2p's Yamux changed: re-check workaround (o) in overlay/net/libp2p_compat/yamux.py")


def _guard_connection(muxed: Any, limits: ReceiveLimits, on_violation: OnWindowViolation | None) -> None:
    from libp2p.stream_muxer.yamux.yamux import Yamux  # noqa: PLC0415

    if not isinstance(muxed, Yamux) or isinstance(muxed.stream_buffers, _StreamBuffers):
        return
    guard = _ConnectionGuard(muxed, limits)
    muxed.stream_buffers = _StreamBuffers(guard, muxed.stream_buffers)
    frame_loop = muxed.handle_incoming

    async def handle_incoming() -> None:
        try:
            await frame_loop()
        finally:
            if guard.violation is not None:
                await _end_connection(muxed, guard.violation, on_violation)

    muxed.handle_incoming = handle_incoming  # read by `_handle_incoming_with_ready_signal`


async def _end_connection(muxed: Any, violation: WindowViolation, on_violation: OnWindowViolation | None) -> None:
    import trio  # noqa: PLC0415 - imported by libp2p already
    from libp2p.stream_muxer.yamux.yamux import GO_AWAY_PROTOCOL_ERROR, TYPE_GO_AWAY  # noqa: PLC0415

    _log_o.warning("disconnecting %s: it broke the receive window limits: %s", violation.peer, violation.detail)
    if on_violation is not None:
        try:
            on_violation(violation)
        except Exception:  # noqa: BLE001 - a hook must not keep the connection open
            _log_o.exception("receive window violation hook failed")
    with trio.CancelScope(shield=True):
        if not muxed.event_closed.is_set():
            with trio.move_on_after(1):  # a peer that does not read must not hold us here
                try:
                    await muxed._write_frame(struct.pack(_YAMUX_HEADER, 0, TYPE_GO_AWAY, 0, 0, GO_AWAY_PROTOCOL_ERROR))
                except Exception:  # nosec B110 - best effort; the connection is closed next
                    pass
            with trio.move_on_after(5):
                await muxed._cleanup_on_error()


_log_o = logging.getLogger("vouchnet.streams")
