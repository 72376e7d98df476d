"""Workarounds (k), (s), (w): DHT provider lookups, records and announcements. See the package docstring."""
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

log = logging.getLogger(__name__)

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



# ---------------------------------------------------------------------------------------
# (s) [kad_dht/provider_store.py] Provider slots go first come, first served, for good.
#
# Verified: `ProviderStore.add_provider` (line 563) keeps at most BUCKET_SIZE (20,
# kad_dht/common.py:29) providers per key and ignores every later one (line 583) until a
# record expires after 48 h (PROVIDER_RECORD_EXPIRATION_INTERVAL, line 55); `get_providers`
# (line 602) returns them in arrival order; the number of keys is unbounded (any peer may
# ADD_PROVIDER for new keys, rate-limited per peer only, kad_dht.py:1258). Measured: 40
# sybils announcing a CID took its 20 slots; an honest mirror announced afterwards was not
# listed to anyone. The handler already checks that the provider is the sender (kad_dht.py:823).
#
# Fix: replace the instance's two methods. Each key keeps up to `keep` records; when full, a
# newcomer evicts the lowest-ranked record only if it ranks higher, or the stalest record
# of its own rank (so strangers rotate among themselves and never push out a trusted
# provider). Answers list the best `count` by rank, ties in arrival order. Distrusted providers are not
# kept. Keys are bounded in total, with a share strangers can never take. Our own records
# (local provide) always go in. `rank(peer)` is the node's trust in peer (0: stranger), None
# for a distrusted one; it is asked at every answer, so it follows trust as it changes.
# ---------------------------------------------------------------------------------------

ProviderRank = Callable[[str], "float | None"]

PROVIDERS_KEPT = 64  # records per key (what an answer chooses from)
PROVIDERS_LISTED = 20  # records per answer: the Kademlia k the library and its peers expect
PROVIDER_KEYS = 50_000  # keys in all
STRANGER_KEYS = 40_000  # keys strangers (rank 0) may open; the rest waits for trusted providers
MAX_ADDRS = 8  # addresses kept per provider record


def rank_provider_records(dht: Any, rank: ProviderRank, *, keep: int = PROVIDERS_KEPT,
                          listed: int = PROVIDERS_LISTED, max_keys: int = PROVIDER_KEYS,
                          stranger_keys: int = STRANGER_KEYS) -> None:
    """Make `dht`'s provider store keep and list providers by trust and freshness (see (s))."""
    import time  # noqa: PLC0415

    from libp2p.kad_dht.provider_store import (  # noqa: PLC0415
        PROVIDER_RECORD_EXPIRATION_INTERVAL,
        ProviderRecord,
    )
    from libp2p.peer.peerinfo import PeerInfo as _PeerInfo  # noqa: PLC0415

    store = dht.provider_store
    if getattr(store, "_vouchnet_ranked", False):
        return
    if not hasattr(store, "providers") or not callable(getattr(store, "add_provider", None)):
        raise RuntimeError("py-libp2p's ProviderStore changed: re-check workaround (s) in overlay/net/libp2p_compat/kad.py")
    own = str(store.local_peer_id)
    log = logging.getLogger("vouchnet.dht")

    def score(peer: str) -> float | None:
        return float("inf") if peer == own else rank(peer)

    def add_provider(key: bytes, provider: PeerInfo) -> None:
        if not provider or not provider.peer_id:
            return
        peer = str(provider.peer_id)
        mine = score(peer)
        if mine is None:
            log.debug("DHT: not keeping distrusted provider %s", peer)
            return
        records = store.providers.get(key)
        if records is None:
            if peer != own and len(store.providers) >= (max_keys if mine > 0 else stranger_keys):
                log.debug("DHT: provider keys full, not keeping %s's new key", peer)
                return
            records = store.providers[key] = {}
        if peer not in records and len(records) >= keep:
            now = time.time()
            ranked = [(score(p) if now - r.timestamp <= PROVIDER_RECORD_EXPIRATION_INTERVAL else None, r.timestamp, p)
                      for p, r in records.items()]
            worst = min(ranked, key=lambda t: (float("-inf") if t[0] is None else t[0], t[1]))
            if worst[0] is not None and worst[0] > mine:
                return  # every kept provider is trusted more than this one
            del records[worst[2]]
        records[peer] = ProviderRecord(_PeerInfo(provider.peer_id, list(provider.addrs)[:MAX_ADDRS]),
                                       timestamp=time.time())

    def get_providers(key: bytes) -> list[PeerInfo]:
        records = store.providers.get(key)
        if not records:
            return []
        now = time.time()
        live = []
        for peer, record in list(records.items()):
            s = score(peer)
            if now - record.timestamp > PROVIDER_RECORD_EXPIRATION_INTERVAL:
                del records[peer]
            elif s is not None:
                live.append((s, record))
        if not records:
            store.providers.pop(key, None)
        # Equal ranks keep the order the records came in (a stable sort): a lookup's answer
        # stays in the order the DHT server ranked it. (Sorting them freshest first put the
        # server's first choice last: 20 records from one answer differ by microseconds.)
        live.sort(key=lambda t: t[0], reverse=True)
        return [_PeerInfo(r.peer_id, r.addresses) for _, r in live[:listed]]

    store.add_provider = add_provider
    store.get_providers = get_providers
    store._vouchnet_ranked = True


# ---------------------------------------------------------------------------------------
# (w) [kad_dht/provider_store.py] A provide() reaches only the XOR-closest peers to the key,
#     which sybils can occupy, and it waits on each of them.
#
# Verified: `ProviderStore.provide` (line 207) sends ADD_PROVIDER only to the k peers that
# `find_closest_peers_network` returns (line 237), up to ALPHA at a time, each stream open
# waiting up to 10 s. Sybils that pick IDs near a key (or are just many: 40 of them in a
# 41-peer routing table) can make that set theirs, so the announcement may reach no honest
# DHT server at all, or only after the node's 5 s DHT deadline has run out on the sybils'
# stalled streams (seen in the hostile DHT test's logs). Fix: announce first, directly
# and in parallel, to the peers the node chooses (its connected peers, trusted first), then
# run py-libp2p's provide as before. `_send_add_provider` (line 275) is the library's own
# single-peer ADD_PROVIDER.
# ---------------------------------------------------------------------------------------
DIRECT_ANNOUNCE = 8  # peers told directly per provide


async def announce_directly(dht: Any, peers: "list[ID]", key: bytes, timeout: float) -> int:
    """Send ADD_PROVIDER for ``key`` to each of ``peers`` (at most DIRECT_ANNOUNCE, in
    parallel, each within ``timeout``); returns how many were sent (see (w))."""
    import trio

    store = getattr(dht, "provider_store", None)
    send = getattr(store, "_send_add_provider", None)
    if send is None:
        return 0
    sent = 0

    async def one(peer: "ID") -> None:
        nonlocal sent
        with trio.move_on_after(timeout):
            try:
                sent += bool(await send(peer, key))
            except Exception as exc:  # noqa: BLE001 - one unreachable peer must not stop the others
                log.debug("direct ADD_PROVIDER to %s failed: %s", peer, exc)

    async with trio.open_nursery() as nursery:
        for peer in peers[:DIRECT_ANNOUNCE]:
            nursery.start_soon(one, peer)
    return sent


async def ask_directly(dht: Any, peers: "list[ID]", key: bytes, timeout: float) -> "list[PeerInfo]":
    """GET_PROVIDERS for ``key`` to each of ``peers`` (at most DIRECT_ANNOUNCE, in parallel,
    each within ``timeout``): their answers in the order of ``peers``, each in the order it came.

    The other half of (w). py-libp2p's `ProviderStore.find_providers` (line 371) answers from
    the local store alone whenever it holds any record for the key, so a node whose first
    lookup came back with sybils only asked no one again (the hostile DHT test saw a newcomer
    retry for 120 s while its DHT server listed the trusted mirror first). The peers we are
    connected to are asked every time; `_get_providers_from_peer_with_closers` (line 461) is
    the library's own single-peer query."""
    import trio

    store = getattr(dht, "provider_store", None)
    query = getattr(store, "_get_providers_from_peer_with_closers", None)
    if query is None:
        return []
    chosen = peers[:DIRECT_ANNOUNCE]
    answers: list[list[Any]] = [[] for _ in chosen]

    async def one(i: int, peer: "ID") -> None:
        with trio.move_on_after(timeout):
            try:
                providers, _closer = await query(peer, key)
                answers[i] = list(providers or [])[:PROVIDERS_LISTED]
            except Exception as exc:  # noqa: BLE001 - one peer failing must not stop the others
                log.debug("direct GET_PROVIDERS to %s failed: %s", peer, exc)

    async with trio.open_nursery() as nursery:
        for i, peer in enumerate(chosen):
            nursery.start_soon(one, i, peer)
    return [info for answer in answers for info in answer]
