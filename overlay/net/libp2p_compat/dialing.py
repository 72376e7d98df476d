"""Workarounds (b), (c), (d), (f), (u): dialing and connections. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

from libp2p.network.config import ConnectionConfig as _ConnectionConfig


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
# (u) A peer whose connections have all closed cannot be reached again until the swarm's
#     own clean-up of them has run.
#
# Verified: libp2p/network/swarm.py `Swarm.new_stream` (line 1554) only dials when
# `get_connections(peer_id)` is empty (line 1586); a closed `SwarmConn` stays in
# `swarm.connections` until its own clean-up task calls `remove_conn` (line 2925), which
# under load runs well after the muxer reports `is_closed`. Meanwhile `new_stream` filters
# the closed ones out and raises `SwarmException("No valid connections available ...")`
# (line 1595, or "No ready connections ..." at 1605/1626) instead of dialling: seen in CI as
# a provider dropped "unreachable" after three such failures. Fix: on exactly those errors,
# remove the peer's closed connections (what the clean-up would do; `remove_conn` is
# idempotent, its resource-manager release a set discard) and try once more, which dials.
# ---------------------------------------------------------------------------------------
_NO_LIVE_CONNECTION = ("No valid connections available", "No ready connections available",
                       "Failed to get a valid connection")


def redial_closed_connections(host: IHost) -> None:
    """Make ``host.new_stream`` dial a peer whose only connections have closed (see (u))."""
    from libp2p.network.exceptions import SwarmException

    swarm = host.get_network()
    original = swarm.new_stream
    if getattr(original, "_vouchnet_redials", False):
        return

    async def new_stream(peer_id: ID) -> Any:
        try:
            return await original(peer_id)
        except SwarmException as exc:
            if not str(exc).startswith(_NO_LIVE_CONNECTION):
                raise
            closed = [c for c in swarm.get_connections(peer_id) if c.is_closed]
            if not closed:
                raise
            for conn in closed:
                swarm.remove_conn(conn)
            logging.getLogger(__name__).debug("dropped %d closed connection(s) to %s; redialling",
                                              len(closed), peer_id)
            return await original(peer_id)

    new_stream._vouchnet_redials = True  # type: ignore[attr-defined]
    swarm.new_stream = new_stream
