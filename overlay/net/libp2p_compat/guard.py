"""Workaround (m): one failing inbound stream stops the whole host. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost

log = logging.getLogger("vouchnet.streams")

StreamFailure = Callable[[str, BaseException], None]  # (protocol or "negotiation", error)


# ---------------------------------------------------------------------------------------
# (m) [every inbound stream] An exception escaping a stream handler stops the host.
#
# Verified: network/connection/swarm_connection.py `_handle_muxed_stream` (line 309) awaits
# `swarm.common_stream_handler(net_stream)` in the connection's nursery (line 271) with only
# a `finally`; the handler is host/basic_host.py `_swarm_stream_handler` (set at line 307),
# which catches only MultiselectError during negotiation (line 1530) and then awaits the
# protocol handler bare (line 1554). So a Yamux write timeout (`MuxedStreamReset` after 5 s
# when a peer never reads), a reset mid-negotiation or any bug in any handler (ours,
# identify, ping, Kademlia, pubsub) propagates into the nursery and tears the host down:
# one unread GET_CHUNKS answer stopped a default node, 4 tries of 4.
#
# Fix: wrap the swarm's single entry point for inbound streams, so every stream of every
# protocol, negotiation included, runs inside one guard: a failure is logged, counted and
# ends that stream (reset) only. Cancellation is not an Exception and still propagates.
# ---------------------------------------------------------------------------------------
def guard_inbound_streams(host: IHost, on_failure: StreamFailure | None = None) -> None:
    """Make every inbound stream's failure end that stream only (see (m)); idempotent."""
    swarm: Any = host.get_network()
    handler = swarm.common_stream_handler
    if getattr(handler, "_vouchnet_guard", False):
        return
    if not callable(handler):
        raise RuntimeError("py-libp2p's Swarm changed: re-check workaround (m) in overlay/net/libp2p_compat/guard.py")
    swarm.common_stream_handler = _guarded(handler, on_failure)


def _guarded(handler: Callable[[Any], Awaitable[None]], on_failure: StreamFailure | None) -> Callable[[Any], Awaitable[None]]:
    async def guarded(net_stream: Any) -> None:
        try:
            await handler(net_stream)
        except Exception as exc:  # noqa: BLE001 - the point: nothing from one stream escapes
            proto = str(net_stream.get_protocol() or "negotiation")
            peer = str(getattr(getattr(net_stream, "muxed_conn", None), "peer_id", "?"))
            log.info("stream ended: %s from %s: %s: %s", proto, peer, type(exc).__name__, exc)
            if on_failure is not None:
                try:
                    on_failure(proto, exc)
                except Exception:  # noqa: BLE001 - a counter must not turn into a crash
                    log.exception("stream failure hook failed")
            await _reset_quietly(net_stream)

    guarded._vouchnet_guard = True  # type: ignore[attr-defined]
    return guarded


async def _reset_quietly(net_stream: Any) -> None:
    import trio  # noqa: PLC0415 - imported by libp2p already

    with trio.move_on_after(1):
        try:
            await net_stream.reset()
        except Exception:  # nosec B110 - the stream may already be gone
            pass
