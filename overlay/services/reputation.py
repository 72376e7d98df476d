"""The node's reputation loop: ledger, trust computation, attestations and heads over gossip.

Evidence enters through `record`/`rate`; every `interval` seconds, if anything changed, the
node recomputes trust (a snapshot goes to the ledger), signs attestations for peers whose
local trust moved, signs a new ledger head, and gossips both. Signing a head fsyncs, and so
does a WAL checkpoint: both run in a worker thread (the ledger is thread-safe, and its fsyncs
hold no lock the event loop's ledger writes need), so serving goes on meanwhile. Received
attestations, heads and equivocation proofs are verified and passed through the trust and
policy gates (gossip validators: a refused record is neither delivered nor relayed), checked
for replay and equivocation, then against the per-issuer intake caps (trust/intake.py), and
written to the ledger before they count. The caps apply here, after delivery, not in the
validators: a validator's refusal counts as an invalid message against the forwarder, who
may be an honest peer relaying someone else's flood; each node caps by its own view.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import trio

from overlay.net.gossip import TOPIC_ATTESTATIONS, TOPIC_HEADS, Gossip, GossipParams
from overlay.metrics import Metrics
from trust.attestation import Attestation, Equivocation, TreeHead, open_tree_head
from trust.intake import Intake, IntakeLimits
from trust.ledger import Ledger
from trust.observations import Observation
from trust.reputation import Reputation
from trust.witness import anchor_verdicts, index_mask, own_verdicts, witness_reports

log = logging.getLogger("vouchnet.reputation")

LEDGER_FILE = "ledger.db"


class ReputationService:
    def __init__(self, home: Path, identity: Any, *, anchors: Iterable[str] = (), damping: float = 0.15,
                 interval: float = 2.0, trust_floor: float = 0.0, metrics: Metrics | None = None,
                 intake: IntakeLimits | None = None):
        self.ledger = Ledger(Path(home) / LEDGER_FILE, identity, background_checkpoints=True)
        # Per-issuer caps on what gossip makes this node keep (issue 10, finding 4).
        self.intake = Intake(intake or IntakeLimits(), on_drop=metrics.count_gossip_dropped if metrics else None)
        self.rep = Reputation(self.ledger, identity, anchors=anchors, damping=damping, intake=self.intake)
        self.interval = interval
        self.trust_floor = trust_floor
        self.gossip: Gossip | None = None
        self.metrics = metrics
        self.dirty = True
        self._distrusted: set[str] = set()
        self._risk: dict[str, float] = {}  # peer -> share of credible witness weight reporting a fault
        self._head_size = -1
        self.stats = {"attestations_in": 0, "attestations_out": 0, "heads_in": 0, "equivocations": 0, "replays": 0}
        self.policy: Any = None  # overlay.services.policy.PolicyService, set by the node
        self._gated = False  # the gossip validators ask accept_record (else the handlers do)

    def close(self) -> None:
        self.ledger.close()

    # -- evidence (called by the node) ---------------------------------------------------------

    def record(self, *obs: Observation) -> None:
        self.rep.record(*obs)
        self.dirty = True

    def rate(self, cid: str, verdict: str, publisher: str, providers: Iterable[str], reason: str) -> int:
        idx = self.rep.rate(cid, verdict, publisher, providers, reason)
        self.dirty = True
        return idx

    # -- trust queries -------------------------------------------------------------------------

    def distrusted(self, peer: str) -> bool:
        """Peers not to fetch from or accept gossip from (see _refresh_distrust)."""
        return peer in self.rep.state.equivocators or peer in self._distrusted

    def _refresh_distrust(self) -> None:
        """Recompute, once per trust computation, whom this node refuses to deal with and how
        risky each remaining peer looks (trust/witness.py).

        A peer is distrusted when it equivocated; or when this node holds proven faults of
        its own (a chunk failing its proof, a forged manifest, content rated bad) that keep its
        local trust at zero; or when it has no local trust here and credible witnesses report
        it faulty with more weight than they vouch for it (and its global trust is at or below
        `trust_floor`). A peer with any credible fault report is tried only after every peer
        without one (`rank`).
        """
        rep = self.rep
        received = rep.state.received
        peers = sorted({p for key in received for p in key} | set(rep.state.counts) | {rep.peer_id})
        index = {p: i for i, p in enumerate(peers)}
        n = len(peers)
        glob = np.fromiter((rep.trust_of(p)[1] for p in peers), dtype=np.float64, count=n)
        local = rep.last_snapshot.local if rep.last_snapshot else {}
        anchors = set(rep.anchors) - {rep.peer_id}
        borrowed = anchor_verdicts((j, ra.att.value) for (i, j), ra in received.items() if i in anchors)
        own, faulted = own_verdicts(n, index, local, rep.state.counts, borrowed)
        excluded = index_mask(n, index, self._distrusted | rep.state.equivocators | {rep.peer_id})
        keys = list(received)
        reports = witness_reports(
            n, np.fromiter((index[i] for i, _ in keys), dtype=np.int64, count=len(keys)),
            np.fromiter((index[j] for _, j in keys), dtype=np.int64, count=len(keys)),
            np.fromiter((received[k].att.value == 0 for k in keys), dtype=bool, count=len(keys)),
            glob, own, excluded)
        out = set(faulted)
        for i, p in enumerate(peers):
            if local.get(p, 0) > 0 or p in faulted or p == rep.peer_id or glob[i] > self.trust_floor:
                continue
            if reports.neg[i] > reports.pos[i]:
                out.add(p)
        self._risk = {p: reports.risk(i) for i, p in enumerate(peers) if reports.neg[i] > 0}
        if self.gossip is not None and self.gossip.is_running:
            # Below the floor: GossipSub's score alone does not stop a graylisted peer's
            # messages in py-libp2p 0.8, so cut it off at the pubsub layer too.
            for peer in out - self._distrusted:
                self.gossip.blacklist(peer)
            for peer in self._distrusted - out - rep.state.equivocators:
                self.gossip.unblacklist(peer)
        self._distrusted = out

    def accept_origin(self, origin: str) -> bool:
        """Gossip validator gate (delivery and forwarding): not distrusted, and relay_gossip allowed."""
        if self.distrusted(origin):
            return False
        return self.policy is None or self.policy.allows("relay_gossip", origin)

    def accept_record(self, topic: str, record: Any, origin: str) -> bool:
        """Gossip validator gate on an attestation or a head (delivery and forwarding): the
        policy's accept_attestation / accept_head, asked once per message. Equivocation proofs
        are not asked: a policy about a peer must not stop the proof against it."""
        if self.policy is None:
            return True
        if topic == TOPIC_ATTESTATIONS:
            return self.policy.allows("accept_attestation", origin, publisher=record.issuer)
        if topic == TOPIC_HEADS:
            return self.policy.allows("accept_head", origin, publisher=record.issuer)
        return True

    def app_score(self, peer: str) -> float:
        if peer in self.rep.state.equivocators:
            return -1000.0
        return 100.0 * self.rep.trust_of(peer)[1]

    def risk(self, peer: str) -> float:
        """Share of credible witness weight reporting this peer faulty (0: nobody credible did)."""
        return self._risk.get(peer, 0.0)

    def tier(self, peer: str) -> int:
        """Provider tier for `PolicyService.choose_providers`: 1 if anyone credible reports a fault."""
        return int(peer in self._risk)

    def rank(self, peers: list[str]) -> list[str]:
        """Fetch order: drop distrusted peers; peers no credible witness reports faulty first,
        then the others by rising share of fault reports; within each, most trusted first, so
        unknown peers (newcomers) come last."""
        keep = [p for p in peers if not self.distrusted(p)]
        return sorted(keep, key=lambda p: (self.risk(p), -self.rep.trust_of(p)[1]))

    # -- gossip ----------------------------------------------------------------------------------

    async def run(self, host: Any, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self.gossip = Gossip(host, params=GossipParams(), accept_origin=self.accept_origin,
                             accept_record=self.accept_record, app_score=self.app_score,
                             on_attestation=self._on_attestation, on_equivocation=self._on_equivocation,
                             on_head=self._on_head, metrics=self.metrics)
        self._gated = True
        async with self.gossip.running():
            for peer in self.rep.state.equivocators:
                self.gossip.blacklist(peer)
            task_status.started()
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("reputation tick failed")
                await trio.sleep(self.interval)

    async def tick(self, now: float | None = None) -> None:
        if self.dirty:
            self.dirty = False
            self.rep.compute(now)
            self._refresh_distrust()
            envs = self.rep.issue_attestations(now)
            for env in envs:
                await self._publish("attestation", env)
            self.stats["attestations_out"] += len(envs)
        if self.ledger.size != self._head_size:
            # Not abandoned on cancel: the node closes the ledger only after this returns.
            env = await trio.to_thread.run_sync(self.ledger.sign_head)
            # Entries the loop appended while the thread ran are left for the next head.
            self._head_size = open_tree_head(env).size
            await self._publish("head", env)
        if self.ledger.checkpoint_due:
            await trio.to_thread.run_sync(self.ledger.checkpoint)

    async def _publish(self, what: str, data: Any) -> None:
        if self.gossip is None:
            return
        try:
            if what == "attestation":
                await self.gossip.publish_attestation(data)
            elif what == "head":
                await self.gossip.publish_head(data)
            else:
                await self.gossip.publish_equivocation(data)
        except Exception as exc:  # no peers yet, or a closing host: the next tick retries heads
            log.debug("could not publish %s: %s", what, exc)

    def _on_attestation(self, att: Attestation, envelope: bytes, origin: str) -> None:
        if not self._gated and not self.accept_record(TOPIC_ATTESTATIONS, att, origin):
            return
        outcome, eq = self.rep.receive_attestation(envelope)
        self.stats["attestations_in"] += 1
        if outcome in ("old", "duplicate"):
            self.stats["replays"] += 1
        if outcome in ("accepted", "replaced"):
            self.dirty = True
        if eq is not None:
            self._equivocation_found(eq)

    def _on_equivocation(self, eq: Equivocation, origin: str) -> None:
        if self.rep.receive_equivocation(eq):
            self.ledger.record_equivocation(eq)
            self._equivocation_found(eq, publish=False)  # gossip forwards it already

    def _on_head(self, head: TreeHead, envelope: bytes, origin: str) -> None:
        if not self._gated and not self.accept_record(TOPIC_HEADS, head, origin):
            return
        trusted = self.rep.is_trusted(head.issuer)
        if self.intake.admit_head(head.issuer, trusted) is not None:
            return  # over its rate: dropped, counted by the intake
        self.stats["heads_in"] += 1
        eq = self.ledger.add_peer_head(envelope)
        self.intake.heads_evicted(self.ledger.prune_peer_heads(head.issuer, self.intake.heads_kept(trusted)))
        if eq is not None and self.rep.receive_equivocation(eq):
            self._equivocation_found(eq)

    def _equivocation_found(self, eq: Equivocation, publish: bool = True) -> None:
        self.stats["equivocations"] += 1
        self.dirty = True
        log.warning("peer %s equivocated (%s): distrusted from now on", eq.issuer, eq.kind)
        if self.gossip is not None:
            self.gossip.blacklist(eq.issuer)
            if publish:
                trio.lowlevel.spawn_system_task(self._publish, "equivocation", eq)

    def snapshot_age(self) -> float | None:
        s = self.rep.last_snapshot
        return None if s is None else time.time() - s.at_ms / 1000
