"""Workaround (k): early answers from a DHT provider lookup. See the package docstring."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from libp2p.abc import IHost
    from libp2p.network.config import ConnectionConfig
    from libp2p.peer.id import ID
    from libp2p.peer.peerinfo import PeerInfo

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

