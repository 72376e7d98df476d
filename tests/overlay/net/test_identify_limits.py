"""Workaround (v): identify intake is bounded (sans-IO on messages and a real PeerStore, plus two hosts)."""
from __future__ import annotations

import os

import pytest
import trio
from multiaddr import Multiaddr

from overlay.net.libp2p_compat import IdentifyLimits, trim_identify
from overlay.net.libp2p_compat.identify import _bound_peerstore, _Intake

LIMITS = IdentifyLimits()


def _msg(**fields):
    from libp2p.identity.identify.pb.identify_pb2 import Identify

    return Identify(**fields)


def _addr(i: int, length: int = 20) -> bytes:
    return Multiaddr(f"/unix/{i:05d}" + "a" * length).to_bytes()


def test_trim_identify_caps_every_field_and_counts_what_it_dropped():
    msg = _msg(listen_addrs=[_addr(i, 900 if i % 10 == 0 else 20) for i in range(1000)],
               protocols=[f"/p/{i}" for i in range(500)] + ["/x/" + "y" * 500],
               agent_version="a" * 5000, protocol_version="v" * 300, observed_addr=_addr(0, 900),
               signedPeerRecord=b"r" * (LIMITS.max_record_bytes + 1), public_key=b"k" * 36)
    dropped = trim_identify(msg, LIMITS)
    assert len(msg.listen_addrs) == LIMITS.max_addrs
    assert all(len(a) <= LIMITS.max_addr_bytes for a in msg.listen_addrs)
    assert len(msg.protocols) == LIMITS.max_protocols
    assert len(msg.agent_version) == len(msg.protocol_version) == LIMITS.max_version_len
    assert not msg.HasField("observed_addr") and not msg.HasField("signedPeerRecord")
    assert msg.public_key == b"k" * 36  # within limits: untouched
    assert dropped == {"addr_length": 100, "listen_addrs": 900 - LIMITS.max_addrs, "protocol_length": 1,
                       "protocols": 500 - LIMITS.max_protocols, "agent_version": 1, "protocol_version": 1,
                       "observed_addr": 1, "signed_record": 1}


def test_trim_identify_leaves_an_honest_message_alone():
    msg = _msg(listen_addrs=[_addr(1), _addr(2)], protocols=["/ipfs/id/1.0.0"], agent_version="py-libp2p/0.8.1",
               protocol_version="ipfs/0.1.0", public_key=b"k" * 36)
    before = msg.SerializeToString()
    assert trim_identify(msg, LIMITS) == {}
    assert msg.SerializeToString() == before


def _bounded_store(trims: list):
    from libp2p.peer.peerstore import PeerStore

    store = PeerStore()
    _bound_peerstore(store, _Intake(LIMITS, lambda field, n: trims.append((field, n))))
    return store


def test_peerstore_keeps_a_bounded_set_of_addresses_per_peer_across_additions():
    from libp2p.peer.id import ID

    trims: list = []
    store = _bounded_store(trims)
    peer = ID(b"\x00\x01peer")
    for round_ in range(5):  # e.g. DHT answers naming the peer with fresh addresses each time
        store.add_addrs(peer, [Multiaddr(f"/ip4/10.0.{round_}.{i}/tcp/4001") for i in range(100)], 3600)
    store.add_addr(peer, Multiaddr("/unix/" + "z" * 600), 3600)
    assert len(store.addrs(peer)) == LIMITS.max_addrs
    assert sum(n for f, n in trims if f == "peerstore_addrs") == 500 + 1 - LIMITS.max_addrs
    store.add_addrs(peer, store.addrs(peer)[:3], 3600)  # addresses it already has are not "dropped"
    assert sum(n for f, n in trims if f == "peerstore_addrs") == 500 + 1 - LIMITS.max_addrs


def test_a_signed_peer_record_with_many_addresses_is_bounded_too():
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID
    from libp2p.peer.peerstore import create_signed_peer_record

    keys = create_new_key_pair(os.urandom(32))
    peer = ID.from_pubkey(keys.public_key)
    envelope = create_signed_peer_record(peer, [Multiaddr(f"/ip4/10.1.{i // 250}.{i % 250}/tcp/1")
                                                for i in range(2000)], keys.private_key)
    store = _bounded_store([])
    assert store.consume_peer_record(envelope, 3600)
    assert len(store.addrs(peer)) == LIMITS.max_addrs


def test_peerstore_keeps_a_bounded_set_of_protocols_per_peer():
    from libp2p.peer.id import ID

    trims: list = []
    store = _bounded_store(trims)
    peer = ID(b"\x00\x01peer")
    store.add_protocols(peer, [f"/p/{i}" for i in range(200)] + ["/long/" + "x" * 300])
    store.add_protocols(peer, ["/p/1", "/more/1"])
    assert len(store.get_protocols(peer)) == LIMITS.max_protocols
    assert ("peerstore_protocols", 200 + 1 - LIMITS.max_protocols) in trims


@pytest.mark.network
def test_a_bloated_identify_push_between_two_hosts_is_trimmed(caplog):
    from libp2p.custom_types import TProtocol
    from libp2p.utils import varint

    from overlay.net.host import running_host

    trims: list = []

    async def main() -> None:
        async with running_host(os.urandom(32), on_identify_trim=lambda f, n: trims.append((f, n))) as victim, \
                running_host(os.urandom(32)) as attacker:
            await attacker.connect(_info(victim))
            msg = _msg(public_key=attacker.get_public_key().serialize(),
                       listen_addrs=[_addr(i, 40) for i in range(400)],
                       protocols=[f"/p/{i}" for i in range(1000)], agent_version="a" * 10000)
            assert len(msg.SerializeToString()) < LIMITS.max_message  # within the size: trimmed, stored
            raw = msg.SerializeToString()
            for _ in range(3):
                stream = await attacker.new_stream(victim.get_id(), [TProtocol("/ipfs/id/push/1.0.0")])
                await stream.write(varint.encode_uvarint(len(raw)) + raw)
                await stream.close()
            too_big = _msg(public_key=attacker.get_public_key().serialize(), agent_version="b" * 70000)
            raw = too_big.SerializeToString()
            stream = await attacker.new_stream(victim.get_id(), [TProtocol("/ipfs/id/push/1.0.0")])
            await stream.write(varint.encode_uvarint(len(raw)) + raw)
            await stream.close()
            with trio.fail_after(20):
                while not any(f == "message" for f, _ in trims):
                    await trio.sleep(0.05)
            store = victim.get_peerstore()
            assert len(store.addrs(attacker.get_id())) == LIMITS.max_addrs
            assert len(store.get_protocols(attacker.get_id())) <= LIMITS.max_protocols

    with caplog.at_level("WARNING", logger="vouchnet.identify"):
        trio.run(main)
    fields = {f for f, _ in trims}
    assert {"listen_addrs", "protocols", "agent_version", "message"} <= fields
    lines = [r for r in caplog.records if "trimmed" in r.getMessage()]
    assert len(lines) == 1  # once per peer, however often it pushes


def _info(host):
    from overlay.net.host import parse_peer_multiaddr

    return parse_peer_multiaddr(str(host.get_addrs()[0]))


@pytest.mark.network
def test_an_identify_answer_past_the_message_limit_is_cut_off():
    """The host's own identify of a peer (`_identify_peer`) reads at most max_message bytes."""
    from libp2p.custom_types import TProtocol
    from libp2p.utils import varint

    from overlay.net.host import running_host

    trims: list = []

    async def main() -> None:
        async with running_host(os.urandom(32), on_identify_trim=lambda f, n: trims.append((f, n))) as victim, \
                running_host(os.urandom(32)) as attacker:
            msg = _msg(public_key=attacker.get_public_key().serialize(),
                       listen_addrs=[_addr(i, 900) for i in range(1000)])
            raw = msg.SerializeToString()

            async def reply(stream) -> None:
                try:
                    await stream.write(varint.encode_uvarint(len(raw)) + raw)
                finally:
                    await stream.close()

            attacker.set_stream_handler(TProtocol("/ipfs/id/1.0.0"), reply)
            await attacker.connect(_info(victim))  # the victim identifies the attacker on connect
            with trio.fail_after(20):
                while ("message", 1) not in trims:
                    await trio.sleep(0.05)
            assert not victim.get_peerstore().peer_data_map.get(attacker.get_id()) or \
                len(victim.get_peerstore().addrs(attacker.get_id())) <= LIMITS.max_addrs

    trio.run(main)
