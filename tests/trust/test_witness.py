"""Witness reports (trust/witness.py) and how the node ranks and distrusts with them."""
from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overlay.node.operations import trust_table
from overlay.services.reputation import ReputationService
from trust.attestation import evidence_digest, sign_attestation
from trust.identity import Identity
from trust.observations import Kind, Observation
from trust.witness import CHEATED, TRUSTED, UNKNOWN, anchor_verdicts, first_hand_verdict, own_verdicts, witness_reports

ME, HONEST, LIAR, GOOD, BAD, SYBIL = range(6)
N = 6


def reports(atts, glob=None, own=None, excluded=()):
    iss = np.array([a for a, _, _ in atts], dtype=np.int64)
    sub = np.array([b for _, b, _ in atts], dtype=np.int64)
    zero = np.array([z for _, _, z in atts], dtype=bool)
    g = np.full(N, 0.2) if glob is None else np.asarray(glob, dtype=float)
    o = np.zeros(N, dtype=np.int8)
    for i, v in (own or {}).items():
        o[i] = v
    ex = np.zeros(N, dtype=bool)
    ex[[ME, *excluded]] = True
    return witness_reports(N, iss, sub, zero, g, o, ex)


def test_a_credible_fault_report_makes_a_peer_risky():
    r = reports([(HONEST, GOOD, False), (HONEST, BAD, True)], own={GOOD: TRUSTED})
    assert r.counted[HONEST] and r.credibility[HONEST] == pytest.approx(2 / 3)
    assert r.risk(BAD) == 1.0 and r.risk(GOOD) == 0.0
    assert r.risk(SYBIL) == 0.0  # nobody spoke


def test_a_slanderer_loses_its_voice_once_it_contradicts_our_experience():
    # The liar rates zero the peer that served us well, and vouches for the one that cheated us.
    atts = [(LIAR, GOOD, True), (LIAR, BAD, False), (HONEST, GOOD, False), (HONEST, BAD, True)]
    r = reports(atts, own={GOOD: TRUSTED, BAD: CHEATED})
    assert not r.counted[LIAR] and r.credibility[LIAR] == pytest.approx(1 / 4)
    assert r.risk(GOOD) == 0.0 and r.risk(BAD) == 1.0
    # Without our experience the liar is believed as much as anyone: the check is what filters it.
    blind = reports(atts)
    assert blind.counted[LIAR] and blind.risk(GOOD) == pytest.approx(0.5)


def test_distrusted_issuers_and_ourselves_never_count():
    r = reports([(LIAR, GOOD, True), (ME, GOOD, True)], excluded=(LIAR,))
    assert r.neg[GOOD] == 0 and not r.counted[LIAR] and not r.counted[ME]


def test_witnesses_nobody_trusts_add_nothing_unless_nobody_is_trusted():
    glob = [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    r = reports([(HONEST, GOOD, False), (SYBIL, GOOD, True)], glob=glob)
    assert r.neg[GOOD] == 0 and r.pos[GOOD] > 0  # the sybil's report weighs its (zero) trust
    cold = reports([(LIAR, BAD, True), (SYBIL, BAD, False)], glob=[0.0] * N)
    assert cold.risk(BAD) == pytest.approx(0.5)  # no basis at all: every witness alike


def test_served_alone_is_not_a_verdict():
    assert first_hand_verdict({"served": 40}) == UNKNOWN
    assert first_hand_verdict({"served": 4, "chunk_verified": 1}) == TRUSTED
    assert first_hand_verdict({"content_good": 1}) == TRUSTED


def test_shapes_are_checked():
    with pytest.raises(ValueError):
        witness_reports(3, np.array([0]), np.array([1, 2]), np.array([True]), np.zeros(3),
                        np.zeros(3, dtype=np.int8), np.zeros(3, dtype=bool))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, N - 1), st.integers(0, N - 1), st.booleans()), max_size=30),
       st.lists(st.sampled_from([TRUSTED, UNKNOWN, CHEATED]), min_size=N, max_size=N),
       st.lists(st.floats(0, 1), min_size=N, max_size=N))
def test_risk_is_a_share_and_excluded_reports_change_nothing(atts, own, glob):
    base = reports(atts, glob=glob, own=dict(enumerate(own)), excluded=(LIAR,))
    more = reports(atts + [(LIAR, s, z) for s in range(N) for z in (True, False)], glob=glob,
                   own=dict(enumerate(own)), excluded=(LIAR,))
    for i in range(N):
        assert 0.0 <= base.risk(i) <= 1.0
        assert base.neg[i] >= 0 and base.pos[i] >= 0
    # The liar's reports also move agreement counts, but only its own, and it is excluded.
    assert np.allclose(base.neg, more.neg) and np.allclose(base.pos, more.pos)


# -- the node's ReputationService ------------------------------------------------------------------

def _peer(seed: int) -> Identity:
    return Identity.from_seed(bytes([seed]) * 32)


def test_node_ranks_reported_peers_last_and_distrusts_on_credible_reports(tmp_path, identity):
    witness, good, bad, risky_but_trusted = _peer(1), _peer(2), _peer(3), _peer(4)
    rs = ReputationService(tmp_path, identity)
    try:
        now = time.time()
        # First-hand: the witness and `good` served us verified content.
        rs.record(Observation(witness.peer_id, Kind.CHUNK_VERIFIED, count=10, at=now),
                  Observation(good.peer_id, Kind.CHUNK_VERIFIED, count=10, at=now),
                  Observation(risky_but_trusted.peer_id, Kind.CHUNK_VERIFIED, count=1, at=now))
        ts, digest = int(now), evidence_digest([])
        for subject, value in ((good, 1.0), (bad, 0.0), (risky_but_trusted, 0.0)):
            env = sign_attestation(witness, subject.peer_id, value, 1, ts, digest)
            assert rs.rep.receive_attestation(env)[0] == "accepted"
        rs.rep.compute(now)
        rs._refresh_distrust()
        # `bad`: no trust here, the only credible witness reports it faulty: distrusted.
        assert rs.distrusted(bad.peer_id)
        # A peer we trust first-hand is not distrusted on hearsay, but it is tried last.
        assert not rs.distrusted(risky_but_trusted.peer_id)
        assert rs._risk == {bad.peer_id: 1.0, risky_but_trusted.peer_id: 1.0}
        order = rs.rank([risky_but_trusted.peer_id, bad.peer_id, good.peer_id, witness.peer_id])
        assert order[-1] == risky_but_trusted.peer_id and bad.peer_id not in order
        assert set(order[:2]) == {good.peer_id, witness.peer_id}
        rows = {r["peer_id"]: r for r in trust_table(rs)}  # what `vouchnet trust show` prints
        assert rows[risky_but_trusted.peer_id]["fault_reports"] == 1.0 and rows[good.peer_id]["fault_reports"] == 0
    finally:
        rs.close()


def test_node_ignores_a_witness_that_contradicts_its_own_experience(tmp_path, identity):
    liar, good = _peer(5), _peer(6)
    rs = ReputationService(tmp_path, identity)
    try:
        now = time.time()
        rs.record(Observation(good.peer_id, Kind.CHUNK_VERIFIED, count=10, at=now),
                  Observation(liar.peer_id, Kind.SERVED, count=10, at=now))  # the liar only leeched
        env = sign_attestation(liar, good.peer_id, 0.0, 1, int(now), evidence_digest([]))
        assert rs.rep.receive_attestation(env)[0] == "accepted"
        rs.rep.compute(now)
        rs._refresh_distrust()
        assert rs._risk == {} and rs.rank([good.peer_id, liar.peer_id])[0] == good.peer_id
    finally:
        rs.close()


def test_anchor_verdicts_any_zero_is_cheated():
    got = anchor_verdicts([("a", 5), ("b", 0), ("a", 0), ("c", 1), ("c", 7)])
    assert got == {"a": CHEATED, "b": CHEATED, "c": TRUSTED}


def test_borrowed_verdicts_fill_gaps_but_never_override_or_fault():
    index = {"own": 0, "anchor-says-bad": 1, "served-only": 2, "cheat": 3}
    local = {"own": 0.5, "served-only": 0.1, "cheat": 0.0}
    counts = {"own": {"chunk_verified": 3}, "served-only": {"served": 2}, "cheat": {"content_bad": 1}}
    borrowed = {"own": CHEATED, "anchor-says-bad": CHEATED, "served-only": TRUSTED, "cheat": TRUSTED}
    own, faulted = own_verdicts(4, index, local, counts, borrowed)
    assert list(own) == [TRUSTED, CHEATED, TRUSTED, CHEATED]  # first-hand wins; gaps filled
    assert faulted == {"cheat"}  # a borrowed CHEATED is not this node's proven fault
    plain, _ = own_verdicts(4, index, local, counts)
    assert list(plain) == [TRUSTED, UNKNOWN, UNKNOWN, CHEATED]


def test_a_newcomer_weighs_witnesses_with_its_anchors_verdicts(tmp_path, identity):
    """A node with no experience of its own believes a slanderer as much as anyone, unless an
    anchor (someone it trusts out of band) has attested the opposite of what the slanderer says."""
    anchor, liar, honest, collective = _peer(7), _peer(8), _peer(9), _peer(10)
    ts, digest = int(time.time()), evidence_digest([])
    # The anchor also served the liar (a positive attestation), so the liar carries global trust here.
    said = [(liar, honest, 0.0), (liar, collective, 1.0), (anchor, honest, 1.0), (anchor, collective, 0.0),
            (anchor, liar, 1.0)]

    def newcomer(home, anchors):
        rs = ReputationService(home, identity, anchors=anchors)
        for issuer, subject, value in said:
            rs.rep.receive_attestation(sign_attestation(issuer, subject.peer_id, value, 1, ts, digest))
        rs.rep.compute(ts)
        rs._refresh_distrust()
        return rs

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    blind = newcomer(tmp_path / "a", [])
    anchored = newcomer(tmp_path / "b", [anchor.peer_id])
    try:
        assert blind.risk(honest.peer_id) > 0  # the liar's report counts
        assert anchored.rep.trust_of(liar.peer_id)[1] > 0
        assert anchored.risk(honest.peer_id) == 0.0 and anchored.tier(honest.peer_id) == 0
        assert anchored.tier(collective.peer_id) == 1
    finally:
        blind.close()
        anchored.close()
