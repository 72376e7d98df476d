"""The ONE place for py-libp2p 0.8 workarounds.

Every workaround below names the behaviour it works around and where in the installed
library (``libp2p`` 0.8.1, paths relative to ``site-packages/libp2p``) that behaviour was
verified. When py-libp2p is upgraded, re-check each one against the new source and delete
the ones that are no longer needed; nothing else in vouchnet should reach into libp2p
private attributes.

Workarounds:

(a) ``import libp2p`` resets the ``libp2p`` logger        -> :func:`import_libp2p`
(b) every dial waits ~250 ms with the default config      -> :func:`connection_config`
(c) failed dials are negatively cached for 60 s           -> :func:`forget_failed_dial`
(d) a stale TCP address in the peerstore blocks a new one -> :func:`connect_fresh`
(e) one libp2p module logs through the ROOT logger, which
    silently runs ``logging.basicConfig()``                -> applied at import
(f) the swarm dials every peer in its peerstore by itself -> :func:`disable_auto_dial`
(g) pubsub outbound queues and subscription channels hold
    32 entries and drop the rest silently                  -> :func:`size_pubsub_buffers`
(h) blacklisting a peer can crash the whole pubsub service -> :func:`safe_blacklist_teardown`
(i) pubsub counts no traffic (no per-RPC hook or counter)  -> :func:`count_pubsub_traffic`
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

__all__ = [
    "import_libp2p",
    "connection_config",
    "forget_failed_dial",
    "connect_fresh",
    "disable_auto_dial",
    "size_pubsub_buffers",
    "safe_blacklist_teardown",
    "count_pubsub_traffic",
]

_LIBP2P_LOGGER = "libp2p"


# ---------------------------------------------------------------------------------------
# (a) `import libp2p` resets the "libp2p" logger.
#
# Verified: libp2p/__init__.py line 141 calls `setup_logging()` at import time;
# libp2p/utils/logging.py `setup_logging()`: when the LIBP2P_DEBUG environment variable
# is unset it does `root_logger.handlers.clear()`,
# `setLevel(logging.WARNING)` and `propagate = False` on logging.getLogger("libp2p")
# (lines 117-124). So whatever level/handlers we configured before the import are lost,
# and because propagate is False libp2p records never reach our root handlers (Python's
# `logging.lastResort` prints WARNING+ straight to stderr instead).
#
# Fix: snapshot the logger before the first import and restore it afterwards; if libp2p
# was already imported by someone else we cannot know the earlier state, so we undo the
# reset's signature (WARNING, no handlers, propagate False) into a neutral child logger
# (NOTSET, propagate True) that follows our root configuration. When LIBP2P_DEBUG is set
# the user explicitly asked for libp2p's own logging set-up, so we leave it alone.
# ---------------------------------------------------------------------------------------
def import_libp2p(level: int | None = None) -> ModuleType:
    """Import ``libp2p`` (once) and undo its logger reset; return the module.

    :param level: if given, set the ``libp2p`` logger to this level afterwards.
    """
    logger = logging.getLogger(_LIBP2P_LOGGER)
    first_import = "libp2p" not in sys.modules
    saved = (logger.level, list(logger.handlers), logger.propagate)

    import libp2p  # noqa: PLC0415 - the point of this function

    if not os.environ.get("LIBP2P_DEBUG"):
        if first_import:
            logger.setLevel(saved[0])
            logger.handlers[:] = saved[1]
            logger.propagate = saved[2]
        elif logger.level == logging.WARNING and not logger.handlers and not logger.propagate:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    if level is not None:
        logger.setLevel(level)
    return libp2p


# Importing this module performs the fixed import, so every vouchnet module that goes
# through overlay.libp2p_compat (overlay.host does) gets libp2p with our logging intact.
import_libp2p()

import libp2p.network.connection.swarm_connection as _swarm_connection  # noqa: E402
from libp2p.network.config import ConnectionConfig as _ConnectionConfig  # noqa: E402


# ---------------------------------------------------------------------------------------
# (e) libp2p/network/connection/swarm_connection.py logs with the module-level functions
# `logging.debug(...)` / `logging.warning(...)` (lines 85-365; it has no `getLogger`).
# Those go to the ROOT logger and, if the root has no handler yet, call
# `logging.basicConfig()` (CPython logging/__init__.py, `def debug`): the first libp2p
# connection then installs a stderr handler on the root logger of OUR process, changing
# how every later log record (ours and libp2p's) is printed. Verified: root had no
# handlers after `import libp2p`, and "ERROR:libp2p.transport.tcp.tcp:..." lines
# appeared after the first SwarmConn existed. Fix: give that module a `logging` stand-in
# whose logging functions go to its own named logger (under "libp2p", so the level set
# in (a) applies) and everything else to the real logging module.
# ---------------------------------------------------------------------------------------
class _NamedLoggerShim:
    _FUNCS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def __getattr__(self, attr: str) -> Any:
        if attr in self._FUNCS:
            return getattr(self._logger, attr)
        return getattr(logging, attr)


if getattr(_swarm_connection, "logging", None) is logging:
    _swarm_connection.logging = _NamedLoggerShim(_swarm_connection.__name__)  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------
# (b) Every dial waits ~250 ms with the default ConnectionConfig.
#
# Verified: libp2p/network/swarm.py, `_HAPPY_EYEBALLS_DELAY = 0.250` (lines 92-94) and
# `Swarm.dial_peer` (line 733): for each selected address it starts a dial task and then
# `with trio.move_on_after(_HAPPY_EYEBALLS_DELAY): await failed_event.wait()` (line 936).
# That wait only ends early if the dial FAILS, or if a successful dial cancels the
# enclosing scope, which happens only when `len(connections) >= max_connections_per_peer`
# (line 916). The default `max_connections_per_peer` is 3 (network/config.py,
# ConnectionConfig line 147), so a successful single dial still sits out the full 250 ms.
# With max_connections_per_peer=1 the first success cancels the wait: connect (dial +
# Noise + Yamux) measured 5-14 ms on loopback.
# ---------------------------------------------------------------------------------------
def connection_config(**overrides: Any) -> ConnectionConfig:
    """A ``ConnectionConfig`` with ``max_connections_per_peer=1`` (see (b)) plus overrides."""
    params: dict[str, Any] = {"max_connections_per_peer": 1}
    params.update(overrides)
    return _ConnectionConfig(**params)


# ---------------------------------------------------------------------------------------
# (c) Failed dials are negatively cached for 60 s.
#
# Verified: libp2p/network/swarm.py `class _NegativePeerCache` (line 109, ttl=60.0);
# `Swarm.__init__` sets `self._negative_peer_cache = _NegativePeerCache()` (line 289);
# `dial_peer` raises `SwarmException("... recently failed all addresses (negative
# cache)")` at once while the peer is cached (line 752) and calls `mark_failed` after all
# addresses failed (line 950, after `_dial_with_retry` retried each address
# `RetryConfig.max_retries` = 3 times, ~0.7 s). The swarm has a public
# `Swarm.unblock_peer(peer_id)` (line 701) that evicts the entry; we use it and fall back
# to the private attribute only for network objects lacking it.
# ---------------------------------------------------------------------------------------
def forget_failed_dial(host: IHost, peer_id: ID) -> None:
    """Let ``host`` dial ``peer_id`` again now, even if a dial failed in the last 60 s."""
    network = host.get_network()
    unblock = getattr(network, "unblock_peer", None)
    if callable(unblock):
        unblock(peer_id)
        return
    cache = getattr(network, "_negative_peer_cache", None)
    if cache is not None:
        cache.evict(str(peer_id))


# ---------------------------------------------------------------------------------------
# (d) A stale TCP address in the peerstore can block a correct one.
#
# Verified: `BasicHost.connect` (libp2p/host/basic_host.py line 1131) only ADDS
# `peer_info.addrs` to the peerstore (`add_addrs(..., 120)`); `PeerData.add_addrs`
# (libp2p/peer/peerdata.py line 100) appends, so older addresses come first. Then
# `Swarm.dial_peer` ranks addresses by transport and keeps at most one per transport
# class (`MAX_ADDRS_PER_PEER = 2`, "Smart Address Selection", swarm.py lines 98, 881-890): only
# the FIRST (stale) TCP address is dialed, the fresh one never is.
#
# Fix: clear the peer's stored addresses (`PeerStore.clear_addrs`, peer/peerstore.py
# line 493) and its negative-cache entry (c), then connect with exactly the given ones.
# If a connection to the peer already exists, `BasicHost.connect` reuses it (line 1134).
# ---------------------------------------------------------------------------------------
async def connect_fresh(host: IHost, peer_info: PeerInfo) -> None:
    """Connect to ``peer_info`` dialing only its given addresses (see (d))."""
    host.get_peerstore().clear_addrs(peer_info.peer_id)
    forget_failed_dial(host, peer_info.peer_id)
    await host.connect(peer_info)


# ---------------------------------------------------------------------------------------
# (f) The swarm dials peers on its own.
#
# Verified: libp2p/network/swarm.py `_init_connection_management` (line 330) creates an
# `AutoConnector` that `Swarm.run` starts unconditionally (lines 393-395); there is no
# ConnectionConfig switch for it. libp2p/network/auto_connector.py `maybe_connect`
# (line 262) dials every peerstore peer with a dialable address while the connection
# count is below the target (midpoint of low_watermark=100 and high_watermark=300), and
# `_periodic_check_task` repeats this every 10 s while below min_connections=50
# (`_critical_check_interval`, line 185), i.e. always for a small overlay. Swarm also
# triggers it on every disconnect (`_schedule_auto_connect`, line 2732). Measured: a host
# whose peerstore held another host's address was connected to it 0.5 s after start
# without any connect() call. Addresses enter the peerstore from identify, DHT and mDNS,
# so remote peers could make us dial addresses of their choosing; vouchnet decides whom
# to dial itself. Fix: replace the instance's `maybe_connect` with a no-op (both callers
# look it up on the instance).
# ---------------------------------------------------------------------------------------
def disable_auto_dial(host: IHost) -> None:
    """Stop ``host``'s swarm from dialing peerstore peers on its own (see (f))."""
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is None:
        return

    async def _no_auto_dial() -> None:
        return None

    connector.maybe_connect = _no_auto_dial


# ---------------------------------------------------------------------------------------
# (g) [overlay.gossip] Pubsub buffers that drop messages silently and that no constructor
# sizes.  Added for overlay/gossip.py; used only through :func:`size_pubsub_buffers`.
#
# Verified (paths relative to site-packages/libp2p/pubsub):
# - Outbound RPC queue per peer: `Pubsub._handle_new_peer` creates `queue = RpcQueue()`
#   with no arguments (pubsub.py line 948) and stores it in `self.peer_queues[peer_id]`
#   (line 949) before starting the sending task and before anything can push to it.
#   `RpcQueue` wraps `PriorityQueue(max_size)` (rpc_queue.py line 126) with the default
#   `OutBoundQueueSize = 32` (line 39); `PriorityQueue.push` rejects when full (line 74)
#   and the callers only log at DEBUG (`GossipSub.send_rpc`, gossipsub.py line 2064,
#   `drop_rpc`). Each message a node publishes or forwards takes one slot per target
#   peer, plus one IDONTWANT slot per v1.2 mesh peer (`_emit_idontwant_for_message`), so
#   32 slots hold ~16 back-to-back messages.
# - Subscription channel per topic: `Pubsub.subscribe` opens
#   `trio.open_memory_channel(SUBSCRIPTION_CHANNEL_SIZE)` (line 1404-1405; the constant is
#   32, line 124) and `notify_subscriptions` uses `send_nowait`, dropping the message
#   with only a WARNING on `trio.WouldBlock` (line 1372). `subscribe` stores the send side
#   in `subscribed_topics_send[topic]` (line 1412) and then the TrioSubscriptionAPI in
#   `subscribed_topics_receive[topic]` (line 1413) with no checkpoint in between.
#
# Fix (per Pubsub instance, nothing global is patched): replace the instance's
# `peer_queues` and `subscribed_topics_receive` dicts, before the service starts, with
# dict subclasses whose `__setitem__` (i) raises the new queue's capacity, (ii) swaps the
# new subscription's 32-slot channel for one of the requested size (closing the unused
# one). Both hooks run at the moment of creation, so no message can have been queued in
# the small buffer yet.
# ---------------------------------------------------------------------------------------
class _SizedPeerQueues(dict):
    """`Pubsub.peer_queues` whose new RpcQueues get ``max_size`` slots (see (g))."""

    def __init__(self, max_size: int) -> None:
        super().__init__()
        self.max_size = max_size

    def __setitem__(self, peer_id: Any, queue: Any) -> None:
        _resize_rpc_queue(queue, self.max_size)
        super().__setitem__(peer_id, queue)


def _resize_rpc_queue(queue: Any, max_size: int) -> None:
    inner = getattr(queue, "_queue", None)
    if inner is None or not hasattr(inner, "max_size"):
        raise RuntimeError("libp2p RpcQueue layout changed: re-check libp2p_compat (g)")
    inner.max_size = max_size


class _SizedSubscriptions(dict):
    """`Pubsub.subscribed_topics_receive` whose new channels hold ``size`` messages."""

    def __init__(self, pubsub: Any, size: int) -> None:
        super().__init__()
        self.pubsub = pubsub
        self.size = size

    def __setitem__(self, topic: str, subscription: Any) -> None:
        import trio  # noqa: PLC0415 - trio is already imported by libp2p

        old_recv = getattr(subscription, "receive_channel", None)
        old_send = self.pubsub.subscribed_topics_send.get(topic)
        if old_recv is None or old_send is None:
            raise RuntimeError("libp2p Pubsub.subscribe layout changed: re-check libp2p_compat (g)")
        send, recv = trio.open_memory_channel(self.size)
        subscription.receive_channel = recv
        self.pubsub.subscribed_topics_send[topic] = send
        old_send.close()
        old_recv.close()
        super().__setitem__(topic, subscription)


def size_pubsub_buffers(pubsub: Any, *, outbound_queue_size: int, subscription_buffer: int) -> None:
    """Give ``pubsub`` (a libp2p ``Pubsub``, not yet started) larger silent-drop buffers.

    ``outbound_queue_size``: RPCs queued per peer (library default 32);
    ``subscription_buffer``: messages buffered per subscribed topic (library default 32).
    Must be called before the Pubsub service runs and before any ``subscribe``.
    """
    if outbound_queue_size < 1 or subscription_buffer < 1:
        raise ValueError("buffer sizes must be positive")
    if pubsub.peer_queues or pubsub.subscribed_topics_receive:
        raise RuntimeError("size_pubsub_buffers() must be called before the pubsub service starts")
    pubsub.peer_queues = _SizedPeerQueues(outbound_queue_size)
    pubsub.subscribed_topics_receive = _SizedSubscriptions(pubsub, subscription_buffer)


# ---------------------------------------------------------------------------------------
# (h) Blacklisting a peer can crash the pubsub service.
#
# Verified: libp2p/pubsub/pubsub.py `add_to_blacklist` (line 685) runs
# `_teardown_if_connected` (line 701) as a service task. That task awaits `stream.reset()`
# and then does `del self.peers[peer_id]`; while it awaits, the dead-stream handler may
# already have removed the peer, so the `del` raises KeyError, the task fails, and the
# service manager takes the whole Pubsub service (and with it our node) down. Seen here when
# a distrusted peer was blacklisted right as its connection closed.
#
# Fix: replace the method on our Pubsub instance with one that removes the peer only if it
# is still there. Same behaviour otherwise.
# ---------------------------------------------------------------------------------------
def safe_blacklist_teardown(pubsub: Any) -> None:
    original = getattr(type(pubsub), "_teardown_if_connected", None)
    forget = getattr(pubsub, "_forget_all_subscriptions", None)
    if original is None or forget is None or not hasattr(pubsub, "peers"):
        raise RuntimeError("py-libp2p's Pubsub changed: re-check workaround (h) in overlay/libp2p_compat.py")

    async def _teardown_if_connected(peer_id: Any) -> None:
        stream = pubsub.peers.get(peer_id)
        if stream is not None:
            try:
                await stream.reset()
            except Exception:  # nosec B110 - the stream may already be gone; removal follows
                pass
            pubsub.peers.pop(peer_id, None)
        forget(peer_id)

    pubsub._teardown_if_connected = _teardown_if_connected


# ---------------------------------------------------------------------------------------
# (i) [overlay.gossip, metrics] Pubsub counts no traffic.  Not a bug: a missing hook.
#
# Verified (paths relative to site-packages/libp2p/pubsub): every outbound RPC but the
# per-stream hello goes through `Pubsub.write_msg(stream, rpc)` (pubsub.py line 1826; called
# as `self.write_msg` at line 1266 and `pubsub.write_msg` in gossipsub.py lines 704, 788),
# which writes the varint length prefix and the serialised RPC (line 1858). Inbound RPCs are
# read by `Pubsub.continuously_read_stream(stream)` (line 547, looked up on the instance by
# `stream_handler`, line 769) with `read_varint_prefixed_bytes_limited`, and each published
# message in them is handed to `self.push_msg(forwarder, msg)` (line 586); a local publish
# calls `push_msg(self.my_id, msg)` (line 1599). The only built-in metric
# (`stream.metric_send_channel`) is an unbuffered channel that stalls the read loop unless
# someone drains it.
#
# Fix (per Pubsub instance, nothing global is patched): wrap the instance's `write_msg`,
# `push_msg` and `continuously_read_stream`; the last reads through a stream proxy that
# counts bytes and splits them into RPC frames by their varint prefixes. The hello RPC (one
# per peer stream, written directly at line 935) is not counted.
# ---------------------------------------------------------------------------------------
Traffic = Callable[[str, int, int, int], None]  # (direction, rpcs, nbytes, messages)


def _uvarint_size(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


class _CountingReader:
    """A read-only view of a pubsub stream that reports each RPC frame read through it."""

    def __init__(self, stream: Any, on_frame: Callable[[int], None]) -> None:
        self._stream = stream
        self._on_frame = on_frame
        self._need = 0  # body bytes still to come; 0 while reading a length prefix
        self._length = 0
        self._shift = 0
        self._bytes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    async def read(self, n: int | None = None) -> bytes:
        data = await self._stream.read(n)
        self._feed(data)
        return data

    def _feed(self, data: bytes) -> None:
        i = 0
        while i < len(data):
            if self._need:
                take = min(self._need, len(data) - i)
                self._need -= take
                self._bytes += take
                i += take
                if not self._need:
                    self._frame()
                continue
            b = data[i]
            i += 1
            self._bytes += 1
            self._length |= (b & 0x7F) << self._shift
            self._shift += 7
            if not b & 0x80:
                self._need, self._length, self._shift = self._length, 0, 0
                if not self._need:
                    self._frame()

    def _frame(self) -> None:
        self._on_frame(self._bytes)
        self._bytes = 0


def count_pubsub_traffic(pubsub: Any, on_traffic: Traffic) -> None:
    """Report ``pubsub``'s RPCs to ``on_traffic(direction, rpcs, nbytes, messages)``.

    ``direction`` is "sent" or "received"; ``nbytes`` counts the length prefix too;
    ``messages`` counts published messages carried (forwards and duplicates included).
    Received frames and received messages are reported by separate calls.
    """
    write_msg = getattr(pubsub, "write_msg", None)
    push_msg = getattr(pubsub, "push_msg", None)
    read_stream = getattr(pubsub, "continuously_read_stream", None)
    if not (callable(write_msg) and callable(push_msg) and callable(read_stream)):
        raise RuntimeError("py-libp2p's Pubsub changed: re-check workaround (i) in overlay/libp2p_compat.py")
    my_id = pubsub.my_id

    async def counting_write_msg(stream: Any, rpc_msg: Any) -> bool:
        ok = await write_msg(stream, rpc_msg)
        if ok:
            size = rpc_msg.ByteSize()
            on_traffic("sent", 1, size + _uvarint_size(size), len(rpc_msg.publish))
        return ok

    async def counting_push_msg(forwarder: Any, msg: Any) -> None:
        if forwarder != my_id:
            on_traffic("received", 0, 0, 1)
        await push_msg(forwarder, msg)

    async def counting_read_stream(stream: Any) -> None:
        await read_stream(_CountingReader(stream, lambda n: on_traffic("received", 1, n, 0)))

    pubsub.write_msg = counting_write_msg
    pubsub.push_msg = counting_push_msg
    pubsub.continuously_read_stream = counting_read_stream


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
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/libp2p_compat.py")

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
        raise RuntimeError("py-libp2p's YamuxStream changed: re-check workaround (j) in overlay/libp2p_compat.py")
    return (getattr(yamux.YamuxStream, "_auto_tune_and_send_window_update", None), yamux.YAMUX_HEADER_FORMAT,
            yamux.TYPE_DATA, yamux.MAX_WINDOW_SIZE, 4 * MAX_PLAINTEXT_LENGTH - yamux.HEADER_SIZE)


_YAMUX_WINDOW_UPDATE, _YAMUX_HEADER, _YAMUX_DATA, _YAMUX_MAX_WINDOW, WRITE_SIZE = _yamux_facts()
__all__ += ["window_for_response", "whole_frames", "WRITE_SIZE"]


# ---------------------------------------------------------------------------------------
# (k) [overlay.node] A DHT provider lookup returns nothing until it has searched everything.
# KadDHT.find_providers (kad_dht/provider_store.py, find_providers) runs the iterative lookup
# until it has `count` providers (we ask 20) or no candidate is left, querying ALPHA (10)
# peers at a time and waiting up to QUERY_TIMEOUT (10 s) on each silent one. With fewer than
# 20 holders it always runs to the end, and a caller's timeout cancels it with every provider
# it had found lost. Each provider it finds is added to the local provider store on the way,
# though, so: run the lookup, watch the store, and return once there are `enough` providers,
# or any at all after `patience` seconds, or whatever the store has at `limit`. (24-node
# real-network run: half the fetches waited the node's full 5 s and got nothing.)
# ---------------------------------------------------------------------------------------

_POLL = 0.05


async def find_providers_early(dht: Any, key: str, count: int, enough: int, patience: float,
                               limit: float) -> list[Any]:
    """Providers of `key` (a hex multihash, as for KadDHT.find_providers), at most `count`."""
    import trio  # noqa: PLC0415 - this module is imported before trio elsewhere

    store = dht.provider_store
    raw = bytes.fromhex(key)  # what KadDHT's _encode_key makes of a hex multihash
    found: list[Any] = []
    done = trio.Event()
    t0 = trio.current_time()

    async def lookup() -> None:
        try:
            found.extend(await dht.find_providers(key, count))
        except Exception as exc:  # noqa: BLE001 - the store may still hold what it found
            logging.getLogger("vouchnet.node").info("DHT provider lookup failed: %s", exc)
        done.set()

    with trio.move_on_after(limit):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lookup)
            while not done.is_set():
                with trio.move_on_after(_POLL):
                    await done.wait()
                have = len(store.get_providers(raw))
                if have >= enough or (have and trio.current_time() - t0 >= patience):
                    break
            nursery.cancel_scope.cancel()
    return (found or store.get_providers(raw))[:count]


__all__ += ["find_providers_early"]
