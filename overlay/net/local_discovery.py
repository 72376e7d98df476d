"""Dial the peers mDNS finds on the local network (opt-in: `[node] mdns = true`).

py-libp2p's mDNS only adds a discovered peer's addresses to the peerstore and fires
``peerDiscovery``; it never connects, and vouchnet switched off the swarm's own dialing of
peerstore peers (libp2p_compat (f)). Before this module two mDNS nodes met only when
something else happened to dial (a DHT refresh, seconds to never), which made discovery
slow and the test of it flaky. Here each discovery is handed from zeroconf's thread to the
node's trio loop and dialled through ``Node.connect`` (so the outbound_dial policy applies).

Anyone on the LAN can announce records, so the hand-off is bounded: a small queue (excess
announcements are dropped and counted), one dial at a time, and a peer connected already or
dialled within the last ``REDIAL_AFTER`` seconds is not dialled again.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Awaitable, Callable

import trio

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.peer.peerinfo import PeerInfo

log = logging.getLogger("vouchnet.mdns")

QUEUE = 32  # pending announcements; more are dropped (a LAN flood must not grow memory)
REDIAL_AFTER = 30.0  # seconds before the same peer is dialled again
MAX_REMEMBERED = 1024  # peers whose last dial time is kept


class LocalDiscovery:
    """Bridges py-libp2p's ``peerDiscovery`` events to ``dial(multiaddr)`` in a trio task."""

    def __init__(self, own_peer_id: str, dial: Callable[[str], Awaitable[str]],
                 is_connected: Callable[[str], bool]) -> None:
        self._own = own_peer_id
        self._dial = dial
        self._is_connected = is_connected
        self._send, self._receive = trio.open_memory_channel[tuple[str, list[str]]](QUEUE)
        self._token: trio.lowlevel.TrioToken | None = None
        self._last_dial: dict[str, float] = {}
        self.dropped = 0
        self.dialled = 0

    # Called on zeroconf's thread: never touch trio state here, only hand over.
    def _on_discovered(self, info: PeerInfo) -> None:
        token = self._token
        if token is None:
            return
        item = (str(info.peer_id), [str(a) for a in info.addrs][:8])
        try:
            token.run_sync_soon(self._enqueue, item)
        except trio.RunFinishedError:
            pass

    def _enqueue(self, item: tuple[str, list[str]]) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            self.dropped += 1

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from libp2p.discovery.events.peerDiscovery import peerDiscovery  # noqa: PLC0415

        self._token = trio.lowlevel.current_trio_token()
        peerDiscovery.register_peer_discovered_handler(self._on_discovered)
        task_status.started()
        try:
            async for peer_id, addrs in self._receive:
                await self._maybe_dial(peer_id, addrs)
        finally:
            peerDiscovery.unregister_peer_discovered_handler(self._on_discovered)
            self._token = None

    async def _maybe_dial(self, peer_id: str, addrs: list[str]) -> None:
        now = time.monotonic()
        if peer_id == self._own or self._is_connected(peer_id):
            return
        if now - self._last_dial.get(peer_id, float("-inf")) < REDIAL_AFTER:
            return
        if len(self._last_dial) >= MAX_REMEMBERED:
            self._last_dial.clear()
        self._last_dial[peer_id] = now
        for addr in addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{peer_id}"
            try:
                await self._dial(full)
            except Exception as exc:  # noqa: BLE001 - refused or unreachable: try the next address
                log.debug("mDNS peer %s at %s not dialled: %s", peer_id, addr, exc)
                continue
            self.dialled += 1
            log.info("mDNS: connected to local peer %s", peer_id)
            return
