"""What a simulation run is: its parameters, the threat models and the provider-choice variants.

Every number here is documented in docs/evaluation.md ("Method"). The defaults are what
`vouchnet sim` and the published sweep use.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

MODELS: dict[str, str] = {
    "A": "independent malicious peers: serve junk or corrupted chunks, attest nothing",
    "B": "malicious collective: serve junk, attest full trust in each other",
    "C": "camouflaged collective: as B, but serve authentic content a fraction f of the time",
    "D": "spies: one group serves authentic content and vouches for the other, which serves junk",
    "E": "sybil flood: every operator answers with fresh identities each round; they vouch for each other",
    "F": "whitewashing: a peer that served junk leaves and rejoins with a new identity",
    "G": "slander: a junk-serving collective that also attests zero trust in every honest peer",
    "H": "oscillation: a collective serves authentic content to build trust, then attacks, in cycles",
}

VARIANTS: tuple[str, ...] = ("none", "local", "eigentrust", "vouchnet")

VARIANT_HELP: dict[str, str] = {
    "none": "no reputation: a random responder",
    "local": "GossipSub-style first-hand scoring only (decaying counters, squared penalties, graylist)",
    "eigentrust": "plain EigenTrust: sat-unsat, one global pre-trusted set, probabilistic choice",
    "vouchnet": "personalised trust, the node's distrust rule, a policy with newcomer quarantine",
}

SWEEP_FRACTIONS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

SIGNATURE_LIMIT = 1000  # above this many peers attestations travel unsigned by default (see docs)
OBSERVER_LIMIT = 1000   # above this many peers only a sample of honest peers runs full vouchnet


@dataclass(frozen=True)
class SimConfig:
    """One run: one threat model at one malicious fraction, all variants on the same world."""

    model: str = "A"
    malicious: float = 0.4          # fraction of the initial peers that are malicious
    seed: int = 1
    peers: int = 100                # initial peers (honest + malicious)
    rounds: int = 30
    queries: int = 2                # queries per peer per round
    files: int = 0                  # catalogue size; 0 = max(100, peers)
    files_per_peer: int = 10        # files each honest peer shares, drawn by popularity
    mal_files: int = 10             # files each malicious peer claims to have; 0 = answers every query
    zipf: float = 0.8               # file popularity ~ 1 / rank^zipf, for queries and replicas
    max_responses: int = 20         # responders a querier hears from (a DHT lookup returns <= 20)
    min_chunks: int = 4             # file sizes: log-uniform in [min_chunks, max_chunks] chunks
    max_chunks: int = 256
    chunk_bytes: int = 256 * 1024   # the node's default chunk size
    corrupt_waste: int = 48         # chunks in flight when a corrupted one is caught (3 x 16)
    corrupt: float = 0.25           # share of malicious serves that are corrupted chunks, not junk
    camouflage: float = 0.5         # C: share of serves that are authentic
    spies: float = 0.5              # D: share of malicious peers that are spies
    sybils: int = 3                 # E: fresh identities per operator per round
    good_rounds: int = 10           # H: rounds of good behaviour, then
    bad_rounds: int = 5             # H: rounds of attack, repeated
    vouch_degree: int = 20          # collectives: members each malicious identity vouches for
    slander_targets: int = 50       # G: honest peers each liar attests zero for
    malicious_query: bool = True    # malicious peers download too (as in EigenTrust's simulations)
    newcomers: int = 5              # honest newcomers joining at round `join_round`
    join_round: int = -1            # -1 = rounds // 3
    pretrusted: int = 0             # EigenTrust's global pre-trusted set; 0 = max(3, 3% of peers)
    explore: float = 0.1            # EigenTrust: chance of trying a zero-trust responder
    damping: float = 0.15           # EigenTrust's a
    vn_damping: float = 0.5        # vouchnet reputation.damping (the node's config key)
    anchors: int = 1                # vouchnet reputation.anchors: honest peers each peer knows out of band
    trust_floor: float = 0.0        # vouchnet reputation.trust_floor (the node's config key)
    exempt_global: float = 0.0      # vouchnet policy newcomer_quarantine.exempt_global; 0 = 0.02 / peers
    round_seconds: int = 3600       # simulated time per round
    signatures: bool | None = None  # None = real signatures up to SIGNATURE_LIMIT peers
    observers: int = 0              # vouchnet peers measured at large N; 0 = all up to OBSERVER_LIMIT
    variants: tuple[str, ...] = VARIANTS
    # What-if experiments, NOT the node's behaviour (docs/evaluation.md, "What would help"):
    served_credit: bool = True      # False: providers do not record SERVED evidence (no trust for leeching)

    def __post_init__(self) -> None:
        problems = []
        if self.model not in MODELS:
            problems.append(f"model must be one of {', '.join(MODELS)}, got {self.model!r}")
        if not (isinstance(self.malicious, (int, float)) and 0.0 <= self.malicious < 1.0):
            problems.append(f"malicious must be a fraction in [0, 1), got {self.malicious!r}")
        if not 10 <= self.peers <= 10_000:
            problems.append(f"peers must be between 10 and 10000, got {self.peers}")
        if not 1 <= self.rounds <= 10_000:
            problems.append(f"rounds must be between 1 and 10000, got {self.rounds}")
        if self.queries < 1:
            problems.append("queries must be >= 1")
        for name in ("corrupt", "camouflage", "spies", "explore"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {v!r}")
        if not (0.0 < self.damping <= 1.0 and 0.0 < self.vn_damping <= 1.0):
            problems.append("damping and vn_damping must be in (0, 1]")
        if not 0.0 <= self.trust_floor < 1.0:
            problems.append("trust_floor must be in [0, 1)")
        if not 1 <= self.min_chunks <= self.max_chunks:
            problems.append("need 1 <= min_chunks <= max_chunks")
        if not 0 <= self.anchors <= 20:
            problems.append(f"anchors must be between 0 and 20, got {self.anchors}")
        if self.sybils < 1 or self.good_rounds < 1 or self.bad_rounds < 1:
            problems.append("sybils, good_rounds and bad_rounds must be >= 1")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            problems.append(f"variants must be among {', '.join(VARIANTS)}, got {self.variants!r}")
        if problems:
            raise ValueError("; ".join(problems))

    # -- derived values -------------------------------------------------------------------------

    @property
    def n_malicious(self) -> int:
        n = int(round(self.malicious * self.peers))
        return min(n, self.peers - 1)

    @property
    def n_honest(self) -> int:
        return self.peers - self.n_malicious

    @property
    def n_files(self) -> int:
        return self.files or max(100, self.peers)

    @property
    def join_at(self) -> int:
        return self.rounds // 3 if self.join_round < 0 else self.join_round

    @property
    def n_pretrusted(self) -> int:
        return self.pretrusted or max(3, int(math.ceil(0.03 * self.peers)))

    @property
    def exempt_global_value(self) -> float:
        """A fiftieth of the average global trust (1/N): vouched for by someone, not just present."""
        return self.exempt_global or round(0.02 / self.peers, 8)

    @property
    def signed(self) -> bool:
        return self.peers <= SIGNATURE_LIMIT if self.signatures is None else bool(self.signatures)

    @property
    def n_observers(self) -> int:
        """Honest peers that run the full vouchnet stack (all of them unless N is large)."""
        if self.observers:
            return min(self.observers, self.n_honest)
        return self.n_honest if self.peers <= OBSERVER_LIMIT else min(200, self.n_honest)

    def replace(self, **changes) -> "SimConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["variants"] = list(self.variants)
        d["signatures"] = self.signed
        d["observers"] = self.n_observers
        d["files"] = self.n_files
        d["join_round"] = self.join_at
        d["pretrusted"] = self.n_pretrusted
        d["exempt_global"] = self.exempt_global_value
        return d
