"""vouchnet's variant: every honest peer runs the node's own reputation and policy objects.

Per honest peer (`SimNode`):

- `trust.reputation.Reputation` (the node's class) over an in-memory ledger: first-hand
  evidence goes in as `Observation`s exactly as the node records it (verified chunks, a chunk
  failing its proof, content rated good/bad, chunks served), local trust is
  `trust.local_trust` through `_Replay.local`, and attestations are signed with the peer's
  Ed25519 key (`trust.attestation.sign_attestation`; `SimReputation.issue` produces the same
  bytes as `Reputation.issue_attestations`, which tests/overlay/sim/test_sim.py checks);
- `overlay.services.reputation.ReputationService`'s own `rank`, `distrusted` and (for full
  nodes) `_refresh_distrust`: the node's distrust rule and provider order;
- `overlay.services.policy.PolicyService` with the policy below: `choose_providers` is the
  node's `choose_provider` enforcement point, `decide` its serve_request one.

Global trust. A peer online from the start has received every attestation ever gossiped
(the transport keeps that view, overlay/sim/transport.py), so the rows of its trust matrix
are the same as everybody else's: one `trust.trust_engine.TrustEngine` holds them, and each
peer's personalised vector is that engine's `compute` with the peer as its anchor. The one
difference from `_Replay.global_` is the peer's own row, which here is its latest attestation
(its local trust rounded to millionths, re-issued when an entry moves by 0.1%) rather than the
exact local trust. The distrust rule is `ReputationService._refresh_distrust` evaluated with
numpy over the same attestations (`fast_distrust`). tests/overlay/sim/test_sim.py rebuilds peers of a
simulated network with the node's own code and checks that both shortcuts give the same
local trust, the same distrusted set and global trust within 1% (L1).

Fault reports travel within the round: a peer that records a proven fault does at once what
the node's next tick (2 s) would do, and every peer re-reads its witness reports from the
attestations published since it last looked before it chooses (`_Votes` keeps the network view
incrementally). Global trust is computed once per round, at its end.

Not modelled for peers online from the start: each peer's own gossip gate (`accept_origin`
drops later attestations from origins it distrusts). The origins a peer distrusts are almost
all malicious, so keeping their attestations errs in the attackers' favour.

Newcomers joining mid-run are *full* nodes: they only see attestations gossiped after they
joined (gossip has no history), keep their own received set through the node's replay and
equivocation rules, accept only origins `accept_origin` allows, and compute trust with the
node's own `Reputation.compute` and `_refresh_distrust`, unchanged.

Large runs (above 1,000 peers): attestations travel as unsigned `Attestation` records, and
only a random sample of 200 honest peers (the observers) computes personalised global trust;
the others rank providers by their own local trust and distrust only peers with proven faults
against them. Results count the observers' and newcomers' downloads.
"""
from __future__ import annotations

import hashlib
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from overlay.services.policy import PolicyDenied, PolicyService
from overlay.services.reputation import ReputationService
from overlay.sim.config import SimConfig
from overlay.sim.transport import Gossip
from overlay.sim.variants import Variant
from overlay.sim.world import CORRUPT, GOOD, NEWCOMER, Population, World, identity_seed
from policy import Action, Verdict
from trust.attestation import TRUST_SCALE, Attestation, Equivocation
from trust.attestation import sign_attestation
from trust.identity import Identity
from trust.local_trust import LocalTrustParams, normalise, score_peers
from trust.observations import Kind, Observation
from trust.peerid import peer_id_from_public_key
from trust.reputation import DAMPING_SCALE, ReceivedAttestation, Reputation, Snapshot, _ppm
from trust.trust_engine import TrustEngine, TrustParams
from trust.witness import anchor_verdicts, index_mask, own_verdicts, witness_reports

T0 = 1_700_000_000  # simulated clock origin (unix seconds)

# The policy every honest vouchnet peer runs in the simulation. Only documented, built-in rules.
SIM_POLICY = """\
# vouchnet sim: the policy of every honest peer (docs/evaluation.md explains each rule).
[policy]
default = "allow"

[[rule]]
type = "deny_equivocators"

# A provider this node has dealt with is judged on this node's own evidence first: once it
# served junk or a corrupted chunk (local trust 0: proven faults are sticky), it is not asked
# again, whatever others say about it.
[[rule]]
name = "own-evidence"
type = "min_trust"
actions = ["choose_provider"]
min_local = 0.000001
min_interactions = 1

# Newcomers (fewer than 20 interactions here, or first seen less than a day ago) are served
# at 2 requests/s and tried as providers only after everyone else, unless this node's own
# evidence or the peers it trusts vouch for them.
[[rule]]
type = "newcomer_quarantine"
actions = ["serve_request", "choose_provider"]
min_interactions = 20
min_age = 86400.0
rate = 2.0
exempt_local = 0.001
exempt_global = {exempt_global}
"""


class MemoryLedger:
    """Stands in for trust.ledger.Ledger: numbers entries and keeps none (nothing is audited)."""

    def __init__(self) -> None:
        self.size = 0

    def entries(self):
        return iter(())

    def append(self, kind: str, body: dict) -> int:
        self.size += 1
        return self.size - 1

    def append_many(self, items: list) -> list[int]:
        start = self.size
        self.size += len(items)
        return list(range(start, self.size))

    def close(self) -> None:
        pass


class SimReputation(Reputation):
    """The node's Reputation; two additions for the in-memory transport and for large runs."""

    last_local: dict[str, float] = {}
    last_local_at: float = -1.0

    def receive_verified(self, att: Attestation, envelope: bytes) -> tuple[str, Equivocation | None]:
        """`Reputation.receive_attestation` for an envelope the transport already opened and
        verified: the same replay and equivocation rules, and the same state change as
        `_Replay.apply("attestation-received", ...)` (which would only decode the record again)."""
        settled = self.classify_attestation(att, envelope)
        if settled is not None:
            return settled
        key = (att.issuer, att.subject)
        prev = self.state.received.get(key)
        idx = self.ledger.append("attestation-received", {})
        # What _Replay.apply("attestation-received", ...) does, minus decoding the record again
        # (tests/overlay/sim/test_sim.py checks that both leave the same state).
        self.state.received[key] = ReceivedAttestation(att, envelope, idx)
        self.state.changed_issuers.add(att.issuer)
        return ("replaced" if prev else "accepted"), None

    def issue(self, now: float, sign: bool, min_change: int = 1000) -> list[tuple[Attestation, bytes]]:
        """`Reputation.issue_attestations`, step for step: the same peers, values, sequence numbers,
        change threshold and evidence digests, signed with the node's key when `sign`. It returns
        the records with their envelopes (the transport verifies and decodes each envelope once,
        as a receiver would), and it updates the issued set
        directly instead of re-decoding each record through the ledger replay."""
        # _Replay.local is normalise(score_peers(...)); the scores are needed for the digests too.
        scores = score_peers(self.state.evidence, now, self.params)
        self.last_local = normalise(scores, now, self.params, exclude=self.state.equivocators | {self.peer_id})
        self.last_local_at = now
        local = _ppm(self.last_local)
        me = self.peer_id
        out = []
        for peer, value, seq in self.attestations_due(local, min_change):
            if sign:
                digest = self.evidence_digest_of(peer, scores)
                env = sign_attestation(self.identity, peer, value / TRUST_SCALE, seq, int(now), digest)
            else:
                digest, env = b"\0" * 32, b""
            att = Attestation(me, peer, value, seq, int(now), digest)
            self.state.issued[peer] = (att, self.ledger.append("attestation-issued", {}))
            out.append((att, env))
        return out


class SimReputationService(ReputationService):
    """The node's ReputationService without its ledger file and gossip: `rank`, `distrusted`,
    `accept_origin` and `_refresh_distrust` are the node's own methods."""

    def __init__(self, rep: Reputation, trust_floor: float) -> None:  # noqa: D107 - no super(): no files
        self.rep = rep
        self.ledger = rep.ledger
        self.trust_floor = trust_floor
        self.gossip = None
        self.dirty = True
        self._distrusted: set[str] = set()
        self._risk: dict[str, float] = {}
        self._head_size = -1
        self.stats = {"attestations_in": 0, "attestations_out": 0, "heads_in": 0, "equivocations": 0, "replays": 0}
        self.policy = None


class SimNode:
    def __init__(self, idx: int, peer_id: str, identity: Any, cfg: SimConfig, policy_path: Path,
                 clock: Any, full: bool, anchors: list[str] = []) -> None:
        self.idx = idx
        self.peer_id = peer_id
        self.full = full
        self.rep = SimReputation(MemoryLedger(), _Signer(peer_id, identity), anchors=anchors,
                                 damping=cfg.vn_damping)
        self.service = SimReputationService(self.rep, cfg.trust_floor)
        self.policy = PolicyService(policy_path.parent, policy_path, explicit=True, rep=self.rep, ledger=None,
                                    clock=clock)
        self.service.policy = self.policy  # accept_origin consults the policy, as in the node
        self.signed = identity is not None
        self.public_key = identity.public_key if identity is not None else None
        self.glob_ppm: np.ndarray | None = None  # last global trust over the shared engine's indices
        self.seen = -1     # the network view's version this node last read its witness reports at
        self.cursor = 0    # full nodes: this round's gossip log delivered so far

    def record(self, *obs: Observation) -> None:
        self.rep.record(*obs)


class _Signer:
    """An Identity with its peer ID computed once (Identity.peer_id re-encodes the key on every
    access, and the reputation code asks for it on every record). `signing_key` is None when
    signatures are off."""

    def __init__(self, peer_id: str, identity: Identity | None) -> None:
        self.peer_id = peer_id
        self.signing_key = identity.signing_key if identity is not None else None


def peer_id_for(seed: int, idx: int, signed: bool) -> tuple[str, Identity | None]:
    """Identity number idx of runs with this seed: a real Ed25519 key pair when signing, else a
    well-formed peer ID derived from the same bytes (no key generation)."""
    raw = identity_seed(seed, idx)
    if signed:
        ident = Identity.from_seed(raw)
        return ident.peer_id, ident
    return peer_id_from_public_key(hashlib.sha256(raw).digest()), None


class Vouchnet(Variant):
    name = "vouchnet"

    def __init__(self, world: World, pop: Population, cfg: SimConfig) -> None:
        super().__init__(world, pop, cfg)
        self.signed = cfg.signed
        self._tmp = tempfile.TemporaryDirectory(prefix="vouchnet-sim-")
        self.policy_path = Path(self._tmp.name) / "policy.toml"
        self.policy_path.write_text(SIM_POLICY.format(exempt_global=cfg.exempt_global_value))
        self.now = float(T0)
        self.params = LocalTrustParams()
        self.gossip = Gossip(signed=self.signed)
        self.engine = TrustEngine(TrustParams(damping=cfg.vn_damping))
        self.votes = _Votes(self.engine, self.gossip.rows)
        self._pids: list[str] = []
        self._idents: list[Identity | None] = []
        self._pubkeys: dict[int, bytes] = {}
        self._by_pid: dict[str, int] = {}
        self.nodes: dict[int, SimNode] = {}
        rng = random.Random(f"vouchnet-sim:{cfg.seed}:observers")
        honest = list(range(world.n_honest))
        self.observers = set(honest if cfg.n_observers >= world.n_honest else rng.sample(honest, cfg.n_observers))
        for a in honest:
            self._node(a, full=False)
        self._mal_sent: dict[tuple[int, int], tuple[int, int]] = {}  # (issuer, subject) -> (value ppm, seq)
        # newcomer -> {"serve" | "provider": [(its interactions so far, ALLOW?) per decision about it]}
        self.newcomer_log: dict[int, dict[str, list[tuple[int, bool]]]] = {}
        self.transactions: dict[int, int] = {}
        self.compute_stats = {"engine_computes": 0, "full_computes": 0, "attestations_signed": 0}

    def close(self) -> None:
        self._tmp.cleanup()

    # -- identities --------------------------------------------------------------------------------

    def pid(self, idx: int) -> str:
        while len(self._pids) <= idx:
            p, ident = peer_id_for(self.cfg.seed, len(self._pids), self.signed)
            self._by_pid[p] = len(self._pids)
            self._pids.append(p)
            self._idents.append(ident)
        return self._pids[idx]

    def ident(self, idx: int) -> Identity | None:
        self.pid(idx)
        return self._idents[idx]

    def _pubkey(self, idx: int) -> bytes:
        key = self._pubkeys.get(idx)
        if key is None:
            key = self._pubkeys[idx] = self.ident(idx).public_key
        return key

    def _node(self, idx: int, full: bool) -> SimNode:
        # Personal anchors: a few honest peers this peer knows out of band (reputation.anchors).
        rng = random.Random(f"vouchnet-sim:{self.cfg.seed}:anchors:{idx}")
        friends = [a for a in range(self.world.n_honest) if a != idx]
        anchors = [self.pid(a) for a in rng.sample(friends, min(self.cfg.anchors, len(friends)))]
        node = SimNode(idx, self.pid(idx), self.ident(idx), self.cfg, self.policy_path, self.clock, full, anchors)
        self.nodes[idx] = node
        return node

    def clock(self) -> float:
        return self.now

    # -- the round -----------------------------------------------------------------------------------

    def measured(self, querier: int) -> bool:
        return querier in self.observers or self.pop.kind[querier] == NEWCOMER

    def start_round(self, r: int) -> None:
        self.now = float(T0 + r * self.cfg.round_seconds)
        if r == self.world.join:
            for a in range(self.world.n_honest, self.world.n_actors):
                self._node(a, full=True)
                self.newcomer_log[a] = {"serve": [], "provider": []}
                self.transactions[a] = 0

    def order(self, querier, candidates, file, rng):
        node = self.nodes[querier]
        ids = [self.pid(c) for c in candidates]
        for c in candidates:  # how this querier treats a newcomer it hears from (provider side)
            if c in self.newcomer_log and self.pop.kind[querier] != NEWCOMER:
                ok = self._allows(node, Action.CHOOSE_PROVIDER, c)
                self.newcomer_log[c]["provider"].append((self.transactions[c], ok))
        self._catch_up(node)
        ordered = node.service.rank(ids)  # the node: distrusted dropped, most trusted first
        try:
            chosen = node.policy.choose_providers(ordered, self.world.size(file), tier=node.service.tier)
        except PolicyDenied:
            return []
        return [self._by_pid[p] for p in chosen]

    def observe(self, querier, provider, outcome, chunks):
        node, peer, at = self.nodes[querier], self.pid(provider), self.now
        if outcome == CORRUPT:
            node.record(Observation(peer, Kind.CHUNK_INVALID, count=1, at=at,
                                    evidence="chunk failed its Merkle proof"))
            self._fault_news(node)
            return
        # The whole file verified chunk by chunk (junk is validly signed), then the user's rating,
        # which the node files against the publisher and the providers (here: the same peer).
        node.record(Observation(peer, Kind.CHUNK_VERIFIED, count=chunks, nbytes=chunks * self.cfg.chunk_bytes, at=at),
                    Observation(peer, Kind.CONTENT_GOOD if outcome == GOOD else Kind.CONTENT_BAD, at=at))
        if outcome != GOOD:
            self._fault_news(node)
        if querier in self.transactions:
            self.transactions[querier] += 1

    # -- prompt fault reports ------------------------------------------------------------------------

    def _fault_news(self, node: SimNode) -> None:
        """A proven fault, as the node handles it at its next tick (every 2 s, while a round's
        queries are about half a minute apart): recompute its own local trust and distrust, and publish
        the attestations that moved, which reach the others before their next query. Global
        trust is still computed once per round, at its end."""
        self._publish_issued(node, node.rep.issue(self.now, sign=node.signed))
        if node.full:
            node.rep.compute(self.now, snapshot=False)
        elif node.idx in self.observers:
            snap = node.rep.last_snapshot
            node.rep.last_snapshot = Snapshot(int(round(self.now * 1000)), _ppm(node.rep.last_local),
                                              snap.global_ if snap else {}, int(round(node.rep.damping * DAMPING_SCALE)),
                                              list(node.rep.anchors))
        else:
            self._compute_local_only(node, self.now)
        node.seen = -1
        self._catch_up(node)

    def _catch_up(self, node: SimNode) -> None:
        """Before choosing: take in the attestations published since this node last looked and
        re-read its witness reports (the node's `_refresh_distrust` on its tick)."""
        if node.seen == self.votes.version:
            return
        node.seen = self.votes.version
        if node.full:
            self._deliver(node)
            node.service._refresh_distrust()
        elif node.idx in self.observers:
            glob = node.glob_ppm if node.glob_ppm is not None else np.zeros(0, dtype=np.int64)
            node.service._distrusted = fast_distrust(node, glob, self.votes, self.engine)

    def _deliver(self, node: SimNode) -> None:
        """This round's gossip not yet delivered to a full node, through the node's gate and rules."""
        log = self.gossip.round_log
        gate: dict[str, bool] = {}  # accept_origin per origin: nothing it reads changes meanwhile
        for att, env in log[node.cursor:]:
            ok = gate.get(att.issuer)
            if ok is None:
                ok = gate[att.issuer] = node.service.accept_origin(att.issuer)
            if ok:
                node.rep.receive_verified(att, env)
        node.cursor = len(log)

    def _publish_issued(self, node: SimNode, issued: list[tuple[Attestation, bytes]]) -> None:
        for att, env in issued:
            self._publish(att, env, node.public_key)
        if node.signed:
            self.compute_stats["attestations_signed"] += len(issued)

    def _publish(self, att: Attestation, env: bytes, public_key: bytes | None) -> None:
        outcome = self.gossip.publish(env or att, att, public_key)
        if outcome in ("accepted", "replaced"):
            self.votes.add(att)

    def served(self, provider, requester, chunks):
        node = self.nodes.get(provider)
        if node is not None and requester in self.newcomer_log and self.pop.kind[provider] != NEWCOMER:
            # how an established provider treats a newcomer's request (requester side)
            self.newcomer_log[requester]["serve"].append((self.transactions[requester],
                                                          self._allows(node, Action.SERVE_REQUEST, requester)))
        if node is not None and self.cfg.served_credit:
            node.record(Observation(self.pid(requester), Kind.SERVED, count=chunks,
                                    nbytes=chunks * self.cfg.chunk_bytes, at=self.now))
        if provider in self.transactions:
            self.transactions[provider] += 1

    def end_round(self, r: int) -> None:
        now = self.now
        # 1. Every honest node issues attestations for peers whose local trust moved (the node's tick).
        for idx in sorted(self.nodes):
            node = self.nodes[idx]
            self._publish_issued(node, node.rep.issue(now, sign=node.signed))
        # 2. The attackers publish what their strategy claims.
        self._adversary_attestations(r)
        # 3. Full nodes receive the rest of this round's attestations through the node's gate and rules.
        for node in self.nodes.values():
            if node.full:
                self._deliver(node)
                node.cursor = 0
        changed, _ = self.gossip.take_round()
        # 4. The shared matrix: one row per issuer, from the latest attestations.
        for issuer in changed:
            self.engine.set_local_trust(issuer, self.gossip.rows[issuer])
        self.engine.set_distrusted(sorted(self.gossip.equivocators))
        votes = self.votes
        # 5. Every node's trust and distrust.
        for idx in sorted(self.nodes):
            node = self.nodes[idx]
            if node.full:
                node.rep.compute(now, snapshot=False)          # the node's own computation
                node.service._refresh_distrust()                # the node's own distrust rule
                self.compute_stats["full_computes"] += 1
            elif idx in self.observers:
                self._compute_shared(node, now, votes)
            else:
                self._compute_local_only(node, now)
            node.seen = votes.version

    def _compute_shared(self, node: SimNode, now: float, votes: "_Votes") -> None:
        now_ms = int(round(now * 1000))
        now = now_ms / 1000
        rep = node.rep
        local = rep.last_local if rep.last_local_at == now else rep.state.local(now, rep.params)
        anchors = {a: 1.0 for a in rep.anchors if a != node.peer_id}
        anchors[node.peer_id] = 1.0
        self.engine.set_anchors(anchors)
        res = self.engine.compute(warm_start=False)
        self.compute_stats["engine_computes"] += 1
        ppm = np.rint(res.vector * TRUST_SCALE).astype(np.int64)
        ids = self.engine.peer_ids
        glob = {ids[i]: int(ppm[i]) for i in np.flatnonzero(ppm)}
        rep.last_snapshot = Snapshot(now_ms, _ppm(local), glob, int(round(rep.damping * DAMPING_SCALE)),
                                     list(rep.anchors))
        node.glob_ppm = ppm
        node.service._distrusted = fast_distrust(node, ppm, votes, self.engine)

    def _compute_local_only(self, node: SimNode, now: float) -> None:
        """Peers not measured at large N: rank by their own local trust (documented shortcut)."""
        now_ms = int(round(now * 1000))
        rep = node.rep
        local = _ppm(rep.state.local(now_ms / 1000, rep.params))
        rep.last_snapshot = Snapshot(now_ms, local, dict(local), int(round(rep.damping * DAMPING_SCALE)), [])
        node.service._distrusted = own_verdicts(0, {}, local, rep.state.counts)[1]

    def _adversary_attestations(self, r: int) -> None:
        digest = hashlib.sha256(b"fabricated evidence").digest()
        ts = int(self.now)
        for issuer, row in self.pop.opinions(r):
            for subject, value in sorted(row.items()):
                v = int(round(min(max(value, 0.0), 1.0) * TRUST_SCALE))
                prev = self._mal_sent.get((issuer, subject))
                if prev is not None and prev[0] == v:
                    continue
                seq = prev[1] + 1 if prev else 1
                self._mal_sent[(issuer, subject)] = (v, seq)
                att = Attestation(self.pid(issuer), self.pid(subject), v, seq, ts, digest)
                if self.signed:
                    ident = self.ident(issuer)
                    env = sign_attestation(ident, att.subject, v / TRUST_SCALE, seq, ts, digest)
                    self.compute_stats["attestations_signed"] += 1
                    self._publish(att, env, self._pubkey(issuer))
                else:
                    self._publish(att, b"", None)

    # -- results -------------------------------------------------------------------------------------

    def _allows(self, node: SimNode, action: Action, peer: int) -> bool:
        svc = node.policy
        ctx = svc.context(action, self.pid(peer), record=False, lookup_addr=False)
        return svc.policy.decide(ctx).verdict is Verdict.ALLOW

    def newcomer_k(self) -> dict:
        """K: the interactions (downloads + uploads) an honest newcomer needs before established
        peers treat it normally: the smallest k such that, of all policy decisions about it made
        once it had k or more interactions, at least 90% were ALLOW (not a newcomer LIMIT). Two
        sides: as a requester (serve_request) and as a provider (choose_provider). Newcomers that
        never get there before the run ends are counted as `pending`."""
        out: dict[str, Any] = {"newcomers": len(self.newcomer_log)}
        for side in ("serve", "provider"):
            ks, pending, decisions, allowed = [], 0, 0, 0
            for log in self.newcomer_log.values():
                rows = sorted(log[side])
                decisions += len(rows)
                allowed += sum(ok for _, ok in rows)
                k = None
                for i in range(len(rows)):
                    later = rows[i:]
                    if sum(ok for _, ok in later) >= 0.9 * len(later) and len(later) >= 3:
                        k = rows[i][0]
                        break
                if k is None:
                    pending += 1
                else:
                    ks.append(k)
            out[side] = {"reached": len(ks), "pending": pending, "decisions": decisions,
                         "allowed": round(allowed / decisions, 4) if decisions else None,
                         "k_median": _median(ks), "k_max": max(ks) if ks else None}
        return out

    def extra(self) -> dict:
        g = self.gossip.stats
        return {"newcomers": self.newcomer_k(),
                "gossip": {"published": g.published, "accepted": g.accepted, "dropped": g.dropped,
                           "equivocations": g.equivocations, "bytes": g.bytes},
                "signed": self.signed, "observers": len(self.observers), **self.compute_stats}


def _median(xs: list) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    m = len(s) // 2
    return float(s[m]) if len(s) % 2 else (s[m - 1] + s[m]) / 2


class _Votes:
    """The network view as arrays over the shared engine's indices: issuer, subject and 'says
    zero' per (issuer, subject), kept up to date attestation by attestation so that a node can
    re-read its witness reports in the middle of a round."""

    def __init__(self, engine: TrustEngine, rows: dict[str, dict[str, float]]) -> None:
        self.engine = engine
        self.rows = rows  # the transport's issuer -> {subject: trust}, same attestations (anchors' verdicts)
        self.version = 0
        self._pos: dict[tuple[str, str], int] = {}
        self._iss: list[int] = []
        self._sub: list[int] = []
        self._zero: list[bool] = []
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, att: Attestation) -> None:
        key = (att.issuer, att.subject)
        k = self._pos.get(key)
        if k is None:
            self._pos[key] = len(self._iss)
            # What set_local_trust does at the end of the round, a little earlier.
            self._iss.append(self.engine.intern(att.issuer))
            self._sub.append(self.engine.intern(att.subject))
            self._zero.append(att.value == 0)
        else:
            self._zero[k] = att.value == 0
        self._arrays = None
        self.version += 1

    @property
    def n(self) -> int:
        return self.engine.peer_count

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.array(self._iss, dtype=np.int64), np.array(self._sub, dtype=np.int64),
                            np.array(self._zero, dtype=bool))
        return self._arrays


def fast_distrust(node: SimNode, glob_ppm: np.ndarray, votes: _Votes, engine: TrustEngine) -> set[str]:
    """`ReputationService._refresh_distrust` for a node whose received attestations are the
    network view minus its own: the same inputs to the same `trust.witness.witness_reports`,
    arranged over the shared engine's indices instead of the node's own. `glob_ppm` is the
    node's last global trust (peers the engine learnt since then have none yet). Sets the
    node's risk map as the node does, and returns its distrusted set."""
    rep, service = node.rep, node.service
    me = engine.intern(node.peer_id)  # in round 0 a node may look before it attested anything
    n = votes.n
    iss, sub, zero = votes.arrays()
    keep = iss != me
    glob = np.zeros(n)
    glob[: len(glob_ppm)] = glob_ppm[:n] / TRUST_SCALE
    local = rep.last_snapshot.local if rep.last_snapshot is not None else {}
    ids = engine.peer_ids
    index = engine.index
    anchors = set(rep.anchors) - {node.peer_id}
    borrowed = anchor_verdicts(item for a in anchors for item in votes.rows.get(a, {}).items())
    own, faulted = own_verdicts(n, index, local, rep.state.counts, borrowed)
    excluded = index_mask(n, index, service._distrusted | rep.state.equivocators | {node.peer_id})
    reports = witness_reports(n, iss[keep], sub[keep], zero[keep], glob, own, excluded)
    out = set(faulted)
    for i in np.flatnonzero((reports.neg > reports.pos) & (glob <= service.trust_floor)):
        if i != me and local.get(ids[i], 0) == 0 and ids[i] not in faulted:
            out.add(ids[i])
    service._risk = {ids[i]: reports.risk(i) for i in np.flatnonzero(reports.neg > 0)}
    return out


__all__ = ["SIM_POLICY", "SimNode", "SimReputation", "SimReputationService", "Vouchnet", "fast_distrust",
           "peer_id_for"]

