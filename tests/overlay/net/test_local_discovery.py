"""overlay.net.local_discovery: mDNS announcements (from zeroconf's thread) become bounded dials."""
from __future__ import annotations

import trio

import overlay.net.host  # noqa: F401 - imports libp2p the way the node does
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
import multiaddr

from overlay.net.local_discovery import LocalDiscovery
from overlay.net.host import peer_id_from_seed


def info(n: int) -> PeerInfo:
    pid = ID.from_base58(peer_id_from_seed(bytes([n % 256, n // 256]) + b"\x01" * 30))
    return PeerInfo(pid, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{4000 + n % 1000}")])


def run_discovery(announce, *, connected=frozenset(), fail=frozenset()):
    dialled: list[str] = []

    async def dial(addr: str) -> str:
        dialled.append(addr)
        if any(addr.endswith(p) for p in fail):
            raise OSError("unreachable")
        await trio.sleep(0.001)
        return addr.rsplit("/", 1)[-1]

    own = peer_id_from_seed(b"\x07" * 32)
    disc = LocalDiscovery(own, dial, lambda p: p in connected)

    async def main():
        async with trio.open_nursery() as nursery:
            await nursery.start(disc.run)
            # zeroconf calls the handler on its own thread
            await trio.to_thread.run_sync(announce, own)
            with trio.fail_after(10):
                while disc._receive.statistics().current_buffer_used:  # drained
                    await trio.sleep(0.01)
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert disc._on_discovered not in peerDiscovery._peer_discovered_handlers  # unregistered
    return disc, dialled


def test_each_discovered_peer_is_dialled_once_and_never_ourselves():
    def announce(own):
        for _ in range(3):
            peerDiscovery.emit_peer_discovered(info(1))
            peerDiscovery.emit_peer_discovered(info(2))
        peerDiscovery.emit_peer_discovered(PeerInfo(ID.from_base58(own), [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/1")]))

    disc, dialled = run_discovery(announce)
    assert sorted(dialled) == sorted(f"/ip4/127.0.0.1/tcp/{4000 + n}/p2p/{info(n).peer_id}" for n in (1, 2))
    assert disc.dialled == 2


def test_connected_peers_are_not_dialled():
    disc, dialled = run_discovery(lambda own: peerDiscovery.emit_peer_discovered(info(3)),
                                  connected={str(info(3).peer_id)})
    assert dialled == [] and disc.dialled == 0


def test_a_lan_flood_is_bounded_by_the_queue():
    def flood(own):
        for n in range(5000):
            peerDiscovery.emit_peer_discovered(info(n))

    disc, dialled = run_discovery(flood)
    # the loop drains while the thread floods, so some get through, but never all of them
    assert disc.dropped > 0
    assert len(dialled) + disc.dropped == 5000  # every announcement dialled or counted as dropped
