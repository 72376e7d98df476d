"""overlay.net.limits: inbound connection limits with a share reserved for trusted peers (H10)."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay.net.limits import REASONS, ConnectionGate, ConnectionLimits, subnet_of


def gate(**kw: int) -> ConnectionGate:
    base = dict(total=6, strangers=4, per_peer=2, per_ip=3, per_subnet=5, pending=4)
    base.update(kw)
    return ConnectionGate(ConnectionLimits(**base))


def connect(g: ConnectionGate, key: object, ip: str, peer: str, trusted: bool = False) -> str | None:
    return g.begin(key, ip) or g.establish(key, peer, trusted)


def test_defaults_are_consistent():
    lim = ConnectionLimits()
    assert lim.check() is None
    assert (lim.total, lim.strangers, lim.per_ip, lim.per_subnet, lim.per_peer) == (256, 192, 8, 32, 2)


@pytest.mark.parametrize("kw, word", [
    ({"strangers": 7}, "strangers"), ({"per_ip": 6}, "per_ip"), ({"total": 0}, "total"),
    ({"pending": 10**6}, "pending"), ({"per_peer": True}, "per_peer")])
def test_inconsistent_limits_are_refused(kw, word):
    base = dict(total=6, strangers=4, per_peer=2, per_ip=3, per_subnet=5, pending=4)
    base.update(kw)
    problem = ConnectionLimits(**base).check()
    assert problem and word in problem
    with pytest.raises(ValueError):
        ConnectionGate(ConnectionLimits(**base))


def test_subnets():
    assert subnet_of("10.1.2.3") == "10.1.2.0/24"
    assert subnet_of("::ffff:10.1.2.3") == "10.1.2.0/24"
    assert subnet_of("2001:db8:1:2::5") == "2001:db8:1::/48"
    assert subnet_of("not-an-ip") == "?not-an-ip"


def test_strangers_get_their_share_and_trusted_peers_the_rest():
    g = gate(per_ip=6, per_subnet=6)
    for i in range(4):
        assert connect(g, i, "10.0.0.1", f"s{i}") is None
    assert connect(g, 4, "10.0.0.1", "s4") == "strangers"
    assert connect(g, 5, "10.0.0.1", "t1", trusted=True) is None
    assert connect(g, 6, "10.0.0.1", "t2", trusted=True) is None
    assert connect(g, 7, "10.0.0.1", "t3", trusted=True) == "per_ip"
    assert g.snapshot()["in_use"] == {"total": 6, "strangers": 4, "trusted": 2, "pending": 0, "peers": 6,
                                      "ips": 1, "subnets": 1, "max_per_ip": 6, "max_per_subnet": 6}
    assert g.snapshot()["refused"] == {"total": 0, "strangers": 1, "per_peer": 0, "per_ip": 1, "per_subnet": 0,
                                       "pending": 0}


def test_total_is_a_hard_cap_even_for_trusted_peers():
    g = gate(per_ip=6, per_subnet=6)
    for i in range(6):
        assert connect(g, i, f"10.0.{i}.1", f"t{i}", trusted=True) is None
    assert g.begin(9, "10.9.9.9") == "total"


def test_ip_and_subnet_limits_apply_before_the_handshake():
    g = gate(per_ip=2, per_subnet=3)
    assert g.begin(1, "10.0.0.1") is None and g.begin(2, "10.0.0.1") is None
    assert g.begin(3, "10.0.0.1") == "per_ip"
    assert g.begin(4, "10.0.0.2") is None
    assert g.begin(5, "10.0.0.3") == "per_subnet"
    assert g.begin(6, "10.0.1.1") is None  # another /24
    assert g.pending == 4
    assert g.begin(7, "10.0.2.1") == "pending"
    for k in (1, 2, 4, 6):
        g.end(k)
    assert g.snapshot()["in_use"]["ips"] == 0 and g.pending == 0


def test_per_peer_limit_and_end_frees_everything():
    g = gate()
    assert connect(g, 1, "10.0.0.1", "p") is None
    assert connect(g, 2, "10.0.1.1", "p") is None
    assert connect(g, 3, "10.0.2.1", "p") == "per_peer"
    g.end(1)
    g.end(1)  # idempotent
    assert connect(g, 4, "10.0.2.1", "p") is None
    for k in (2, 3, 4):
        g.end(k)
    assert g.snapshot()["in_use"]["total"] == 0 and g.keys() == []


def test_refused_at_establish_is_forgotten_and_unknown_connections_need_an_ip():
    g = gate(strangers=1)
    assert connect(g, 1, "10.0.0.1", "a") is None
    assert connect(g, 2, "10.0.0.1", "b") == "strangers"
    assert g.keys() == [1] and g.pending == 0
    assert g.establish(3, "c", True, ip="10.0.5.5") is None  # never seen pending (another transport)
    with pytest.raises(ValueError):
        g.establish(4, "d", True)
    with pytest.raises(ValueError):
        g.begin(1, "10.0.0.1")


# ----------------------------------------------------------------------------- hypothesis

ops = st.lists(st.tuples(st.sampled_from(["connect", "begin", "end"]), st.integers(0, 7), st.integers(0, 5)),
               max_size=120)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(2, 12), st.data())
def test_limits_always_hold_and_trusted_peers_always_get_in(script, total, data):
    strangers = data.draw(st.integers(1, total - 1))
    per_ip = data.draw(st.integers(1, 6))
    lim = ConnectionLimits(total=total, strangers=strangers, per_peer=2, per_ip=per_ip,
                           per_subnet=per_ip + data.draw(st.integers(0, 6)), pending=data.draw(st.integers(1, 8)))
    g = ConnectionGate(lim)
    keys = itertools.count()
    live: list[int] = []
    pending: list[int] = []
    # Strangers (many identities, few addresses) do whatever they like.
    for op, ipn, peern in script:
        ip, peer = f"10.0.{ipn % 3}.{ipn}", f"sybil{peern}"
        if op == "connect":
            k = next(keys)
            if connect(g, k, ip, peer) is None:
                live.append(k)
        elif op == "begin":
            k = next(keys)
            if g.begin(k, ip) is None:
                pending.append(k)
        elif live or pending:
            g.end((live or pending).pop(0))
        snap = g.snapshot()["in_use"]
        assert snap["strangers"] <= lim.strangers and snap["total"] <= lim.total
        assert snap["max_per_ip"] <= lim.per_ip and snap["max_per_subnet"] <= lim.per_subnet
        assert snap["total"] + snap["pending"] <= lim.total and snap["pending"] <= lim.pending
    # The strangers' half-open handshakes time out; the ones they hold stay.
    for k in pending:
        g.end(k)
    # Every trusted peer from an address of its own gets in, until the trusted share is used up.
    for i in range(lim.total - lim.strangers):
        assert connect(g, ("t", i), f"192.168.{i}.1", f"trusted{i}", trusted=True) is None, g.snapshot()
    assert set(g.refused) <= set(REASONS)
