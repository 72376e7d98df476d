"""libp2p_compat (s): a DHT server keeps and lists provider records by trust and freshness."""
from __future__ import annotations

import time

import multiaddr
import pytest

from overlay.net.host import build_host, peer_id_from_seed
from overlay.net.libp2p_compat import rank_provider_records
from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

KEY = bytes.fromhex("1220" + "ab" * 32)


def peer(n: int) -> PeerInfo:
    pid = ID.from_base58(peer_id_from_seed(n.to_bytes(4, "big") + b"\x02" * 28))
    return PeerInfo(pid, [multiaddr.Multiaddr(f"/ip4/127.0.0.1/tcp/{1000 + i}") for i in range(20)])


@pytest.fixture
def store_with(request):
    def make(trust: dict[str, float | None], **kw):
        dht = KadDHT(build_host(b"\x05" * 32), DHTMode.SERVER, strict_validation=True)
        rank_provider_records(dht, lambda p: trust.get(p, 0.0), **kw)
        return dht.provider_store
    return make


def ids(infos) -> list[str]:
    return [str(i.peer_id) for i in infos]


def test_unpatched_store_is_first_come_first_served():
    # The behaviour (s) works around, so this test notices when py-libp2p changes it.
    store = KadDHT(build_host(b"\x05" * 32), DHTMode.SERVER, strict_validation=True).provider_store
    for n in range(40):
        store.add_provider(KEY, peer(n))
    store.add_provider(KEY, peer(999))
    assert str(peer(999).peer_id) not in ids(store.get_providers(KEY))


def test_a_trusted_mirror_is_listed_first_after_40_sybils(store_with):
    mirror = peer(999)
    store = store_with({str(mirror.peer_id): 0.3})
    for n in range(40):
        store.add_provider(KEY, peer(n))
    store.add_provider(KEY, mirror)
    listed = store.get_providers(KEY)
    assert len(listed) == 20 and ids(listed)[0] == str(mirror.peer_id)
    assert len(listed[0].addrs) == 8  # addresses per record are bounded


def test_a_lookup_answer_keeps_the_servers_order_where_we_trust_no_one(store_with):
    """A newcomer trusts no provider; what a DHT server answered (its trusted mirror first,
    then 19 sybils) is listed in that order, so a fetch picking the first few gets the mirror.
    (Freshest-first put the mirror last: the hostile DHT test failed about one run in three.)"""
    store = store_with({})
    answer = [peer(999)] + [peer(n) for n in range(19)]
    for info in answer:
        store.add_provider(KEY, info)
        time.sleep(0.001)  # records of one answer arrive microseconds to milliseconds apart
    assert ids(store.get_providers(KEY))[:4] == [str(p.peer_id) for p in answer[:4]]


def test_strangers_rotate_but_never_evict_a_trusted_record(store_with):
    mirror = peer(999)
    store = store_with({str(mirror.peer_id): 0.01}, keep=16)
    store.add_provider(KEY, mirror)
    for n in range(1000):
        store.add_provider(KEY, peer(n))
    kept = store.providers[KEY]
    assert len(kept) == 16 and str(mirror.peer_id) in kept
    # the freshest strangers are the ones kept (an honest stranger announced last is listed)
    assert str(peer(999 - 1).peer_id) in kept and str(peer(0).peer_id) not in kept


def test_distrusted_providers_are_neither_kept_nor_listed(store_with):
    bad = peer(7)
    trust: dict[str, float | None] = {str(bad.peer_id): None}
    store = store_with(trust)
    store.add_provider(KEY, bad)
    assert store.get_providers(KEY) == []
    trust[str(peer(8).peer_id)] = 0.5
    store.add_provider(KEY, peer(8))
    trust[str(peer(8).peer_id)] = None  # distrusted later: no longer listed
    assert store.get_providers(KEY) == []


def test_strangers_cannot_take_the_keys_kept_for_trusted_providers(store_with):
    trusted = peer(999)
    store = store_with({str(trusted.peer_id): 0.2}, max_keys=12, stranger_keys=10)
    for n in range(50):
        store.add_provider(n.to_bytes(34, "big"), peer(n))
    assert len(store.providers) == 10
    store.add_provider(b"\x01" * 34, trusted)
    store.add_provider(b"\x02" * 34, trusted)
    store.add_provider(b"\x03" * 34, trusted)
    assert len(store.providers) == 12
    assert ids(store.get_providers(b"\x02" * 34)) == [str(trusted.peer_id)]


def test_our_own_records_always_go_in(store_with):
    store = store_with({}, max_keys=1, stranger_keys=1)
    for n in range(5):
        store.add_provider(n.to_bytes(34, "big"), peer(n))
    own = PeerInfo(store.local_peer_id, [multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/9")])
    store.add_provider(KEY, own)
    assert ids(store.get_providers(KEY)) == [str(store.local_peer_id)]
