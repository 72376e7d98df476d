"""The simulated world shared by every variant of a run: peers, files, queries and the attackers.

The workload follows EigenTrust's simulations (Kamvar et al., WWW 2003, section 7): every
round each peer issues queries for files drawn by popularity; peers holding the file answer;
the querier picks one responder (that is what a variant decides), downloads and rates the
result. Malicious peers claim files the way honest peers share them (or, with `mal_files = 0`,
answer every query) and serve validly signed junk, corrupted chunks, or, depending on the
threat model, authentic content.

Actors and identities. An *actor* is someone taking part: honest actors 0..H-1 (plus the
honest newcomers after them), and malicious *slots* 0..M-1 (an operator). Honest actors keep
one identity for the whole run; a malicious slot's identities may change (sybils, whitewashing),
and that depends on what each variant's peers detect, so identities live in a per-variant
`Population`. Queries name responders by token: an honest actor a is `a`, identity k of slot s
is `-(1 + s * per_slot + k)`.

Everything is drawn from generators seeded with the run's seed, and the same query schedule is
played by every variant (common random numbers), so the variants differ only in their choices.
"""
from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from dataclasses import dataclass
from typing import Any

from overlay.sim.config import SimConfig

HONEST = "honest"
NEWCOMER = "newcomer"
MALICIOUS = "malicious"
SPY = "spy"

GOOD = "good"        # authentic content
JUNK = "junk"        # validly signed junk: Merkle checks pass, only a rating catches it
CORRUPT = "corrupt"  # a chunk failing its Merkle proof: caught at once, the provider is dropped


@dataclass(frozen=True, slots=True)
class Query:
    querier: int            # token (see module doc)
    file: int
    responders: tuple[int, ...]  # tokens, in the order the querier hears them
    seed: int               # for the provider's coin flips


def _rng(seed: int, *labels: object) -> random.Random:
    """A generator for one purpose, independent of every other (string seeds are hashed, stable)."""
    return random.Random(":".join(["vouchnet-sim", str(seed), *map(str, labels)]))


class World:
    """Static parts of a run: roles, holdings, file sizes, and the query schedule."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        rng = _rng(cfg.seed, cfg.peers, cfg.malicious, "world")
        self.n_honest = cfg.n_honest
        self.n_newcomers = cfg.newcomers
        self.n_actors = self.n_honest + self.n_newcomers
        self.n_slots = cfg.n_malicious
        self.per_slot = cfg.sybils if cfg.model == "E" else 1
        # D: the first share of the slots are spies (slots are anonymous, so the order is no hint).
        self.n_spies = int(round(cfg.spies * self.n_slots)) if cfg.model == "D" else 0
        if cfg.model == "D" and self.n_slots >= 2:
            self.n_spies = min(max(self.n_spies, 1), self.n_slots - 1)

        f = cfg.n_files
        weights = [1.0 / (k + 1) ** cfg.zipf for k in range(f)]
        total = sum(weights)
        self.popularity = [w / total for w in weights]
        self._cum = list(itertools.accumulate(self.popularity))
        lo, hi = math.log(cfg.min_chunks), math.log(cfg.max_chunks)
        self.chunks = [int(round(math.exp(rng.uniform(lo, hi)))) for _ in range(f)]

        # Holdings: each honest actor (newcomers too) shares files drawn by popularity, and every
        # file has at least one honest holder from the start (nobody queries for what nobody has).
        per = min(cfg.files_per_peer, f)
        holds = [self._draw_set(rng, per) for _ in range(self.n_actors)]
        held = set().union(*holds[: self.n_honest]) if self.n_honest else set()
        for x in range(f):
            if x not in held:
                holds[rng.randrange(self.n_honest)].add(x)
        self.holds: list[frozenset[int]] = [frozenset(h) for h in holds]
        self.holders: list[list[int]] = [[] for _ in range(f)]
        for a, mine in enumerate(self.holds):
            for x in sorted(mine):
                self.holders[x].append(a)
        self.holders_before = [[a for a in hs if a < self.n_honest] for hs in self.holders]
        self.join = cfg.join_at
        # What malicious slots answer for: `mal_files` files each, drawn by popularity like everyone
        # else's (an attacker wants to be asked), or every query when mal_files is 0.
        self.answer_all = cfg.mal_files == 0
        self.claimers: list[list[int]] = [[] for _ in range(f)]
        if not self.answer_all:
            for s_ in range(self.n_slots):
                for x in sorted(self._draw_set(rng, min(cfg.mal_files, f))):
                    self.claimers[x].append(s_)

        # EigenTrust's pre-trusted peers: honest, chosen at random, known to everybody.
        self.pretrusted = sorted(rng.sample(range(self.n_honest), min(cfg.n_pretrusted, self.n_honest)))
        self._schedule_rng = _rng(cfg.seed, cfg.peers, cfg.malicious, cfg.model, "schedule")

    # -- files -----------------------------------------------------------------------------------

    def _draw_set(self, rng: random.Random, k: int) -> set[int]:
        out: set[int] = set()
        while len(out) < k:
            out.add(self._draw_file(rng))
        return out

    def _draw_file(self, rng: random.Random) -> int:
        return min(bisect.bisect_left(self._cum, rng.random() * self._cum[-1]), len(self._cum) - 1)

    def size(self, file: int) -> int:
        return self.chunks[file] * self.cfg.chunk_bytes

    # -- roles -----------------------------------------------------------------------------------

    def present(self, actor: int, r: int) -> bool:
        return actor < self.n_honest or r >= self.join

    def slot_role(self, slot: int) -> str:
        return SPY if slot < self.n_spies else MALICIOUS

    def token(self, slot: int, k: int = 0) -> int:
        return -(1 + slot * self.per_slot + k)

    def untoken(self, token: int) -> tuple[int, int]:
        """(slot, k) of a malicious token."""
        x = -token - 1
        return divmod(x, self.per_slot)

    def attacking(self, r: int) -> bool:
        """H: is round r in an attack phase? (good_rounds of good behaviour, then bad_rounds of attack)"""
        cfg = self.cfg
        return r % (cfg.good_rounds + cfg.bad_rounds) >= cfg.good_rounds

    def behaviour(self, slot: int, r: int, rng: random.Random) -> str:
        """What a malicious slot serves when chosen as provider in round r."""
        cfg, model = self.cfg, self.cfg.model
        if model == "D" and self.slot_role(slot) == SPY:
            return GOOD
        if model == "C" and rng.random() < cfg.camouflage:
            return GOOD
        if model == "H" and not self.attacking(r):
            return GOOD
        return CORRUPT if rng.random() < cfg.corrupt else JUNK

    # -- schedule --------------------------------------------------------------------------------

    def round_queries(self, r: int) -> list[Query]:
        """The queries of round r, in the order they happen. Call once per round, in order."""
        cfg, rng = self.cfg, self._schedule_rng
        queriers = [a for a in range(self.n_actors) if self.present(a, r)]
        if cfg.malicious_query:
            queriers += [self.token(s) for s in range(self.n_slots)]
        out: list[Query] = []
        for q in queriers:
            for _ in range(cfg.queries):
                out.append(self._query(q, r, rng))
        rng.shuffle(out)
        return out

    def _query(self, querier: int, r: int, rng: random.Random) -> Query:
        cfg = self.cfg
        file = self._draw_file(rng)
        holders = self.holders[file] if r >= self.join else self.holders_before[file]
        own = querier >= 0 and file in self.holds[querier]  # a querier does not answer itself
        n_honest = len(holders) - own
        own_slot = self.untoken(querier)[0] if querier < 0 else -1
        per = self.per_slot
        if self.answer_all:
            slots: Any = None
            n_slots = self.n_slots - (own_slot >= 0)
        else:
            slots = [x for x in self.claimers[file] if x != own_slot]
            n_slots = len(slots)
        n_mal = n_slots * per
        k = min(cfg.max_responses, n_honest + n_mal)
        # Hypergeometric split of the k responders heard, then who exactly: O(k) whatever N is.
        h_left, m_left, n_m = n_honest, n_mal, 0
        for _ in range(k):
            if rng.random() * (h_left + m_left) < m_left:
                n_m += 1
                m_left -= 1
            else:
                h_left -= 1
        n_h = k - n_m
        picked: list[int] = []
        if n_h:
            picked = rng.sample(holders, min(len(holders), n_h + own))
            if own:
                if querier in picked:
                    picked.remove(querier)
                picked = picked[:n_h]
        if n_m:
            for i in rng.sample(range(n_mal), n_m):
                slot, k_ = divmod(i, per)
                if slots is None:
                    slot = slot if own_slot < 0 or slot < own_slot else slot + 1
                else:
                    slot = slots[slot]
                picked.append(self.token(slot, k_))
        rng.shuffle(picked)
        return Query(querier, file, tuple(picked), rng.getrandbits(63))


class Population:
    """One variant's identities: honest actors keep theirs, malicious slots may take new ones.

    Identity numbers are dense: honest actors first (identity a is actor a), then malicious
    identities in the order they appear. The same number names the same key pair in every
    variant (see overlay.sim.vouchnet.peer_id_for), and nothing depends on the numbering.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.kind: list[str] = [HONEST] * world.n_honest + [NEWCOMER] * world.n_newcomers
        self.owner: list[int] = list(range(world.n_actors))  # actor, or slot for malicious identities
        self.born: list[int] = [0] * world.n_honest + [world.join] * world.n_newcomers
        self.slot_ids: list[list[int]] = []
        for s in range(world.n_slots):
            self.slot_ids.append([self._new(s, 0) for _ in range(world.per_slot)])
        self.caught: set[int] = set()   # F: slots that served bad content this round
        self.retired: list[int] = []    # identities abandoned (sybils, whitewashers)

    def _new(self, slot: int, r: int) -> int:
        idx = len(self.kind)
        self.kind.append(self.world.slot_role(slot))
        self.owner.append(slot)
        self.born.append(r)
        return idx

    def is_honest(self, idx: int) -> bool:
        return self.kind[idx] in (HONEST, NEWCOMER)

    def identity(self, token: int) -> int:
        if token >= 0:
            return token
        slot, k = self.world.untoken(token)
        return self.slot_ids[slot][k]

    def start_round(self, r: int) -> None:
        """E: every slot answers with fresh identities; F: slots caught last round rejoin anew."""
        model = self.world.cfg.model
        if model == "E" and r > 0:
            for s in range(self.world.n_slots):
                self.retired += self.slot_ids[s]
                self.slot_ids[s] = [self._new(s, r) for _ in range(self.world.per_slot)]
        elif model == "F":
            for s in sorted(self.caught):
                self.retired += self.slot_ids[s]
                self.slot_ids[s] = [self._new(s, r)]
        self.caught.clear()

    def opinions(self, r: int) -> list[tuple[int, dict[int, float]]]:
        """The trust each malicious identity claims this round, as (issuer, {subject: value}).

        Collectives vouch in a ring: each member for the next `vouch_degree` members (trust is
        normalised per issuer, so vouching for all members retains no more trust in the
        collective than vouching for some; the ring keeps the cost linear in N). Slanderers give
        a signed zero to `slander_targets` honest peers each, spread the same way.
        """
        w, cfg, model = self.world, self.world.cfg, self.world.cfg.model
        out: list[tuple[int, dict[int, float]]] = []

        def ring(members: list[int], pos: int, d: int, skip: int | None = None) -> dict[int, float]:
            n = len(members)
            picks = [members[(pos + k) % n] for k in range(1, min(d, n - 1) + 1)] if skip is not None else \
                [members[(pos + k) % n] for k in range(min(d, n))]
            return {j: 1.0 for j in picks if j != skip}

        if model in ("B", "C", "H", "G"):
            current = [i for ids in self.slot_ids for i in ids]
            honest = [a for a in range(w.n_actors) if w.present(a, r)]
            for p, i in enumerate(current):
                row = ring(current, p, cfg.vouch_degree, skip=i)
                if model == "G" and honest:
                    start = (p * cfg.slander_targets) % len(honest)
                    for k in range(min(cfg.slander_targets, len(honest))):
                        row[honest[(start + k) % len(honest)]] = 0.0
                out.append((i, row))
        elif model == "D":
            spies = [self.slot_ids[s][0] for s in range(w.n_spies)]
            bees = [self.slot_ids[s][0] for s in range(w.n_spies, w.n_slots)]
            for p, i in enumerate(spies):
                out.append((i, ring(bees, p * cfg.vouch_degree, cfg.vouch_degree)))
            for p, i in enumerate(bees):
                out.append((i, ring(bees, p, cfg.vouch_degree, skip=i)))
        elif model == "E":
            for ids in self.slot_ids:
                for i in ids:
                    out.append((i, {j: 1.0 for j in ids if j != i}))
        return out


def identity_seed(seed: int, idx: int) -> bytes:
    """The 32-byte Ed25519 seed of identity number idx in runs with this seed."""
    return hashlib.sha256(f"vouchnet-sim:{seed}:identity:{idx}".encode()).digest()
