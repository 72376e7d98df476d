"""In-memory stand-in for the reputation gossip: attestations travel as signed bytes between peers.

`Gossip.publish` is what a peer's `ReputationService._publish("attestation", env)` does on the
real network. Each envelope is verified once, here, with the node's own `open_attestation` (the
gossip validator's check: signature, strict decoding, issuer = origin), then offered to every
subscribed peer in publication order. Verifying once instead of once per receiver gives every
receiver the same answer at 1/N of the cost: a signature check is deterministic.

The transport also keeps the *network view*: the latest accepted attestation per (issuer,
subject), with the same replay and equivocation rules as `Reputation.receive_attestation`
(higher sequence replaces lower; older and identical ones are dropped; two different ones for
one slot are an equivocation proof). Peers that were online from the start have received
exactly this view (gossip is reliable in memory and they accept every origin they do not
distrust), which is what lets the simulator build one trust matrix per round for all of them
(see overlay/sim/vouchnet.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from trust import encoding
from trust.attestation import Attestation, Equivocation, check_equivocation, open_attestation
from trust.errors import SignatureError
from trust.reputation import ReceivedAttestation
from trust.signing import open_envelope


@dataclass
class GossipStats:
    published: int = 0      # envelopes offered by their issuers
    accepted: int = 0       # new or replacing attestations
    dropped: int = 0        # replays, old sequence numbers, duplicates
    equivocations: int = 0
    bytes: int = 0          # envelope bytes published (each is delivered to every subscriber)


@dataclass
class Gossip:
    signed: bool = True
    latest: dict[tuple[str, str], ReceivedAttestation] = field(default_factory=dict)
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # issuer -> {subject: trust}
    changed: dict[str, None] = field(default_factory=dict)           # issuers whose row changed (ordered)
    equivocators: set[str] = field(default_factory=set)
    proofs: list[Equivocation] = field(default_factory=list)
    round_log: list[tuple[Attestation, bytes]] = field(default_factory=list)  # accepted this round
    stats: GossipStats = field(default_factory=GossipStats)
    _seq: int = 0

    def publish(self, data: bytes | Attestation, att: Attestation | None = None,
                public_key: bytes | None = None) -> str:
        """Offer one attestation: an envelope, or a bare record when signatures are off.

        An envelope alone is opened with `open_attestation` (the gossip validator's check). An
        envelope with the record its issuer built (`att`) and the issuer's key has its signature
        verified by `open_envelope` and its payload compared with the record's canonical
        encoding: the same guarantee, without re-validating fields the issuer's code produced.
        """
        self.stats.published += 1
        if isinstance(data, Attestation):
            att, env = data, b""
        elif att is None:
            att, env = open_attestation(data), data  # raises on a bad signature or record
        else:
            env = data
            opened = open_envelope(env, tag=Attestation.TAG, record_version=Attestation.VERSION,
                                   max_size=Attestation.MAX_SIZE)
            if opened.public_key != public_key or opened.payload != encoding.encode(att.to_dict()):
                raise SignatureError(f"envelope does not carry the attestation {att.issuer} built")
        if env:
            self.stats.bytes += len(env)
        key = (att.issuer, att.subject)
        prev = self.latest.get(key)
        if prev is not None:
            if att.seq < prev.att.seq or prev.att == att:
                self.stats.dropped += 1
                return "old" if att.seq < prev.att.seq else "duplicate"
            if att.seq == prev.att.seq:
                if env and prev.envelope:
                    self.proofs.append(check_equivocation(prev.envelope, env, Attestation.TAG))
                self.equivocators.add(att.issuer)
                self.stats.equivocations += 1
                return "equivocation"
        self._seq += 1
        self.latest[key] = ReceivedAttestation(att, env, self._seq)
        self.rows.setdefault(att.issuer, {})[att.subject] = att.trust
        self.changed[att.issuer] = None
        self.round_log.append((att, env))
        self.stats.accepted += 1
        return "replaced" if prev is not None else "accepted"

    def take_round(self) -> tuple[list[str], list[tuple[Attestation, bytes]]]:
        """(issuers whose rows changed, attestations accepted) since the last call."""
        changed, log = list(self.changed), self.round_log
        self.changed, self.round_log = {}, []
        return changed, log
