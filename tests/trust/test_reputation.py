"""Reputation (trust/reputation.py): evidence in the ledger -> local trust -> signed attestations;
received attestations (replay, replacement, equivocation); personalised global trust; ratings;
the `ledger_trust_check` audit hook against a tampered snapshot; replay of the ledger at start-up."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from trust import encoding
from trust.attestation import (TRUST_SCALE, Attestation, open_attestation, open_equivocation,
                               sign_attestation)
from trust.errors import DecodeError, SignatureError
from trust.identity import Identity
from trust.ledger import Ledger, decode_body, encode_body, leaf_data
from trust.merkle import leaf_hash
from trust.observations import Kind, Observation
from trust.reputation import NO_FAULT_FLOOR, Reputation, ledger_trust_check
from trust.signing import seal

ME = Identity.from_seed(bytes([1]) * 32)
A, B, C, D, X, Y = (Identity.from_seed(bytes([i]) * 32) for i in range(2, 8))
EV = bytes(32)


def ob(peer: Identity, kind: Kind, at: float, count: int = 1) -> Observation:
    return Observation(peer.peer_id, kind, cid="bafy-test", count=count, at=at)


def att(issuer: Identity, subject: Identity, value: float, seq: int, ts: int = 1_700_000_000) -> bytes:
    return sign_attestation(issuer, subject.peer_id, value, seq, ts, EV)


@pytest.fixture
def rep(tmp_path: Path):
    led = Ledger(tmp_path / "ledger.db", ME)
    yield Reputation(led, ME)
    led.close()


def issued(envs: list[bytes]) -> dict[str, Attestation]:
    out = {}
    for e in envs:
        a = open_attestation(e)
        assert a.issuer == ME.peer_id
        assert a.subject not in out
        out[a.subject] = a
    return out


# -- evidence -> local trust -> attestations ------------------------------------------------------

def test_timeouts_alone_never_start_with_a_zero_attestation(rep: Reputation) -> None:
    # A first zero is a fault report to others (trust/witness.py): an overloaded honest peer
    # that only timed out must not get one; a proven fault must.
    now = time.time()
    rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 30), ob(A, Kind.TIMEOUT, now - 60, 3),
               ob(C, Kind.CONTENT_BAD, now - 60))
    got = issued(rep.issue_attestations(now))
    assert A.peer_id not in got and got[C.peer_id].value == 0 and got[B.peer_id].value > 0


def test_evidence_to_attestations(rep: Reputation) -> None:
    now = time.time()
    rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 30), ob(C, Kind.CHUNK_VERIFIED, now - 60, 10),
               ob(A, Kind.CHUNK_INVALID, now - 60))
    got = issued(rep.issue_attestations(now))
    # Evidence-backed distrust is attested the very first time, with value 0.
    assert set(got) == {A.peer_id, B.peer_id, C.peer_id}
    assert got[A.peer_id].value == 0
    assert got[B.peer_id].value > 0 and got[C.peer_id].value > 0
    assert got[B.peer_id].value > got[C.peer_id].value
    assert abs(got[B.peer_id].value + got[C.peer_id].value - TRUST_SCALE) <= 2
    assert got[B.peer_id].value == pytest.approx(0.75 * TRUST_SCALE, abs=2)
    assert all(a.seq == 1 for a in got.values())
    # Each issued attestation is in the ledger and counts as ours.
    kinds = [e.kind for e in rep.ledger.entries()]
    assert kinds.count("attestation-issued") == 3
    assert {p: a.seq for p, (a, _) in rep.state.issued.items()} == {p: 1 for p in got}

    # Nothing changed: nothing to issue, nothing written.
    size = rep.ledger.size
    assert rep.issue_attestations(now) == []
    assert rep.ledger.size == size

    # New evidence about C moves B and C; A stays 0 and is not re-issued.
    rep.record(ob(C, Kind.CHUNK_VERIFIED, now - 60, 20))
    got2 = issued(rep.issue_attestations(now))
    assert set(got2) == {B.peer_id, C.peer_id}
    for p in got2:
        assert got2[p].seq == got[p].seq + 1
    assert got2[B.peer_id].value == pytest.approx(0.5 * TRUST_SCALE, abs=2)
    assert got2[C.peer_id].value == pytest.approx(0.5 * TRUST_SCALE, abs=2)
    assert rep.state.issued[A.peer_id][0].seq == 1
    assert rep.issue_attestations(now) == []


def test_trust_falling_to_zero_is_attested(rep: Reputation) -> None:
    now = time.time()
    rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 10), ob(C, Kind.CHUNK_VERIFIED, now - 60, 10))
    first = issued(rep.issue_attestations(now))
    assert first[B.peer_id].value > 0
    rep.record(ob(B, Kind.MANIFEST_INVALID, now - 10))
    got = issued(rep.issue_attestations(now))
    assert got[B.peer_id].value == 0 and got[B.peer_id].seq == 2
    assert got[C.peer_id].value == TRUST_SCALE and got[C.peer_id].seq == 2


def test_small_changes_are_not_reissued_but_a_drop_to_the_floor_is(rep: Reputation) -> None:
    now = time.time()
    rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 1), ob(C, Kind.CHUNK_VERIFIED, now - 60, 1000))
    first = issued(rep.issue_attestations(now))
    assert 0 < first[B.peer_id].value < 1000   # below the default min_change
    rep.record(ob(C, Kind.SERVED, now - 60, 1))  # C is capped: B moves by < 1 ppm
    assert rep.issue_attestations(now) == []
    rep.record(ob(B, Kind.TIMEOUT, now - 60, 1))  # B: 1 - 2 < 0, a change of < min_change to zero
    got = issued(rep.issue_attestations(now))
    assert set(got) == {B.peer_id}
    # No proven fault: the floor, not zero (zero is a fault report).
    assert got[B.peer_id].value == NO_FAULT_FLOOR and got[B.peer_id].seq == 2


def test_self_evidence_is_never_attested(rep: Reputation) -> None:
    now = time.time()
    rep.record(Observation(ME.peer_id, Kind.CHUNK_VERIFIED, count=5, at=now - 5),
               Observation(ME.peer_id, Kind.TIMEOUT, at=now - 5), ob(B, Kind.CHUNK_VERIFIED, now - 5))
    got = issued(rep.issue_attestations(now))
    assert set(got) == {B.peer_id}
    assert ME.peer_id not in rep.compute(now).local


# -- received attestations ------------------------------------------------------------------------

def test_received_attestation_lifecycle_and_equivocation(rep: Reputation) -> None:
    now = time.time()
    rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 10), ob(C, Kind.CHUNK_VERIFIED, now - 60, 10))
    led = rep.ledger

    s0 = led.size
    assert rep.receive_attestation(att(B, D, 0.4, 5)) == ("accepted", None)
    assert led.size == s0 + 1
    assert rep.state.received[(B.peer_id, D.peer_id)].att.value == 400_000
    assert rep.receive_attestation(att(C, B, 1.0, 1)) == ("accepted", None)  # B is vouched for
    s0 += 1
    assert rep.receive_attestation(att(B, D, 0.6, 6)) == ("replaced", None)
    assert led.size == s0 + 2
    assert rep.state.received[(B.peer_id, D.peer_id)].att.value == 600_000
    assert rep.receive_attestation(att(B, D, 0.9, 5)) == ("old", None)
    assert rep.receive_attestation(att(B, D, 0.6, 6)) == ("duplicate", None)
    assert led.size == s0 + 2
    assert rep.state.received[(B.peer_id, D.peer_id)].att.seq == 6
    assert rep.state.received[(B.peer_id, D.peer_id)].att.value == 600_000
    # Our own attestation gossiped back is not stored as received.
    assert rep.receive_attestation(att(ME, B, 1.0, 1)) == ("self", None)
    assert led.size == s0 + 2

    before = rep.compute(now)
    assert before.local[B.peer_id] > 0 and before.global_[B.peer_id] > 0
    assert before.global_[D.peer_id] > 0   # reachable only through B
    assert rep.distrusted() == set()

    size = led.size
    outcome, eq = rep.receive_attestation(att(B, D, 0.1, 6))  # same seq, different value
    assert outcome == "equivocation"
    assert eq is not None and eq.issuer == B.peer_id and eq.kind == Attestation.TAG
    proof = eq.to_bytes()
    checked = open_equivocation(proof)
    assert checked.issuer == B.peer_id
    assert {open_attestation(checked.first).value, open_attestation(checked.second).value} == {600_000, 100_000}
    assert led.size == size + 1
    last = led.entry(size)
    assert last.kind == "equivocation"
    assert last.body["proof"] == proof and last.body["issuer"] == B.peer_id
    assert rep.distrusted() == {B.peer_id}
    # The conflicting attestation did not replace the stored one.
    assert rep.state.received[(B.peer_id, D.peer_id)].att.value == 600_000

    after = rep.compute(now)
    assert rep.trust_of(B.peer_id) == (0.0, 0.0)
    assert B.peer_id not in after.local
    assert after.global_.get(B.peer_id, 0) == 0
    assert after.global_.get(D.peer_id, 0) == 0   # B's row no longer counts
    assert after.local[C.peer_id] == TRUST_SCALE
    # Distrust of an equivocator is permanent: outlasting the sticky period and serving well
    # (its equivocation penalty decays) brings back neither local nor global trust.
    later = now + rep.params.sticky + 86400
    rep.record(ob(B, Kind.CHUNK_VERIFIED, later, 5000))
    assert rep.state.local(later, rep.params) == {C.peer_id: 1.0}
    much_later = rep.compute(later)
    assert B.peer_id not in much_later.local and much_later.global_.get(B.peer_id, 0) == 0

    # A further conflict from a known equivocator is reported but not written again.
    size = led.size
    outcome, eq2 = rep.receive_attestation(att(B, D, 0.2, 6))
    assert outcome == "equivocation" and eq2 is not None
    assert led.size == size
    assert rep.receive_equivocation(eq) is False


def test_forged_and_self_attestations_are_rejected(rep: Reputation) -> None:
    size = rep.ledger.size
    # Claims X as issuer but is signed with Y's key.
    forged = seal(Y.signing_key, Attestation.TAG, Attestation.VERSION,
                  encoding.encode(Attestation(X.peer_id, C.peer_id, TRUST_SCALE, 1, 1_700_000_000, EV).to_dict()))
    with pytest.raises(SignatureError):
        rep.receive_attestation(forged.to_bytes())
    # A validly signed envelope whose bytes were altered.
    good = bytearray(att(X, C, 0.5, 1))
    good[-1] ^= 1
    with pytest.raises(SignatureError):
        rep.receive_attestation(bytes(good))
    # A peer attesting to itself.
    selfie = seal(X.signing_key, Attestation.TAG, Attestation.VERSION,
                  encoding.encode({"iss": X.peer_id, "sub": X.peer_id, "val": TRUST_SCALE, "seq": 1,
                                   "ts": 1_700_000_000, "ev": EV}))
    with pytest.raises(DecodeError):
        rep.receive_attestation(selfie.to_bytes())
    assert rep.ledger.size == size
    assert rep.state.received == {}


# -- personalised global trust --------------------------------------------------------------------

def test_personalised_global_trust_chain_and_clique(tmp_path: Path) -> None:
    now = time.time()
    with Ledger(tmp_path / "l.db", ME) as led:
        rep = Reputation(led, ME, anchors=[A.peer_id])
        # ME trusts B first-hand; B vouches for C; anchor A vouches for D.
        rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 10))
        assert rep.receive_attestation(att(B, C, 1.0, 1))[0] == "accepted"
        assert rep.receive_attestation(att(A, D, 1.0, 1))[0] == "accepted"
        # A clique vouching only for itself, plus for a sybil nobody honest knows.
        for issuer, subject in ((X, Y), (Y, X), (X, A), (Y, B)):
            assert rep.receive_attestation(att(issuer, subject, 1.0, 1))[0] == "accepted"
        snap = rep.compute(now)
    g = snap.global_
    assert snap.local == {B.peer_id: TRUST_SCALE}
    assert snap.anchors == [A.peer_id]
    assert g[C.peer_id] > 10_000 and g[B.peer_id] > 10_000 and g[D.peer_id] > 10_000
    assert g[B.peer_id] > g[C.peer_id]
    assert g.get(X.peer_id, 0) <= 1 and g.get(Y.peer_id, 0) <= 1
    assert abs(sum(g.values()) - TRUST_SCALE) <= len(g)
    assert rep.trust_of(C.peer_id)[1] == g[C.peer_id] / TRUST_SCALE
    assert rep.trust_of(X.peer_id) == (0.0, g.get(X.peer_id, 0) / TRUST_SCALE)
    rows = {r["peer_id"]: r for r in rep.table()}
    assert ME.peer_id not in rows
    assert rows[B.peer_id]["rank"] < rows[C.peer_id]["rank"] < rows[X.peer_id]["rank"]


def test_without_anchor_a_chain_to_an_unknown_peer_gives_nothing(tmp_path: Path) -> None:
    now = time.time()
    with Ledger(tmp_path / "l.db", ME) as led:
        rep = Reputation(led, ME)  # no anchors, no local evidence: only ME is pre-trusted
        rep.receive_attestation(att(A, B, 1.0, 1))
        rep.receive_attestation(att(B, C, 1.0, 1))
        g = rep.compute(now).global_
    assert g.get(A.peer_id, 0) == 0 and g.get(B.peer_id, 0) == 0 and g.get(C.peer_id, 0) == 0


# -- ratings --------------------------------------------------------------------------------------

def test_rate_bad_and_good(rep: Reputation) -> None:
    now = time.time()
    rep.record(ob(A, Kind.CHUNK_VERIFIED, now - 60, 10), ob(B, Kind.CHUNK_VERIFIED, now - 60, 10),
               ob(C, Kind.CHUNK_VERIFIED, now - 60, 10), ob(D, Kind.CHUNK_VERIFIED, now - 60, 10))
    first = rep.compute(now).local
    assert all(first[p.peer_id] == 250_000 for p in (A, B, C, D))

    # Bad: publisher A, providers B (and A again, and ourselves).
    rep.rate("bafy-x", "bad", A.peer_id, [B.peer_id, A.peer_id, ME.peer_id], "junk")
    body = rep.ledger.entry(rep.ledger.size - 1).body
    assert body["providers"] == sorted([B.peer_id, ME.peer_id])
    loc = rep.compute(now).local
    assert A.peer_id not in loc and B.peer_id not in loc
    assert loc[C.peer_id] == 500_000 and loc[D.peer_id] == 500_000
    assert rep.state.counts[A.peer_id]["content_bad"] == 1
    assert ME.peer_id not in rep.state.counts and ME.peer_id not in rep.state.evidence_idx
    # The fault is sticky: lots of good service afterwards does not restore trust.
    rep.record(ob(A, Kind.CHUNK_VERIFIED, time.time(), 500))
    assert A.peer_id not in rep.compute().local

    # Good: publisher C (we ourselves provided too): C's share rises, D's falls.
    rep.rate("bafy-y", "good", C.peer_id, [ME.peer_id])
    loc2 = rep.compute(now).local
    assert loc2[C.peer_id] > 500_000 > loc2[D.peer_id] > 0
    assert rep.state.counts[C.peer_id]["content_good"] == 1
    assert ME.peer_id not in rep.state.counts
    got = issued(rep.issue_attestations(now))
    assert ME.peer_id not in got and got[A.peer_id].value == 0

    with pytest.raises(ValueError):
        rep.rate("bafy-z", "meh", C.peer_id, [])


def test_rate_own_content_names_only_providers(rep: Reputation) -> None:
    rep.rate("bafy-own", "bad", ME.peer_id, [B.peer_id])
    assert set(rep.state.counts) == {B.peer_id}
    assert rep.state.counts[B.peer_id] == {"content_bad": 1}


# -- audit and replay -----------------------------------------------------------------------------

def _write_history(rep: Reputation) -> list[int]:
    """Several computes with snapshots, attestations both ways, ratings and an equivocation;
    returns the ledger indices of the trust snapshots."""
    led = rep.ledger
    t0 = time.time() - 3600
    snaps = []

    def compute(at: float) -> None:
        rep.compute(at)
        snaps.append(led.size - 1)
        assert led.entry(snaps[-1]).kind == "trust-snapshot"

    rep.record(ob(B, Kind.CHUNK_VERIFIED, t0, 20), ob(C, Kind.CHUNK_VERIFIED, t0, 5), ob(A, Kind.TIMEOUT, t0))
    compute(t0 + 10)
    rep.issue_attestations(t0 + 10)
    led.sign_head()
    rep.receive_attestation(att(B, C, 0.7, 1))
    rep.receive_attestation(att(B, D, 0.3, 1))
    rep.receive_attestation(att(C, D, 1.0, 1))
    rep.receive_attestation(att(X, Y, 1.0, 1))
    rep.receive_attestation(att(B, D, 0.5, 2))
    rep.record(ob(D, Kind.CHUNK_VERIFIED, t0 + 100, 7), ob(A, Kind.CHUNK_INVALID, t0 + 100))
    compute(t0 + 200)
    rep.issue_attestations(t0 + 200)
    rep.rate("bafy-good", "good", C.peer_id, [D.peer_id])
    rep.rate("bafy-bad", "bad", X.peer_id, [A.peer_id, ME.peer_id])
    compute(time.time())
    led.sign_head()
    assert rep.receive_attestation(att(C, D, 0.2, 1))[0] == "equivocation"
    rep.issue_attestations()
    compute(time.time() + 1)
    rep.issue_attestations(time.time() + 1)
    led.sign_head()
    return snaps


def test_audit_accepts_reputation_ledger_and_detects_tampered_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = Ledger(path, ME)
    rep = Reputation(led, ME, anchors=[B.peer_id])
    snaps = _write_history(rep)
    assert len(snaps) == 4
    kinds = {e.kind for e in led.entries()}
    assert {"observation", "rating", "attestation-issued", "attestation-received", "equivocation",
            "trust-snapshot"} <= kinds
    assert rep.distrusted() == {C.peer_id}
    report = led.audit(workers=1, trust_check=ledger_trust_check)
    assert report.ok, [str(p) for p in report.problems]
    assert ledger_trust_check(led) == []
    led.close()

    # Rewrite the second snapshot's scores; keep body canonical and leaf hash consistent.
    target = snaps[1]
    db = sqlite3.connect(path)
    ts, kind, raw = db.execute("SELECT ts, kind, body FROM entries WHERE idx = ?", (target,)).fetchone()
    body = decode_body(raw)
    assert kind == "trust-snapshot" and body["local"][B.peer_id] > 10_000
    body["local"][B.peer_id] += 5_000
    body["local"][C.peer_id] -= 5_000
    new = encode_body(body)
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?",
               (new, leaf_hash(leaf_data(target, ts, kind, new)), target))
    db.commit()
    db.close()

    with Ledger(path, ME) as led2:
        plain = led2.audit(workers=1)
        # Leaves are consistent, so the entry scan finds nothing; only signed heads notice.
        assert not any(p.where == f"entry {target}" for p in plain.problems)
        assert plain.problems and all(p.where.startswith("head seq") for p in plain.problems)
        report = led2.audit(workers=1, trust_check=ledger_trust_check)
        assert not report.ok
        named = [p for p in report.problems if p.where == f"entry {target}"]
        assert named and all("trust" in p.what for p in named)
        assert any("local trust" in p.what for p in named)
        # Every other snapshot still recomputes.
        hook = ledger_trust_check(led2)
        assert {p.where for p in hook} == {f"entry {target}"}


def test_audit_detects_tampered_global_scores_without_heads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path, ME) as led:
        rep = Reputation(led, ME, anchors=[B.peer_id])
        now = time.time()
        rep.record(ob(B, Kind.CHUNK_VERIFIED, now - 60, 10))
        rep.receive_attestation(att(B, C, 1.0, 1))
        rep.compute(now)
        target = led.size - 1
        assert led.audit(workers=1, trust_check=ledger_trust_check).ok
    db = sqlite3.connect(path)
    ts, kind, raw = db.execute("SELECT ts, kind, body FROM entries WHERE idx = ?", (target,)).fetchone()
    body = decode_body(raw)
    body["global"][C.peer_id] += 100   # well past the 2 ppm tolerance, sum no longer 1
    new = encode_body(body)
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?",
               (new, leaf_hash(leaf_data(target, ts, kind, new)), target))
    db.commit()
    db.close()
    with Ledger(path, ME) as led:
        assert led.audit(workers=1).ok   # no heads: nothing but the trust check can tell
        report = led.audit(workers=1, trust_check=ledger_trust_check)
        assert not report.ok
        assert [p.where for p in report.problems] == [f"entry {target}"]
        assert "global trust" in report.problems[0].what


def test_reopened_reputation_reproduces_state(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    led = Ledger(path, ME)
    rep = Reputation(led, ME, anchors=[B.peer_id])
    _write_history(rep)
    peers = [p.peer_id for p in (A, B, C, D, X, Y, ME)]
    table, trust = rep.table(), {p: rep.trust_of(p) for p in peers}
    explain = {p: rep.explain(p) for p in peers}
    state = rep.state
    last = rep.last_snapshot
    led.close()

    with Ledger(path, ME) as led2:
        again = Reputation(led2, ME, anchors=[B.peer_id])
        assert again.last_snapshot == last
        assert again.table() == table
        assert {p: again.trust_of(p) for p in peers} == trust
        assert {p: again.explain(p) for p in peers} == explain
        assert again.distrusted() == {C.peer_id}
        assert again.state.counts == state.counts
        assert again.state.evidence == state.evidence
        assert {k: v.att for k, v in again.state.received.items()} == {k: v.att for k, v in state.received.items()}
        assert {k: v[0] for k, v in again.state.issued.items()} == {k: v[0] for k, v in state.issued.items()}
        assert any(r["global"] > 0 for r in table) and any(r["equivocated"] for r in table)
        # Replayed state behaves like the original: replays and re-issues are recognised.
        size = led2.size
        assert again.receive_attestation(att(B, D, 0.5, 2)) == ("duplicate", None)
        assert again.receive_attestation(att(B, D, 0.3, 1)) == ("old", None)
        assert led2.size == size
        # Recomputing at the last snapshot's time reproduces it exactly.
        snap = again.compute(last.at_ms / 1000, snapshot=False)
        assert snap.local == last.local
        assert all(abs(snap.global_.get(p, 0) - last.global_.get(p, 0)) <= 2
                   for p in set(snap.global_) | set(last.global_))


def test_audit_binds_stored_copies_to_signed_records(tmp_path: Path) -> None:
    """Replay reads `att` and `issuer` beside the envelopes: copies that disagree with what was
    signed (here written consistently into the snapshot after them) must fail the audit."""
    with Ledger(tmp_path / "l.db", ME) as led:
        env = att(B, D, 0.1, 1)
        lie = Attestation(B.peer_id, C.peer_id, TRUST_SCALE, 1, 1_700_000_000, EV)  # not what B signed
        led.append("attestation-received", {"envelope": env, "att": lie.to_dict()})
        outcome, eq = Reputation(led, ME).receive_attestation(att(X, Y, 0.2, 1))
        assert outcome == "accepted"
        conflict = Reputation(led, ME)
        outcome, eq = conflict.receive_attestation(att(X, Y, 0.3, 1))
        assert outcome == "equivocation" and eq is not None
        # Blame A for X's equivocation.
        led.append("equivocation", {"issuer": A.peer_id, "kind": eq.kind, "proof": eq.to_bytes(), "at": 1})
        rep = Reputation(led, ME, anchors=[B.peer_id])
        assert (B.peer_id, C.peer_id) in rep.state.received and A.peer_id in rep.distrusted()
        rep.compute()
        led.sign_head()
        assert led.audit(workers=1).ok   # every signature is fine
        report = led.audit(workers=1, trust_check=ledger_trust_check)
        assert not report.ok
        where = {p.where: p.what for p in report.problems}
        assert "differs from the signed" in where["entry 0"]
        assert "issuer" in where[f"entry {led.size - 2}"]


def test_incremental_global_trust_matches_a_cold_computation(tmp_path: Path) -> None:
    me = Identity.from_seed(b"\x07" * 32)
    peers = [Identity.from_seed(bytes([i]) * 32) for i in range(20, 30)]
    r = Reputation(Ledger(tmp_path / "inc.db", me), me)
    now = 1_700_000_500.0
    r.record(*(ob(p, Kind.CHUNK_VERIFIED, now - 10, count=i + 1) for i, p in enumerate(peers[:3])))
    for step in range(6):  # attestations arrive between computations, some replacing earlier ones
        a, b = peers[step % 3], peers[3 + step]
        r.receive_attestation(att(a, b, 0.2 + 0.1 * step, seq=1 + step // 3))
        snap = r.compute(now + step)
        cold = r.state.global_(r.state.local(snap.at_ms / 1000, r.params), r.damping, r.anchors)
        for p in set(cold) | set(snap.global_):
            assert abs(round(cold.get(p, 0.0) * TRUST_SCALE) - snap.global_.get(p, 0)) <= 2, (step, p)
    assert r.engine.matrix_builds >= 1


def test_trust_lost_without_a_proven_fault_is_never_attested_as_zero(rep: Reputation) -> None:
    """Zero is a fault report (trust/witness.py). A provider this node trusted that then only timed
    out is attested at the floor, not zero: honest nodes that disagree about a staller must not
    read each other as slanderers. A proven fault still drops it to zero."""
    now = time.time()
    rep.record(ob(A, Kind.CHUNK_VERIFIED, now - 60, 2), ob(B, Kind.CHUNK_VERIFIED, now - 60, 30))
    first = issued(rep.issue_attestations(now))
    assert first[A.peer_id].value > 0
    rep.record(ob(A, Kind.TIMEOUT, now - 30, 20))
    assert rep.state.local(now, rep.params).get(A.peer_id, 0) == 0  # trust gone, no fault
    second = issued(rep.issue_attestations(now))
    assert second[A.peer_id].value == NO_FAULT_FLOOR and second[A.peer_id].seq == 2
    assert rep.issue_attestations(now) == []  # said once
    rep.record(ob(A, Kind.CHUNK_INVALID, now - 10))
    third = issued(rep.issue_attestations(now))
    assert third[A.peer_id].value == 0 and third[A.peer_id].seq == 3
