"""overlay.net.stream_limits: content-request slots, pending apart from serving, a share kept for
trusted peers (issue 10, finding 3)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay.config import parse_config
from overlay.net.stream_limits import STREAM_REASONS, StreamGate, StreamLimits, Ticket
from trust.errors import ConfigError


def gate(**kw: int) -> StreamGate:
    base = dict(total=4, strangers=3, pending=6, per_peer=2)
    base.update(kw)
    return StreamGate(StreamLimits(**base))


def test_defaults_are_consistent_and_match_the_config():
    lim = StreamLimits()
    assert lim.check() is None
    assert parse_config("").stream_limits() == lim


@pytest.mark.parametrize("kw, word", [({"strangers": 5}, "strangers"), ({"total": 0}, "total"),
                                      ({"pending": 10**6}, "pending"), ({"per_peer": True}, "per_peer")])
def test_inconsistent_limits_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        gate(**kw)


def test_config_names_the_key_at_fault():
    with pytest.raises(ConfigError, match="limits.streams_strangers must not exceed streams_total"):
        parse_config("[limits]\nstreams_total = 8\nstreams_strangers = 9\n")
    with pytest.raises(ConfigError, match="limits.requests_pending must be an integer from 1"):
        parse_config("[limits]\nrequests_pending = 0\n")
    cfg = parse_config("[node]\nstreams_per_peer = 3\n[limits]\nstreams_total = 8\nstreams_strangers = 2\n")
    assert cfg.stream_limits() == StreamLimits(total=8, strangers=2, pending=256, per_peer=3)


def test_slow_senders_hold_pending_slots_only():
    """The finding: 16 identities x 4 streams whose requests never finish arriving. They fill no
    serving slot, so a stranger with a whole request is still answered."""
    g = StreamGate(StreamLimits())
    slow = [g.open(f"sybil{i}") for i in range(16) for _ in range(4)]
    assert all(isinstance(t, Ticket) for t in slow)
    assert g.open("sybil0") == "per_peer"
    honest = g.open("newcomer")
    assert isinstance(honest, Ticket) and g.serve(honest, trusted=False) is None
    assert g.snapshot()["in_use"] == {"pending": 64, "serving": 1, "strangers": 1, "trusted": 0, "peers": 17}


def test_strangers_cannot_take_the_slots_kept_for_trusted_peers():
    g = gate()
    served = []
    for i in range(3):
        t = g.open(f"s{i}")
        assert isinstance(t, Ticket) and g.serve(t, trusted=False) is None
        served.append(t)
    late = g.open("s9")
    assert isinstance(late, Ticket) and g.serve(late, trusted=False) == "strangers"
    friend = g.open("friend")
    assert isinstance(friend, Ticket) and g.serve(friend, trusted=True) is None
    other = g.open("friend2")
    assert isinstance(other, Ticket) and g.serve(other, trusted=True) == "total"
    g.close(served[0])
    assert g.serve(late, trusted=False) is None  # a freed stranger slot can be taken again
    assert g.snapshot()["refused"] == {"per_peer": 0, "pending": 0, "total": 1, "strangers": 1}


def test_pending_limit_and_close_is_idempotent():
    g = gate(pending=2, per_peer=2)
    a, b = g.open("a"), g.open("b")
    assert g.open("c") == "pending"
    assert isinstance(a, Ticket) and isinstance(b, Ticket)
    g.close(a)
    g.close(a)
    assert g.pending == 1 and g.streams_of("a") == 0
    assert isinstance(g.open("c"), Ticket)
    with pytest.raises(ValueError):
        g.serve(a, trusted=True)  # a closed ticket is not served


ops = st.lists(st.tuples(st.sampled_from(["open", "serve", "close"]), st.integers(0, 7), st.booleans(),
                         st.integers(0, 40)), max_size=200)


@settings(max_examples=300, deadline=None)
@given(ops, st.integers(1, 6), st.integers(0, 6), st.integers(1, 8), st.integers(1, 3))
def test_limits_always_hold_and_trusted_peers_always_get_a_slot(steps, total, strangers, pending, per_peer):
    strangers = min(strangers, total) or 1
    total = max(total, strangers)
    lim = StreamLimits(total=total, strangers=strangers, pending=pending, per_peer=per_peer)
    g = StreamGate(lim)
    tickets: list[Ticket] = []
    for op, peer_no, trusted, pick in steps:
        peer = f"p{peer_no}"
        if op == "open":
            t = g.open(peer)
            if isinstance(t, Ticket):
                tickets.append(t)
            else:
                assert t in STREAM_REASONS
                assert t != "pending" or g.pending == pending
        elif tickets:
            t = tickets[pick % len(tickets)]
            if op == "serve" and t.stage == "pending":
                reason = g.serve(t, trusted)
                if reason == "strangers":
                    assert not trusted and g.strangers == strangers
                elif reason == "total":
                    assert g.serving == total
                else:
                    assert reason is None and t.stage == "serving"
            elif op == "close":
                g.close(t)
        live = [t for t in tickets if t.stage != "closed"]
        assert g.pending == sum(t.stage == "pending" for t in live) <= pending
        assert g.serving == sum(t.stage == "serving" for t in live) <= total
        assert g.strangers == sum(t.stage == "serving" and t.stranger for t in live) <= strangers
        for p in {t.peer for t in live}:
            assert g.streams_of(p) == sum(t.peer == p for t in live) <= per_peer
        # whatever strangers hold, a trusted request finds a slot unless trusted ones fill the rest
        if g.serving - g.strangers < total - strangers:
            assert g.serving < total
