"""Local trust formula: failures outweigh successes, penalties stick, positives cap, time decays."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from trust.local_trust import (NEGATIVE_WEIGHTS, POSITIVE_WEIGHTS, Evidence, LocalTrustParams, normalise,
                               score_peers)

NOW = 1_800_000_000.0
P = LocalTrustParams()


def local(evidence, now=NOW, params=P, exclude=()):
    return normalise(score_peers(evidence, now, params), now, params, exclude)


def test_honest_peers_share_trust_by_service():
    t = local([Evidence("a", "chunk_verified", 30, NOW), Evidence("b", "chunk_verified", 10, NOW)])
    assert t == pytest.approx({"a": 0.75, "b": 0.25})


def test_one_bad_chunk_outweighs_many_good_and_sticks():
    ev = [Evidence("a", "chunk_verified", 40, NOW - 10), Evidence("a", "chunk_invalid", 1, NOW - 5),
          Evidence("a", "chunk_verified", 500, NOW), Evidence("b", "chunk_verified", 1, NOW)]
    t = local(ev)
    assert "a" not in t and t == {"b": 1.0}
    # after the sticky period the record can be rebuilt, but the failure still counts
    later = NOW + P.sticky + 1
    s = score_peers(ev, later, P)["a"]
    assert 0 < s.s(later, P) < s.sat


def test_timeouts_are_not_sticky():
    ev = [Evidence("a", "chunk_verified", 100, NOW), Evidence("a", "timeout", 1, NOW)]
    assert local(ev)["a"] == 1.0
    s = score_peers(ev, NOW, P)["a"]
    assert s.s(NOW, P) == pytest.approx(100 - NEGATIVE_WEIGHTS["timeout"])


def test_positive_cap_stops_ballot_stuffing():
    ev = [Evidence("stuffer", "chunk_verified", 10**6, NOW), Evidence("honest", "chunk_verified", 1000, NOW)]
    t = local(ev)
    assert t["stuffer"] == pytest.approx(t["honest"])


def test_negative_evidence_decays_slower_than_positive():
    age = 14 * 86400
    ev_pos = score_peers([Evidence("a", "chunk_verified", 100, NOW - age)], NOW, P)["a"].sat
    ev_neg = score_peers([Evidence("a", "timeout", 50, NOW - age)], NOW, P)["a"].unsat
    assert ev_pos / (100 * POSITIVE_WEIGHTS["chunk_verified"]) < ev_neg / (50 * NEGATIVE_WEIGHTS["timeout"])


def test_equivocators_and_self_excluded():
    ev = [Evidence("a", "chunk_verified", 5, NOW), Evidence("me", "chunk_verified", 5, NOW)]
    assert local(ev, exclude={"me"}) == {"a": 1.0}
    assert local([]) == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(sorted(POSITIVE_WEIGHTS | NEGATIVE_WEIGHTS)),
                          st.integers(1, 1000), st.floats(0, 60 * 86400)), max_size=40))
def test_normalised_is_a_distribution(events):
    ev = [Evidence(p, k, n, NOW - age) for p, k, n, age in events]
    t = local(ev)
    assert all(v > 0 for v in t.values())
    assert not t or math.isclose(sum(t.values()), 1.0, rel_tol=1e-12)
    for peer in t:  # anyone with a recent proven fault has zero trust
        faults = [e for e in ev if e.peer == peer and e.kind in ("chunk_invalid", "manifest_invalid",
                                                                 "content_bad", "equivocation")]
        assert all(NOW - e.at >= P.sticky for e in faults)
