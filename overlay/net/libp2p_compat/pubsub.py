"""Workarounds (g), (h), (i): GossipSub's pubsub service. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

# ---------------------------------------------------------------------------------------
# (g) [overlay.net.gossip] Pubsub buffers that drop messages silently and that no constructor
# sizes.  Added for overlay/net/gossip.py; used only through :func:`size_pubsub_buffers`.
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
        raise RuntimeError("py-libp2p's Pubsub changed: re-check workaround (h) in overlay/net/libp2p_compat/pubsub.py")

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
# (i) [overlay.net.gossip, metrics] Pubsub counts no traffic.  Not a bug: a missing hook.
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
        raise RuntimeError("py-libp2p's Pubsub changed: re-check workaround (i) in overlay/net/libp2p_compat/pubsub.py")
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

