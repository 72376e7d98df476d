"""trust/intake.py: per-issuer caps on what gossip makes a node keep (issue 10, finding 4);
Reputation and ReputationService applying them; pruning of peer heads."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from trust.attestation import open_attestation, open_tree_head, sign_attestation
from trust.identity import Identity
from trust.intake import STRANGER, TRUSTED, Allowance, Intake, IntakeLimits
from trust.ledger import Ledger
from trust.reputation import Reputation

ME = Identity.from_seed(bytes([1]) * 32)
A, B = (Identity.from_seed(bytes([i]) * 32) for i in (2, 3))
EV = bytes(32)

SMALL = IntakeLimits(stranger=Allowance(subjects=3, rate=1.0, burst=4, heads=2, head_rate=1.0, head_burst=2),
                     trusted=Allowance(subjects=6, rate=2.0, burst=8, heads=4, head_rate=2.0, head_burst=4),
                     strangers_total=8, total=20, buckets=1000)


def subjects(n: int, base: int = 5_000) -> list[str]:
    return [Identity.from_seed(i.to_bytes(32, "big")).peer_id for i in range(base, base + n)]


def test_defaults_give_trusted_issuers_more_room() -> None:
    lim = IntakeLimits()
    assert lim.check() is None
    assert TRUSTED.subjects > STRANGER.subjects and TRUSTED.burst > STRANGER.burst and TRUSTED.heads > STRANGER.heads
    assert lim.strangers_total < lim.total
    with pytest.raises(ValueError):
        Intake(IntakeLimits(strangers_total=0))
    with pytest.raises(ValueError):
        Intake(IntakeLimits(stranger=TRUSTED, trusted=STRANGER))


def test_each_cap_drops_and_counts_by_reason() -> None:
    seen: list[tuple[str, str]] = []
    ik = Intake(SMALL, on_drop=lambda kind, reason: seen.append((kind, reason)))
    # subjects: a stranger holds at most 3 distinct subjects; replacing one is still fine.
    assert [ik.admit_attestation("s1", True, False, 0.0) for _ in range(4)] == [None, None, None, "subjects"]
    assert ik.admit_attestation("s1", False, False, 0.0) is None
    # rate: the bucket (burst 4) is empty now, one token a second.
    assert ik.admit_attestation("s1", False, False, 0.0) == "rate"
    assert ik.admit_attestation("s1", False, False, 1.0) is None
    # strangers: 8 pairs from strangers in all; a trusted issuer still gets in.
    for n in range(2, 5):
        for _ in range(3):
            ik.admit_attestation(f"s{n}", True, False, 0.0)
    assert ik.strangers == 8 and ik.admit_attestation("s9", True, False, 0.0) == "strangers"
    assert ik.admit_attestation("t1", True, True, 0.0) is None
    # total: 20 pairs from everyone.
    for n in range(2, 5):
        for _ in range(6):
            ik.admit_attestation(f"t{n}", True, True, 0.0)
    assert ik.total == 20 and ik.admit_attestation("t9", True, True, 0.0) == "total"
    # heads: a rate per issuer, and what is kept.
    assert [ik.admit_head("s1", False, 0.0) for _ in range(3)] == [None, None, "head_rate"]
    assert ik.heads_kept(False) == 2 and ik.heads_kept(True) == 4
    ik.heads_evicted(2)
    assert ik.dropped == {"subjects": 1, "rate": 1, "strangers": 5, "total": 8, "head_rate": 1, "heads_kept": 2}
    assert sum(ik.dropped.values()) == len(seen) and ("head", "heads_kept") in seen
    snap = ik.snapshot()
    assert snap["held"] == 20 and snap["dropped"]["strangers"] == 5


def test_a_clock_going_backwards_refills_nothing() -> None:
    ik = Intake(SMALL)
    for _ in range(4):
        assert ik.admit_attestation("s", False, False, 100.0) is None
    assert ik.admit_attestation("s", False, False, 10.0) == "rate"
    assert ik.admit_attestation("s", False, False, 100.5) == "rate"
    assert ik.admit_attestation("s", False, False, 101.0) is None


# Few issuers and subjects, mostly attestations, mostly no time passing: the caps get hit.
_event = st.tuples(st.integers(0, 3), st.integers(0, 9), st.integers(0, 4).map(lambda x: x == 0),
                   st.sampled_from([0.0] * 8 + [0.1, 0.5, 2.0]))
_ALLOW = dict(stranger=Allowance(subjects=3, rate=1.0, burst=4, heads=2, head_rate=1.0, head_burst=2),
              trusted=Allowance(subjects=6, rate=2.0, burst=8, heads=4, head_rate=2.0, head_burst=4), buckets=1000)
# Tight totals (they bind first), and loose ones (the per-issuer caps bind).
_LIMITS = [IntakeLimits(strangers_total=6, total=9, **_ALLOW), IntakeLimits(strangers_total=40, total=80, **_ALLOW)]


@settings(max_examples=300, deadline=None)
@given(events=st.lists(_event, max_size=200), trusted=st.sets(st.integers(0, 3)), limits=st.sampled_from(_LIMITS))
def test_caps_always_hold(events: list[tuple[int, int, bool, float]], trusted: set[int], limits: IntakeLimits) -> None:
    ik = Intake(limits)
    held: dict[int, set[int]] = {}
    admitted: dict[int, list[float]] = {}
    now = 0.0
    for issuer, subject, head, dt in events:
        now += dt
        t = issuer in trusted
        if head:
            ik.admit_head(f"p{issuer}", t, now)
            continue
        new = subject not in held.get(issuer, set())
        if ik.admit_attestation(f"p{issuer}", new, t, now) is None:
            held.setdefault(issuer, set()).add(subject)
            admitted.setdefault(issuer, []).append(now)
    att_events = sum(1 for e in events if not e[2])
    assert sum(map(len, admitted.values())) + sum(ik.dropped[r] for r in ("subjects", "strangers", "total", "rate")) \
        == att_events  # every attestation is kept or counted as dropped
    assert sum(map(len, held.values())) == ik.total <= limits.total
    assert sum(len(s) for i, s in held.items() if i not in trusted) == ik.strangers <= limits.strangers_total
    for issuer, s in held.items():
        a = limits.allowance(issuer in trusted)
        assert len(s) <= a.subjects
        times = admitted[issuer]
        for k, t0 in enumerate(times):  # never more than burst + rate x elapsed from any moment on
            assert len(times) - k <= a.burst + a.rate * (times[-1] - t0) + 1e-9


def test_reputation_applies_the_caps_after_the_signature_and_replay_rules(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db", ME) as led:
        ik = Intake(SMALL)
        rep = Reputation(led, ME, anchors=[B.peer_id], intake=ik)
        subs = subjects(5)
        out = [rep.receive_attestation(sign_attestation(A, s, 0.5, 1, 1, EV), now=0.0)[0] for s in subs]
        assert out == ["accepted"] * 3 + ["dropped"] * 2 and ik.dropped == {"subjects": 2}
        # A replay is a replay, not a drop, and spends nothing; a replacement spends a token.
        assert rep.receive_attestation(sign_attestation(A, subs[0], 0.5, 1, 1, EV), now=0.0)[0] == "duplicate"
        assert rep.receive_attestation(sign_attestation(A, subs[0], 0.7, 2, 1, EV), now=0.0)[0] == "replaced"
        assert rep.receive_attestation(sign_attestation(A, subs[1], 0.7, 2, 1, EV), now=0.0)[0] == "dropped"
        assert ik.dropped["rate"] == 1
        # An anchor is trusted: more room.
        out = [rep.receive_attestation(sign_attestation(B, s, 0.5, 1, 1, EV), now=0.0)[0] for s in subs]
        assert out == ["accepted"] * 5
        size = led.size
    with Ledger(tmp_path / "ledger.db", ME) as led:  # restart: what is held counts
        ik = Intake(SMALL)
        rep = Reputation(led, ME, anchors=[B.peer_id], intake=ik)
        assert ik.held == {A.peer_id: 3, B.peer_id: 5} and ik.strangers == 3 and led.size == size
        assert rep.receive_attestation(sign_attestation(A, subjects(1, 9_000)[0], 0.5, 1, 1, EV), now=0.0)[0] \
            == "dropped"


def test_peer_heads_kept_per_peer_are_bounded(tmp_path: Path) -> None:
    from overlay.services.reputation import ReputationService

    with Ledger(tmp_path / "peer.db", A) as theirs:
        envs = []
        for i in range(10):
            theirs.append("observation", {"n": i})
            envs.append(theirs.sign_head())
    rs = ReputationService(tmp_path, ME, intake=SMALL)
    try:
        for env in envs:
            rs._on_head(open_tree_head(env), env, A.peer_id)
        kept = rs.ledger.peer_heads(A.peer_id)
        assert [h.seq for h in kept] == [1, 2]
        assert rs.intake.dropped["head_rate"] == 8 and rs.stats["heads_in"] == 2
        # Later ones (the bucket refills) replace the oldest: the latest by seq stay.
        rs.intake._heads.clear()
        for env in envs[2:]:
            rs._on_head(open_tree_head(env), env, A.peer_id)
        assert [h.seq for h in rs.ledger.peer_heads(A.peer_id)] == [3, 4]
        assert rs.intake.dropped["heads_kept"] == 2
        assert rs.ledger.audit(workers=1).ok
    finally:
        rs.close()


def test_prune_peer_heads_keeps_the_latest(tmp_path: Path) -> None:
    with Ledger(tmp_path / "peer.db", A) as theirs:
        envs = []
        for i in range(6):
            theirs.append("observation", {"n": i})
            envs.append(theirs.sign_head())
    with Ledger(tmp_path / "ledger.db", ME) as led:
        for env in reversed(envs):
            assert led.add_peer_head(env) is None
        assert led.prune_peer_heads(A.peer_id, 3) == 3
        assert [h.seq for h in led.peer_heads(A.peer_id)] == [4, 5, 6]
        assert led.prune_peer_heads(A.peer_id, 3) == 0 and led.prune_peer_heads(B.peer_id, 1) == 0
        with pytest.raises(ValueError):
            led.prune_peer_heads(A.peer_id, 0)
        assert led.audit(workers=1).ok


def test_config_sets_the_intake_limits() -> None:
    from overlay.config import DEFAULT_CONFIG, parse_config
    from trust.errors import ConfigError

    assert parse_config(DEFAULT_CONFIG).intake_limits() == IntakeLimits()  # documented defaults = code defaults
    cfg = parse_config("[limits]\nattestation_subjects_stranger = 10\nattestation_rate_trusted = 5\n"
                       "attestations_strangers = 50\nattestations_total = 500\npeer_heads_trusted = 8\n")
    lim = cfg.intake_limits()
    assert (lim.stranger.subjects, lim.trusted.rate, lim.strangers_total, lim.total, lim.trusted.heads) == \
        (10, 5.0, 50, 500, 8)
    for bad in ("attestation_rate_stranger = 0", "attestation_rate_stranger = nan", "attestations_strangers = 200000",
                "peer_heads_stranger = 100", "attestation_subjects_trusted = 0", "attestations_total = 20000000"):
        with pytest.raises(ConfigError, match="attestation and peer head limits"):
            parse_config(f"[limits]\n{bad}\n")


def test_status_shows_the_intake_and_drops_by_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import overlay.cli.node as cli_node
    from overlay.cli import main

    ik = Intake(SMALL)
    for _ in range(5):
        ik.admit_attestation("s1", True, False, 0.0)
    info = {"peer_id": ME.peer_id, "addrs": [], "connected_peers": 0, "dht_routing_table": 0, "contents": 0,
            "complete": 0, "uptime_s": 1.0, "trust_snapshot_age_s": None, "gossip_intake": ik.snapshot()}
    monkeypatch.setattr(cli_node, "_call", lambda obj, req, **kw: info)
    res = CliRunner().invoke(main, ["--home", str(tmp_path), "status"])
    assert res.exit_code == 0, res.output
    assert "gossip:     3/20 attestations held from 1 issuers (3/8 from strangers)" in res.output
    assert "dropped:    subjects 2" in res.output


def test_drops_reach_prometheus(tmp_path: Path) -> None:
    from overlay.metrics import Metrics
    from overlay.services.reputation import ReputationService

    m = Metrics()
    rs = ReputationService(tmp_path, ME, metrics=m, intake=SMALL)
    try:
        for s in subjects(5):
            env = sign_attestation(A, s, 0.5, 1, 1, EV)
            rs._on_attestation(open_attestation(env), env, A.peer_id)
        assert m.registry.get_sample_value("vouchnet_gossip_dropped_total",
                                           {"kind": "attestation", "reason": "subjects"}) == 2
        assert rs.intake.dropped == {"subjects": 2}
    finally:
        rs.close()
