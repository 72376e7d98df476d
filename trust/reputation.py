"""Reputation: evidence and attestations in the ledger, local and global trust computed from them.

Everything goes through the ledger first (observations, ratings, attestations issued and
received, equivocation proofs, trust snapshots), so `ledger audit` can recompute every
stored score from the ledger alone (`ledger_trust_check`).
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from trust import encoding
from trust.attestation import (TRUST_SCALE, Attestation, Equivocation, check_equivocation, open_attestation,
                               open_equivocation, sign_attestation, evidence_digest)
from trust.errors import DecodeError, SignatureError
from trust.intake import Intake
from trust.local_trust import PROVEN_FAULTS, Evidence, LocalTrustParams, normalise, score_peers
from trust.observations import Kind, Observation, PeerSummary
from trust.peerid import is_peer_id
from trust.snapshot import check_global, check_local, snapshot_body
from trust.trust_engine import TrustEngine, TrustParams

log = logging.getLogger("vouchnet.reputation")

DAMPING_SCALE = 1_000_000
NO_FAULT_FLOOR = 1  # millionths: what is attested of a peer whose trust fell to zero without a proven fault


def _ms(t: float) -> int:
    return int(round(t * 1000))


def observation_body(o: Observation) -> dict[str, Any]:
    return {"peer": o.peer, "kind": Kind(o.kind).value, "cid": o.cid or "", "n": int(o.count),
            "bytes": int(o.nbytes), "ev": o.evidence[:512], "at": _ms(o.at or time.time())}


@dataclass
class Snapshot:
    at_ms: int
    local: dict[str, int]
    global_: dict[str, int]
    damping: int
    anchors: list[str]
    complete: bool = True  # False: read from a bounded ledger entry, the lowest values left out (trust.snapshot)


@dataclass
class ReceivedAttestation:
    att: Attestation
    envelope: bytes
    idx: int


@dataclass
class _Replay:
    """Rebuilds reputation state from ledger entries, in order. Shared by the live node and audit."""

    self_id: str
    evidence: list[Evidence] = field(default_factory=list)
    evidence_idx: dict[str, list[int]] = field(default_factory=dict)
    received: dict[tuple[str, str], ReceivedAttestation] = field(default_factory=dict)
    issued: dict[str, tuple[Attestation, int]] = field(default_factory=dict)
    equivocators: set[str] = field(default_factory=set)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    last_seen: dict[str, float] = field(default_factory=dict)
    changed_issuers: set[str] = field(default_factory=set)  # rows to refresh in an incremental engine

    def apply(self, idx: int, kind: str, body: dict[str, Any], verify: bool = False) -> None:
        if kind == "observation":
            self._evidence(idx, body["peer"], body["kind"], body["n"], body["at"] / 1000)
        elif kind == "rating":
            k = "content_good" if body["verdict"] == "good" else "content_bad"
            for peer in [body["publisher"], *body["providers"]]:
                if peer != self.self_id:
                    self._evidence(idx, peer, k, 1, body["at"] / 1000)
        elif kind == "equivocation":
            eq = open_equivocation(body["proof"]) if verify else None
            issuer = eq.issuer if eq else body["issuer"]
            self.equivocators.add(issuer)
            self._evidence(idx, issuer, "equivocation", 1, body["at"] / 1000)
        elif kind == "attestation-received":
            att = open_attestation(body["envelope"]) if verify else Attestation.from_dict(body["att"])
            self.received[(att.issuer, att.subject)] = ReceivedAttestation(att, body["envelope"], idx)
            self.changed_issuers.add(att.issuer)
        elif kind == "attestation-issued":
            att = open_attestation(body["envelope"]) if verify else Attestation.from_dict(body["att"])
            self.issued[att.subject] = (att, idx)

    def _evidence(self, idx: int, peer: str, kind: str, n: int, at: float) -> None:
        self.evidence.append(Evidence(peer, kind, n, at))
        self.evidence_idx.setdefault(peer, []).append(idx)
        c = self.counts.setdefault(peer, {})
        c[kind] = c.get(kind, 0) + n
        self.last_seen[peer] = max(self.last_seen.get(peer, 0.0), at)

    def local(self, now: float, params: LocalTrustParams) -> dict[str, float]:
        return normalise(score_peers(self.evidence, now, params), now, params,
                         exclude=self.equivocators | {self.self_id})

    def has_proven_fault(self, peer: str) -> bool:
        counts = self.counts.get(peer, {})
        return any(counts.get(k) for k in PROVEN_FAULTS)

    def global_(self, local: dict[str, float], damping: float, anchors: Iterable[str],
                engine: TrustEngine | None = None) -> dict[str, float]:
        """Global trust. With a persistent ``engine`` only the rows that changed since the last
        call are replaced and the power iteration warm-starts (incremental); without one, a
        cold computation from scratch (what the audit does to check stored snapshots)."""
        incremental = engine is not None
        if engine is None:
            engine = TrustEngine(TrustParams(damping=damping), self_id=self.self_id)
        engine.set_local_trust(self.self_id, local)
        issuers = self.changed_issuers if incremental else {i for i, _ in self.received}
        rows: dict[str, dict[str, float]] = {i: {} for i in issuers if i != self.self_id}
        for (issuer, subject), ra in self.received.items():
            if issuer in rows:
                rows[issuer][subject] = ra.att.trust
        for issuer, row in rows.items():
            # Each row in subject order (as when sorting all pairs, which cost most of the time
            # with 100,000 attestations held).
            engine.set_local_trust(issuer, dict(sorted(row.items())))
        if incremental:
            self.changed_issuers = set()
        engine.set_anchors({a: 1.0 for a in anchors if a != self.self_id})
        engine.set_distrusted(set(self.equivocators) - {self.self_id})
        result = engine.compute(warm_start=incremental)
        return {p: result.trust_of(p) for p in engine.peer_ids}


def _ppm(values: dict[str, float]) -> dict[str, int]:
    return {p: int(round(v * TRUST_SCALE)) for p, v in sorted(values.items())}


class Reputation:
    def __init__(self, ledger: Any, identity: Any, *, anchors: Iterable[str] = (), damping: float = 0.15,
                 params: LocalTrustParams = LocalTrustParams(), intake: Intake | None = None):
        self.ledger = ledger
        self.identity = identity
        self.anchors = sorted(set(anchors))
        self.damping = damping
        self.params = params
        self.state = _Replay(identity.peer_id)
        self.engine = TrustEngine(TrustParams(damping=damping), self_id=identity.peer_id)
        self.last_snapshot: Snapshot | None = None
        for e in ledger.entries():
            self.state.apply(e.idx, e.kind, e.body)
            if e.kind == "trust-snapshot":
                self.last_snapshot = _snapshot(e.body)
        # Per-issuer caps on received attestations (trust.intake); None: keep everything (audit, sim).
        self.intake = intake
        if intake is not None:
            intake.seed(self.state.received, self.is_trusted)

    @property
    def peer_id(self) -> str:
        return self.identity.peer_id

    # -- first-hand evidence -----------------------------------------------------------------

    def record(self, *observations: Observation) -> list[int]:
        bodies = [("observation", observation_body(o)) for o in observations]
        for _, b in bodies:
            if not is_peer_id(b["peer"]):
                raise ValueError(f"not a peer ID: {b['peer']!r}")
        idxs = self.ledger.append_many(bodies)
        for i, (k, b) in zip(idxs, bodies):
            self.state.apply(i, k, b)
        return idxs

    def rate(self, cid: str, verdict: str, publisher: str, providers: Iterable[str], reason: str = "") -> int:
        if verdict not in ("good", "bad"):
            raise ValueError("verdict must be 'good' or 'bad'")
        body = {"cid": cid, "verdict": verdict, "publisher": publisher,
                "providers": sorted(set(providers) - {publisher}), "reason": reason[:256], "at": _ms(time.time())}
        idx = self.ledger.append("rating", body)
        self.state.apply(idx, "rating", body)
        return idx

    # -- attestations ------------------------------------------------------------------------

    def is_trusted(self, peer: str) -> bool:
        """Anchors and peers with trust > 0 here (last computation) get the larger intake allowance."""
        return peer in self.anchors or any(v > 0 for v in self.trust_of(peer))

    def receive_attestation(self, envelope: bytes, now: float | None = None) -> tuple[str, Equivocation | None]:
        """Verify and keep an attestation.

        Returns (outcome, proof): outcome is accepted|replaced|old|duplicate|equivocation|self,
        or dropped when the intake caps refuse it (trust.intake, counted there by reason; `now`
        is its clock, default time.monotonic()); an older or replayed attestation changes
        nothing; a conflicting one for the same sequence number yields the equivocation proof
        (already recorded).
        """
        att = open_attestation(envelope)  # signature first, then replay rules, then caps
        settled = self.classify_attestation(att, envelope)
        if settled is not None:
            return settled
        replaced = (att.issuer, att.subject) in self.state.received
        if self.intake is not None and \
                self.intake.admit_attestation(att.issuer, not replaced, self.is_trusted(att.issuer), now) is not None:
            return "dropped", None
        body = {"envelope": envelope, "att": att.to_dict()}
        idx = self.ledger.append("attestation-received", body)
        self.state.apply(idx, "attestation-received", body)
        return ("replaced" if replaced else "accepted"), None

    def classify_attestation(self, att: Attestation, envelope: bytes) -> tuple[str, Equivocation | None] | None:
        """The replay and equivocation rules for a verified attestation: the outcome when it
        must not be stored (self, old, duplicate, equivocation), None when it is news."""
        if att.issuer == self.peer_id:
            return "self", None
        prev = self.state.received.get((att.issuer, att.subject))
        if prev is None or att.seq > prev.att.seq:
            return None
        if att.seq < prev.att.seq:
            return "old", None
        if prev.att == att:
            return "duplicate", None
        if not (envelope and prev.envelope):  # unsigned records (simulator's large runs): no proof
            self.state.equivocators.add(att.issuer)
            return "equivocation", None
        eq = check_equivocation(prev.envelope, envelope, Attestation.TAG)
        self.receive_equivocation(eq)
        return "equivocation", eq

    def receive_equivocation(self, eq: Equivocation) -> bool:
        """Keep a verified equivocation proof; True if it is news."""
        if eq.issuer in self.state.equivocators or eq.issuer == self.peer_id:
            return False
        body = {"issuer": eq.issuer, "kind": eq.kind, "proof": eq.to_bytes(), "at": _ms(time.time())}
        idx = self.ledger.append("equivocation", body)
        self.state.apply(idx, "equivocation", body)
        log.warning("equivocation proven against %s (%s)", eq.issuer, eq.kind)
        return True

    def attestations_due(self, local: dict[str, int], min_change: int) -> list[tuple[str, int, int]]:
        """(peer, value in millionths, sequence number) for every peer whose attested trust must
        change: a move of >= min_change, any drop to the floor, and a first attestation.

        Zero is said only of a peer with a proven fault against it: others read a zero as a
        fault report (trust/witness.py), and timeouts alone also happen to overloaded honest
        peers. A peer whose trust fell to zero without one (timeouts, decay) is attested
        NO_FAULT_FLOOR instead, and never gets a first attestation of zero. (When honest nodes
        said zero of a staller some had been stalled by and others served by, each lost
        credibility with the others and their real fault reports stopped counting: the 24-node
        real-network run.)"""
        due = []
        for peer in sorted((set(local) | set(self.state.issued) | set(self.state.counts)) - {self.peer_id}):
            value = local.get(peer, 0)
            prev = self.state.issued.get(peer)
            if value == 0 and not self.state.has_proven_fault(peer):
                if prev is None:
                    continue
                value = NO_FAULT_FLOOR
            if prev is not None and (prev[0].value == value or
                                     (abs(prev[0].value - value) < min_change and value > NO_FAULT_FLOOR)):
                continue
            due.append((peer, value, prev[0].seq + 1 if prev else 1))
        return due

    def evidence_digest_of(self, peer: str, scores: dict[str, Any]) -> bytes:
        """What an attestation about `peer` commits to: its event counts and latest evidence entries."""
        ps = scores.get(peer)
        return evidence_digest(sorted((ps.events if ps else {}).items()) + [self.state.evidence_idx.get(peer, [])[-64:]])

    def issue_attestations(self, now: float | None = None, min_change: int = 1000) -> list[bytes]:
        """Sign attestations for peers whose local trust moved by >= min_change millionths."""
        now = time.time() if now is None else now
        local = _ppm(self.state.local(now, self.params))
        scores = score_peers(self.state.evidence, now, self.params)
        out: list[tuple[str, dict[str, Any]]] = []
        envelopes = []
        for peer, value, seq in self.attestations_due(local, min_change):
            digest = self.evidence_digest_of(peer, scores)
            env = sign_attestation(self.identity, peer, value / TRUST_SCALE, seq, int(now), digest)
            att = open_attestation(env)
            out.append(("attestation-issued", {"envelope": env, "att": att.to_dict()}))
            envelopes.append(env)
        if out:
            idxs = self.ledger.append_many(out)
            for i, (k, b) in zip(idxs, out):
                self.state.apply(i, k, b)
        return envelopes

    # -- trust ---------------------------------------------------------------------------------

    def compute(self, now: float | None = None, snapshot: bool = True) -> Snapshot:
        now = time.time() if now is None else now
        now_ms = _ms(now)
        now = now_ms / 1000  # the snapshot must be recomputable from what is stored
        local = self.state.local(now, self.params)
        glob = self.state.global_(local, self.damping, self.anchors, self.engine)
        snap = Snapshot(now_ms, _ppm(local), _ppm(glob), int(round(self.damping * DAMPING_SCALE)), self.anchors)
        if snapshot:
            # Bounded whatever the number of peers (trust.snapshot); the full vectors stay in memory.
            self.ledger.append("trust-snapshot", snapshot_body(self.peer_id, snap.at_ms, snap.local, snap.global_,
                                                               snap.damping, snap.anchors))
        self.last_snapshot = snap
        return snap

    def distrusted(self) -> set[str]:
        return set(self.state.equivocators)

    def trust_of(self, peer: str) -> tuple[float, float]:
        """(local, global) trust of a peer from the last computation."""
        s = self.last_snapshot
        if s is None:
            return 0.0, 0.0
        return s.local.get(peer, 0) / TRUST_SCALE, s.global_.get(peer, 0) / TRUST_SCALE

    def summary(self, peer: str | None = None) -> list[PeerSummary]:
        peers = [peer] if peer else sorted(self.state.counts)
        return [PeerSummary(p, dict(self.state.counts.get(p, {})), self.state.last_seen.get(p, 0.0))
                for p in peers if p in self.state.counts]

    def table(self) -> list[dict[str, Any]]:
        s = self.last_snapshot
        peers = set(self.state.counts) | {i for i, _ in self.state.received} | {j for _, j in self.state.received}
        if s:
            peers |= set(s.local) | set(s.global_)
        peers.discard(self.peer_id)
        ranked = sorted(s.global_.items(), key=lambda kv: (-kv[1], kv[0])) if s else []
        rank = {p: i + 1 for i, (p, _) in enumerate(ranked)}
        about: dict[str, int] = {}  # counted once: a scan per peer was quadratic with many attestations
        for _, j in self.state.received:
            about[j] = about.get(j, 0) + 1
        rows = []
        for p in sorted(peers, key=lambda p: (rank.get(p, 10**9), p)):
            local, glob = self.trust_of(p)
            rows.append({"peer_id": p, "local": local, "global": glob, "rank": rank.get(p),
                         "attestations": about.get(p, 0),
                         "equivocated": p in self.state.equivocators,
                         "evidence": dict(self.state.counts.get(p, {}))})
        return rows

    def explain(self, peer: str) -> dict[str, Any]:
        local, glob = self.trust_of(peer)
        ev = []
        for idx in self.state.evidence_idx.get(peer, [])[-200:]:
            e = self.ledger.entry(idx)
            ev.append({"ledger_index": idx, "kind": e.kind, "body": _jsonable(e.body)})
        atts = [{"ledger_index": ra.idx, "issuer": i, "value": ra.att.trust, "seq": ra.att.seq,
                 "timestamp": ra.att.timestamp}
                for (i, j), ra in sorted(self.state.received.items()) if j == peer]
        issued = self.state.issued.get(peer)
        return {"peer_id": peer, "local": local, "global": glob, "equivocated": peer in self.state.equivocators,
                "evidence": ev, "attestations_about": atts,
                "our_attestation": ({"ledger_index": issued[1], "value": issued[0].trust, "seq": issued[0].seq}
                                    if issued else None),
                "snapshot_at_ms": self.last_snapshot.at_ms if self.last_snapshot else None}


def _snapshot(body: dict[str, Any]) -> Snapshot:
    complete = len(body["local"]) == body.get("n_local", len(body["local"])) and \
        len(body["global"]) == body.get("n_global", len(body["global"]))
    return Snapshot(body["at"], dict(body["local"]), dict(body["global"]), body["damping"], list(body["anchors"]),
                    complete)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return hashlib.sha256(v).hexdigest()[:16] + "…" if len(v) > 64 else v.hex()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


MAX_SNAPSHOTS_CHECKED = 50


def ledger_trust_check(ledger: Any) -> list[Any]:
    """Audit hook: recompute each stored trust snapshot from the entries before it."""
    from trust.ledger import Problem

    problems: list[Any] = []
    snapshots = [(e.idx, e.body.get("self")) for e in ledger.entries() if e.kind == "trust-snapshot"]
    if not snapshots:
        return problems
    if len({s for _, s in snapshots}) != 1:
        problems.append(Problem(f"entry {snapshots[0][0]}", "trust snapshots name different owners"))
    check = {i for i, _ in snapshots[-MAX_SNAPSHOTS_CHECKED:]}
    state = _Replay(str(snapshots[0][1]))
    for e in ledger.entries():
        try:
            if e.kind == "trust-snapshot":
                if e.idx in check:
                    snap = _snapshot(e.body)
                    now = snap.at_ms / 1000
                    local = state.local(now, LocalTrustParams())
                    why = check_local(e.body, _ppm(local))
                    if why:
                        problems.append(Problem(f"entry {e.idx}", why))
                    glob = _ppm(state.global_(local, snap.damping / DAMPING_SCALE, snap.anchors))
                    bad = check_global(e.body, glob, tolerance=2)
                    if bad:
                        problems.append(Problem(f"entry {e.idx}", f"stored global trust differs from recomputed "
                                                f"trust for {len(bad)} peer(s), e.g. {sorted(bad)[0]}"))
            else:
                _check_copies(e.kind, e.body)
                state.apply(e.idx, e.kind, e.body)
        except (KeyError, TypeError, ValueError, DecodeError, SignatureError) as exc:
            problems.append(Problem(f"entry {e.idx}", f"{e.kind} entry cannot be replayed: {exc}"))
    return problems


def _check_copies(kind: str, body: dict[str, Any]) -> None:
    """Replay reads the plain copies stored beside signed records (`att`, `issuer`); the audit
    checks the signatures, so here the copies must say exactly what was signed."""
    if kind in ("attestation-received", "attestation-issued"):
        env = encoding.decode(body["envelope"], Attestation.MAX_SIZE)
        if not (isinstance(env, list) and len(env) == 6 and env[1] == Attestation.TAG):
            raise DecodeError("envelope is not a signed attestation")
        if encoding.decode(env[3], Attestation.MAX_SIZE) != body["att"]:
            raise ValueError("the stored attestation differs from the signed one in its envelope")
    elif kind == "equivocation":
        from trust.ledger import verify_equivocation

        if verify_equivocation(body["proof"]).issuer != body["issuer"]:
            raise ValueError("the entry names another issuer than its proof")
