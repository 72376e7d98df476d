"""`vouchnet sim --real`: the simulator's questions, asked of real node processes on 127.0.0.1.

N real nodes (``vouchnet node run``; the adversaries are ``python -m tests.adversary``, real
nodes whose serving path or gossip lies) over TCP + Noise + Yamux, GossipSub, Kademlia and
SQLite. Publishers share one new file per round; every adversary holds the same CIDs
(``overlay.lab.localnet.clone_content``); every honest node fetches one file per round through its
control socket, offered every holder's address in random order (what a DHT lookup returns),
with reputation ticks in between. The run is bounded by ``time_limit`` and every process is
stopped afterwards, also on errors, Ctrl-C and SIGTERM.

What it measures (docs/evaluation.md, "Real-network check", has the method in full):

- inauthentic data accepted: each fetched output compared byte for byte with the
  publisher's file (must be zero);
- wasted bandwidth: chunks honest nodes received and refused (their ledgers' ``chunk_invalid``
  counts) against all chunks received;
- per adversary: fetches that asked it, round by round; when every honest node distrusted it
  (polling each node's ``trust`` op); whether any fetch asked it after that;
- gossip propagation: for each attestation an honest node issued, the time until 99% of the
  other honest nodes had it (or a newer one), from the ms timestamps of the issuer's
  ``attestation-issued`` and the receivers' ``attestation-received`` ledger entries;
- gossip overhead: RPCs, messages and bytes sent and received per node per minute, from the
  nodes' Prometheus counters (``vouchnet_gossip_*``).
"""
from __future__ import annotations

import hashlib
import http.client
import math
import os
import random
import shutil
import signal
import socket
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from overlay.node.control import ControlError, NodeNotRunning, call, call_pages
from overlay.lab.localnet import LISTEN, REPO, NodeProc, clone_content, init_home, spawn_node, stop_all, wait_ready

ADVERSARY_MODES = ("corrupt", "wrong_index", "forged_manifest", "foreign_manifest", "oversized", "malformed", "stall",
                   "equivocate")  # tests/adversary.py's modes but partial
DEFAULT_MODES = ("corrupt", "wrong_index", "equivocate", "stall")
LATE_ISSUE_S = 3.0  # attestations issued this close to the end are not measured (no time to spread)
QUIET_RATE = 1.0    # gossip messages a second received by the median honest node: below this, quiet


class RealnetError(RuntimeError):
    pass


@dataclass(frozen=True)
class RealnetConfig:
    nodes: int = 24
    adversaries: int = 4
    publishers: int = 3
    rounds: int = 2
    seed: int = 1
    modes: tuple[str, ...] = DEFAULT_MODES  # adversary k runs modes[k % len(modes)]
    links: int = 3                  # peers each node dials once all are up (random, seeded)
    chunk_size: int = 32 * 1024
    chunks_per_file: int = 24
    reputation_interval: float = 1.0  # the node's default is 2 s
    request_timeout: float = 10.0     # the node's default; a stalled batch costs this much
    parallel_fetches: int = 4         # fetches under way at once (the runner's, not a node limit)
    poll_interval: float = 0.5      # pause between two sweeps of the distrust poll
    warmup: float = 60.0            # before the first round: wait at most this long for gossip to go quiet
    between_rounds: float = 20.0    # ... and between rounds
    settle: float = 15.0            # after the last round: wait at most this long for distrust to settle
    time_limit: float = 420.0
    reserve: float = 45.0           # kept from the time limit for the last measurements and stopping every node
    workdir: Path | None = None     # kept afterwards; default: a temporary folder, removed

    def __post_init__(self) -> None:
        if min(self.publishers, self.rounds, self.links, self.parallel_fetches) < 1 or self.adversaries < 0:
            raise ValueError("need adversaries >= 0 and publishers, rounds, links, parallel_fetches >= 1")
        if self.nodes - self.adversaries < self.publishers + 1:
            raise ValueError(f"{self.nodes} nodes leave too few honest ones for {self.publishers} publisher(s) "
                             f"and at least one other honest node")
        bad = [m for m in self.modes if m not in ADVERSARY_MODES]
        if bad or not self.modes:
            raise ValueError(f"adversary modes must be among {', '.join(ADVERSARY_MODES)}")
        if not (self.time_limit > self.reserve > 0 and self.poll_interval > 0
                and min(self.settle, self.warmup, self.between_rounds) >= 0):
            raise ValueError("need time_limit > reserve > 0, poll_interval > 0 and waits >= 0")

    @property
    def honest(self) -> int:
        return self.nodes - self.adversaries

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["workdir"] = str(self.workdir) if self.workdir else None
        d["modes"] = list(self.modes)
        return d


@dataclass
class Member:
    name: str
    role: str  # publisher | honest | adversary
    home: Path
    mode: str = ""
    metrics_port: int = 0
    proc: NodeProc | None = None

    @property
    def peer_id(self) -> str:
        return self.proc.peer_id if self.proc else ""

    @property
    def addr(self) -> str:
        return self.proc.addr if self.proc else ""


@dataclass
class FetchRecord:
    round: int
    node: str
    cid: str
    started_s: float      # since the network was up
    seconds: float
    ok: bool
    authentic: bool       # output identical to the publisher's file
    asked: list[str]      # adversaries among the providers the fetch used
    skipped: list[str]    # adversaries the node skipped as distrusted
    refused: list[str]    # adversaries its policy refused (proven equivocators): skipped by the node
    publisher_skipped: bool = False  # the fetcher distrusted the honest publisher (a false positive)
    error: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # the node's own timing of the fetch op


@dataclass
class RoundStats:
    round: int
    started_s: float
    seconds: float
    fetches: int
    failed: int
    asked_adversary: int  # fetches that used at least one adversary
    publisher_skipped: int


@dataclass
class AdversaryOutcome:
    name: str
    mode: str
    peer_id: str
    asked_by_round: list[int]
    skipped_by_round: list[int]   # fetches that skipped it as distrusted or refused to dial it
    bad_chunks: int          # chunks honest nodes received from it and refused
    authentic_chunks: int    # chunks from it that verified (stall, equivocate serve real data)
    timeouts: int
    distrusted_by: int       # honest nodes distrusting it at the end
    honest: int
    first_distrusted_s: float | None
    all_distrusted_s: float | None   # first poll in which every honest node distrusted it
    all_distrusted_round: int | None  # the round under way then (0: before the first)
    asked_after_all_distrusted: int  # fetches started after that which still used it
    distrust_lost: list[str] = field(default_factory=list)  # "node@t": an honest node stopped distrusting it

    @property
    def stopped(self) -> bool:
        return self.all_distrusted_s is not None and self.asked_after_all_distrusted == 0


@dataclass
class Propagation:
    method: str
    receivers: int
    attestations: int        # issued by honest nodes and measured
    reached: int             # ... that reached >= 99% of the receivers
    t50_median_ms: float | None  # median over attestations of the time to half the receivers
    t99_median_ms: float | None
    t99_p90_ms: float | None
    t99_max_ms: float | None
    min_coverage: float      # smallest share of receivers any measured attestation reached
    missed: int              # (attestation, receiver) pairs never received
    missed_by_distrusting: int  # ... where the receiver distrusted the issuer at some poll


@dataclass
class Spread:
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, xs: list[float]) -> "Spread":
        return cls(statistics.fmean(xs), min(xs), max(xs)) if xs else cls(0.0, 0.0, 0.0)


@dataclass
class Overhead:
    window_s: float
    nodes: int               # honest nodes whose counters were read at both ends
    rpcs_sent: Spread        # all per node per minute
    rpcs_received: Spread
    messages_sent: Spread
    messages_received: Spread
    bytes_sent: Spread
    bytes_received: Spread
    cpu_cores: float | None  # CPU used by all node processes together (Linux /proc), in cores


@dataclass
class RealnetResult:
    config: dict[str, Any]
    wall_s: float
    phases_s: dict[str, float]
    connect_failures: int
    fetches: int
    fetches_ok: int
    inauthentic_accepted: int    # completed fetches whose output differs from the publisher's file
    chunks_verified: int
    chunks_from_adversaries: int
    bad_chunks: int
    bad_chunks_from_honest: int
    wasted_fraction: float       # refused chunks / all chunks received (same size: also bytes)
    fetches_asking_adversary: int
    fetches_publisher_skipped: int  # the fetcher distrusted the honest publisher (false positive)
    honest_distrusted: list[list[str]]  # (honest node, honest peer) pairs distrusted at the end
    honest_distrusted_ever: int         # how many pairs were at any poll
    # first-hand evidence honest nodes hold against those honest peers, summed: peer -> kind -> count
    honest_distrusted_evidence: dict[str, dict[str, int]]
    poll_resolution_s: float     # mean time between two polls of the same node
    fetch_phases_median_s: dict[str, float]  # completed fetches: median seconds per step of the node's fetch op
    rounds: list[RoundStats]
    adversaries: list[AdversaryOutcome]
    propagation: Propagation
    overhead: Overhead
    fetch_log: list[FetchRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for a, row in zip(self.adversaries, d["adversaries"]):
            row["stopped"] = a.stopped
        return d


# -- the run ------------------------------------------------------------------------------------


class _DistrustPoll(threading.Thread):
    """Sweeps every honest node's ``trust`` op; notes whom it distrusts, and since when."""

    def __init__(self, members: list[Member], t0: float, pause: float) -> None:
        super().__init__(name="distrust-poll", daemon=True)
        self.members, self.t0, self.pause = members, t0, pause
        self.honest = [m for m in members if m.role != "adversary"]
        self.adversaries = [m for m in members if m.role == "adversary"]
        self.halt = threading.Event()
        self.state: dict[tuple[str, str], bool] = {}  # (honest node, peer) -> distrusted at the last poll
        self.first: dict[tuple[str, str], float] = {}
        self.lost: dict[tuple[str, str], list[float]] = {}  # (honest node, peer) -> when it stopped distrusting
        self.all_at: dict[str, float] = {}  # adversary -> first sweep in which every honest node distrusted it
        self.sweeps: list[float] = []

    def run(self) -> None:
        while not self.halt.is_set():
            self.sweeps.append(time.monotonic())
            for h in self.honest:
                try:
                    out = _distrusted_by(h)
                except (ControlError, NodeNotRunning, OSError, ValueError):
                    continue
                now = time.monotonic() - self.t0
                for m in self.members:
                    if m is not h:
                        key = (h.name, m.name)
                        was = self.state.get(key, False)
                        self.state[key] = m.peer_id in out
                        if was and not self.state[key]:
                            self.lost.setdefault(key, []).append(now)
                        if self.state[key]:
                            self.first.setdefault(key, now)
            now = time.monotonic() - self.t0
            for a in self.adversaries:
                if a.name not in self.all_at and all(self.state.get((h.name, a.name)) for h in self.honest):
                    self.all_at[a.name] = now
            self.halt.wait(self.pause)

    def false_positives(self) -> tuple[list[list[str]], int]:
        """(honest node, honest peer) pairs distrusted at the end, and how many ever were."""
        honest = {m.name for m in self.honest}
        pairs = sorted(k for k in self.first if k[1] in honest)
        return [list(k) for k in pairs if self.state.get(k)], len(pairs)

    def settled(self) -> bool:
        return all(a.name in self.all_at for a in self.adversaries)

    def resolution(self) -> float:
        gaps = [b - a for a, b in zip(self.sweeps, self.sweeps[1:])]
        return statistics.fmean(gaps) if gaps else math.nan


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop every node."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_real(cfg: RealnetConfig, progress: Callable[[str], None] | None = None) -> RealnetResult:
    """Run the scenario; every node process is stopped before this returns or raises."""
    if not (REPO / "tests" / "adversary.py").is_file():
        raise RealnetError(f"the adversaries come from tests/adversary.py, which is not in {REPO}: run from a checkout")
    say = progress or (lambda _msg: None)
    t_start = time.monotonic()
    workdir = cfg.workdir or Path(tempfile.mkdtemp(prefix="vn-real-"))
    workdir.mkdir(parents=True, exist_ok=True)
    members: list[Member] = []
    ok = False
    try:
        with _sigterm_as_interrupt():
            result = _Run(cfg, workdir, members, say, t_start).run()
        ok = True
        return result
    finally:
        stop_all([m.proc for m in members if m.proc])
        if cfg.workdir is None and ok:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            say(f"node homes and logs kept in {workdir}")


class _Run:
    def __init__(self, cfg: RealnetConfig, workdir: Path, members: list[Member], say: Callable[[str], None],
                 t_start: float) -> None:
        self.cfg, self.workdir, self.members, self.say, self.t_start = cfg, workdir, members, say, t_start
        self.end = t_start + cfg.time_limit
        self.rng = random.Random(f"vouchnet-realnet:{cfg.seed}")
        self.phases: dict[str, float] = {}
        self.files: dict[str, tuple[str, str]] = {}  # cid -> (publisher name, sha256 of the file)
        self.round_cids: list[list[str]] = []         # [round][publisher index]
        self.fetch_log: list[FetchRecord] = []
        self.rounds: list[RoundStats] = []
        self.connect_failures = 0
        self.t_up = self.wall_up = 0.0  # when every node was up and connected (monotonic, wall clock)

    # roles
    @property
    def honest(self) -> list[Member]:
        return [m for m in self.members if m.role != "adversary"]

    @property
    def publishers(self) -> list[Member]:
        return [m for m in self.members if m.role == "publisher"]

    @property
    def adversaries(self) -> list[Member]:
        return [m for m in self.members if m.role == "adversary"]

    def _budget(self) -> float:
        """Seconds left before the time limit, less what the last measurements and stopping need."""
        return self.end - time.monotonic() - self.cfg.reserve

    def _timed(self, phase: str, fn: Callable[..., Any], *args: Any, setup: bool = False) -> Any:
        """Run a phase and note its duration; a set-up phase with no time left fails the run (the
        later ones shorten themselves to the time left)."""
        if setup and self._budget() <= 0:
            raise RealnetError(f"time limit of {self.cfg.time_limit:.0f} s reached before {phase}")
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.phases[phase] = round(time.monotonic() - t0, 2)

    def run(self) -> RealnetResult:
        cfg = self.cfg
        self._timed("prepare", self._prepare, setup=True)
        self._timed("start", self._start, setup=True)
        self._timed("connect", self._connect, setup=True)
        self.t_up, self.wall_up = time.monotonic(), time.time()
        before, cpu_before = self._scrape_all(), _cpu_seconds(self.members)
        poll = _DistrustPoll(self.members, self.t_up, cfg.poll_interval)
        poll.start()
        try:
            # the start-up gossip (first heads, an equivocator's lies) dies down first
            self._timed("warm-up", self._wait_quiet, cfg.warmup)
            self._timed("rounds", self._rounds)
            self._timed("settle", self._settle, poll)
        finally:
            poll.halt.set()
            poll.join(10)
        window = time.monotonic() - self.t_up
        after, cpu_after = self._scrape_all(), _cpu_seconds(self.members)
        observed = self._observations()
        wall_end = time.time()
        t0 = time.monotonic()
        stop_all([m.proc for m in self.members if m.proc])
        propagation = self._propagation(wall_end, poll)
        self.phases["stop+ledgers"] = round(time.monotonic() - t0, 2)
        overhead = _overhead(before, after, window, self.honest)
        if cpu_before is not None and cpu_after is not None:
            overhead.cpu_cores = round((cpu_after - cpu_before) / window, 3)
        return self._result(poll, observed, overhead, propagation)

    def _rounds(self) -> None:
        for r in range(self.cfg.rounds):
            # a round is not started unless one as long as the last one fits in the time left
            if self._budget() <= (self.rounds[-1].seconds if self.rounds else 0.0):
                self.say(f"time limit near: stopping after {r} round(s)")
                return
            self._round(r)

    def _settle(self, poll: _DistrustPoll) -> None:
        """Until every adversary is distrusted by every honest node, or ``settle`` s."""
        end = time.monotonic() + max(0.0, min(self.cfg.settle, self._budget()))
        while not poll.settled() and time.monotonic() < end:
            time.sleep(0.2)

    # -- set-up ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        cfg = self.cfg
        names = [f"p{i + 1}" for i in range(cfg.publishers)]
        names += [f"h{i + 1}" for i in range(cfg.honest - cfg.publishers)]
        for i, name in enumerate(names):
            self.members.append(Member(name, "publisher" if i < cfg.publishers else "honest", self.workdir / name))
        for k in range(cfg.adversaries):
            mode = cfg.modes[k % len(cfg.modes)]
            self.members.append(Member(f"a{k + 1}", "adversary", self.workdir / f"a{k + 1}", mode=mode))
        self.say(f"initialising {len(self.members)} homes in {self.workdir}")
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda m: init_home(m.home), self.members))
        for m, port in zip(self.members, _free_ports(len(self.members))):
            m.metrics_port = port
            (m.home / "config.toml").write_text(
                f"[content]\nchunk_size = {cfg.chunk_size}\nrequest_timeout = {cfg.request_timeout}\n\n"
                f"[reputation]\ninterval = {cfg.reputation_interval}\n\n"
                f"[metrics]\nenabled = true\nport = {port}\n")
        self._share()

    def _share(self) -> None:
        """Each publisher signs one file per round; every adversary holds a copy of each."""
        from overlay.home import Home
        from overlay.store import ContentStore
        from trust import keyfile

        cfg = self.cfg
        data_dir = self.workdir / "data"
        data_dir.mkdir(exist_ok=True)
        self.round_cids = [[] for _ in range(cfg.rounds)]
        for p in self.publishers:
            home = Home(p.home)
            identity = keyfile.load_identity(home.key_file, None)
            store = ContentStore(home.store_dir)
            try:
                for r in range(cfg.rounds):
                    path = data_dir / f"{p.name}-r{r + 1}.bin"
                    path.write_bytes(self.rng.randbytes(cfg.chunk_size * cfg.chunks_per_file))
                    item = store.add_file(path, identity, name=path.name, chunk_size=cfg.chunk_size)
                    self.files[item.cid] = (p.name, hashlib.sha256(path.read_bytes()).hexdigest())
                    self.round_cids[r].append(item.cid)
            finally:
                store.close()
        for a in self.adversaries:
            for cid, (pub, _) in self.files.items():
                clone_content(self.workdir / pub, a.home, cid)

    def _start(self) -> None:
        self.say(f"starting {len(self.members)} node processes")
        for m in self.members:
            if m.role == "adversary":
                args = ["--home", str(m.home), "--mode", m.mode, "--listen", LISTEN]
                m.proc = spawn_node(m.home, module="tests.adversary", args=args)
            else:
                m.proc = spawn_node(m.home, args=["--home", str(m.home), "node", "run", "--listen", LISTEN])
        # ~1.5 s of CPU each to start, two at a time on two cores
        wait_ready([m.proc for m in self.members if m.proc], min(20 + 1.5 * len(self.members), self._budget()))

    def _connect(self) -> None:
        cfg = self.cfg
        edges: set[tuple[int, int]] = set()
        n = len(self.members)
        for i in range(n):
            for j in self.rng.sample([x for x in range(n) if x != i], min(cfg.links, n - 1)):
                if (j, i) not in edges:
                    edges.add((i, j))
        self.say(f"connecting {len(edges)} links")

        def dial(edge: tuple[int, int]) -> bool:
            a, b = self.members[edge[0]], self.members[edge[1]]
            try:
                call(a.home, {"op": "connect", "addr": b.addr}, timeout=15)
                return True
            except (ControlError, NodeNotRunning, OSError):
                return False

        with ThreadPoolExecutor(4) as pool:
            self.connect_failures = sum(1 for ok in pool.map(dial, sorted(edges)) if not ok)
        time.sleep(3.0)  # three GossipSub heartbeats: meshes form

    # -- the workload ------------------------------------------------------------------------------

    def _round(self, r: int) -> None:
        cfg = self.cfg
        pubs = self.publishers
        plan: list[tuple[Member, str]] = []
        for k, h in enumerate(self.honest):
            order = [(k + r + d) % len(pubs) for d in range(len(pubs))]
            pick = next((j for j in order if pubs[j] is not h), None)
            if pick is not None:
                plan.append((h, self.round_cids[r][pick]))
        self.say(f"round {r + 1}/{cfg.rounds}: {len(plan)} fetches")
        t0 = time.monotonic()
        out_dir = self.workdir / "out"
        out_dir.mkdir(exist_ok=True)
        publisher = {cid: next(p for p in pubs if p.name == self.files[cid][0]) for cid in self.round_cids[r]}
        holders = {cid: [publisher[cid].addr] + [a.addr for a in self.adversaries] for cid in self.round_cids[r]}
        offers = {h.name: self.rng.sample(holders[cid], len(holders[cid])) for h, cid in plan}

        def fetch(job: tuple[Member, str]) -> FetchRecord | None:
            h, cid = job
            return self._fetch(r + 1, h, cid, offers[h.name], publisher[cid], out_dir / f"{h.name}-r{r + 1}.bin")

        with ThreadPoolExecutor(cfg.parallel_fetches) as pool:
            recs = [x for x in pool.map(fetch, plan) if x is not None]
        self.fetch_log.extend(recs)
        self.rounds.append(RoundStats(r + 1, round(t0 - self.t_up, 3), round(time.monotonic() - t0, 3), len(recs),
                                      sum(1 for x in recs if not x.ok), sum(1 for x in recs if x.asked),
                                      sum(1 for x in recs if x.publisher_skipped)))
        # reputation ticks between rounds: evidence becomes attestations, attestations travel
        time.sleep(2 * cfg.reputation_interval)
        self._wait_quiet(cfg.between_rounds)

    def _fetch(self, rnd: int, h: Member, cid: str, offer: list[str], publisher: Member,
               out: Path) -> FetchRecord | None:
        """One fetch through ``h``'s control socket, its output compared with the publisher's file."""
        timeout = min(60.0, self._budget())
        if timeout < 5:
            return None  # not started: the time limit is near
        by_pid = {a.peer_id: a.name for a in self.adversaries}
        started = time.monotonic()
        rec = FetchRecord(rnd, h.name, cid, round(started - self.t_up, 3), 0.0, False, False, [], [], [])
        try:
            rec.publisher_skipped = publisher.peer_id in _distrusted_by(h)
            # Every address is offered; the node skips the ones its policy refuses (and says so).
            res = call(h.home, {"op": "fetch", "cid": cid, "output": str(out), "providers": offer}, timeout=timeout)
            rec.refused = sorted(by_pid[p] for p in res.get("refused_by_policy", {}) if p in by_pid)
            rec.phases = dict(res.get("phases", {}))
            rec.asked = sorted(by_pid[p] for p in res["providers"] if p in by_pid)
            rec.skipped = sorted(by_pid[p] for p in res["skipped_distrusted"] if p in by_pid)
            rec.publisher_skipped = rec.publisher_skipped or publisher.peer_id in res["skipped_distrusted"]
            rec.authentic = hashlib.sha256(out.read_bytes()).hexdigest() == self.files[cid][1]
            rec.ok = True
        except (ControlError, NodeNotRunning, OSError) as exc:
            rec.error = str(exc)
            # a failed fetch names its providers as "<first 16 characters of the peer ID>…: why"
            rec.asked = sorted(a.name for a in self.adversaries if f"{a.peer_id[:16]}…:" in rec.error)
            rec.error = rec.error[:300]
        finally:
            rec.seconds = round(time.monotonic() - started, 3)
            out.unlink(missing_ok=True)
        return rec

    def _wait_quiet(self, limit: float) -> None:
        """Until the median honest node receives under QUIET_RATE gossip messages a second (or ``limit``
        s). The median: an equivocator's neighbours keep receiving (and dropping) its lies."""
        end = time.monotonic() + max(0.0, min(limit, self._budget()))
        last, t_last = self._scrape_all(), time.monotonic()
        while time.monotonic() < end:
            time.sleep(1.0)
            now, t_now = self._scrape_all(), time.monotonic()
            rates = [(now[n].get("messages_received", 0.0) - last[n].get("messages_received", 0.0)) / (t_now - t_last)
                     for n in now if n in last]
            if rates and statistics.median(rates) < QUIET_RATE:
                return
            last, t_last = now, t_now

    # -- measurements ----------------------------------------------------------------------------

    def _scrape_all(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for m in self.honest:
            try:
                out[m.name] = _scrape(m.metrics_port)
            except (OSError, http.client.HTTPException, ValueError):
                continue
        return out

    def _observations(self) -> dict[str, dict[str, dict[str, int]]]:
        """Per honest node: its first-hand observation counts, by peer ID and kind."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for h in self.honest:
            try:
                rows = call_pages(h.home, {"op": "peers"}, "peers", timeout=10)
            except (ControlError, NodeNotRunning, OSError) as exc:
                raise RealnetError(f"could not read {h.name}'s observations: {exc}") from None
            out[h.name] = {r["peer_id"]: r["observations"] for r in rows}
        return out

    def _propagation(self, wall_end: float, poll: _DistrustPoll) -> Propagation:
        from trust.attestation import Attestation
        from trust.ledger import Ledger

        honest = self.honest
        issued: list[tuple[str, str, int, int]] = []  # issuer, subject, seq, ts (ms)
        # receiver -> (issuer, subject) -> [(seq, ts)]
        got: dict[str, dict[tuple[str, str], list[tuple[int, int]]]] = {}
        lo, hi = int(self.wall_up * 1000), int((wall_end - LATE_ISSUE_S) * 1000)
        for h in honest:
            ledger = Ledger(h.home / "ledger.db", readonly=True)
            try:
                mine = got.setdefault(h.peer_id, {})
                for e in ledger.entries():
                    if e.kind == "attestation-issued" and lo <= e.ts <= hi:
                        att = Attestation.from_dict(e.body["att"])
                        issued.append((att.issuer, att.subject, att.seq, e.ts))
                    elif e.kind == "attestation-received":
                        att = Attestation.from_dict(e.body["att"])
                        mine.setdefault((att.issuer, att.subject), []).append((att.seq, e.ts))
            finally:
                ledger.close()
        receivers = len(honest) - 1
        need = math.ceil(0.99 * receivers)
        t99: list[float] = []
        t50: list[float] = []
        min_cov = 1.0
        missed = missed_distrusting = 0
        name = {m.peer_id: m.name for m in honest}
        for issuer, subject, seq, ts in issued:
            delays = []
            for receiver, pairs in got.items():
                times = [t for s, t in pairs.get((issuer, subject), ()) if s >= seq]
                if receiver != issuer and times:
                    delays.append(min(times) - ts)
                elif receiver != issuer:
                    missed += 1
                    # its gossip gate drops what a distrusted origin publishes
                    missed_distrusting += (name[receiver], name[issuer]) in poll.first
            delays.sort()
            min_cov = min(min_cov, len(delays) / receivers if receivers else 1.0)
            if len(delays) >= need:
                t99.append(float(delays[need - 1]))
            if len(delays) >= math.ceil(receivers / 2) > 0:
                t50.append(float(delays[math.ceil(receivers / 2) - 1]))
        t99.sort()
        return Propagation(
            method="ledger timestamps (ms, one host clock): issuer's attestation-issued entry to each receiver's "
                   "first attestation-received entry for that (issuer, subject) at that seq or newer",
            receivers=receivers, attestations=len(issued), reached=len(t99),
            t50_median_ms=statistics.median(t50) if t50 else None,
            t99_median_ms=statistics.median(t99) if t99 else None,
            t99_p90_ms=t99[min(len(t99) - 1, int(0.9 * len(t99)))] if t99 else None,
            t99_max_ms=t99[-1] if t99 else None, min_coverage=round(min_cov, 4) if issued else 0.0,
            missed=missed, missed_by_distrusting=missed_distrusting)

    def _result(self, poll: _DistrustPoll, observed: dict[str, dict[str, dict[str, int]]],
                overhead: Overhead, propagation: Propagation) -> RealnetResult:
        cfg = self.cfg
        adv_ids = {a.peer_id for a in self.adversaries}

        def total(kind: str, peers: Callable[[str], bool]) -> int:
            return sum(c.get(kind, 0) for obs in observed.values() for p, c in obs.items() if peers(p))

        outcomes = []
        for a in self.adversaries:
            all_at = poll.all_at.get(a.name)
            firsts = [t for (h, x), t in poll.first.items() if x == a.name]
            outcomes.append(AdversaryOutcome(
                a.name, a.mode, a.peer_id,
                asked_by_round=[sum(1 for f in self.fetch_log if f.round == r.round and a.name in f.asked)
                                for r in self.rounds],
                skipped_by_round=[sum(1 for f in self.fetch_log
                                      if f.round == r.round and a.name in f.skipped + f.refused)
                                  for r in self.rounds],
                bad_chunks=total("chunk_invalid", lambda p, a=a: p == a.peer_id),
                authentic_chunks=total("chunk_verified", lambda p, a=a: p == a.peer_id),
                timeouts=total("timeout", lambda p, a=a: p == a.peer_id),
                distrusted_by=sum(1 for h in self.honest if poll.state.get((h.name, a.name))),
                honest=len(self.honest),
                first_distrusted_s=round(min(firsts), 2) if firsts else None,
                all_distrusted_s=round(all_at, 2) if all_at is not None else None,
                all_distrusted_round=(sum(1 for r in self.rounds if r.started_s <= all_at)
                                      if all_at is not None else None),
                asked_after_all_distrusted=(sum(1 for f in self.fetch_log if f.started_s > all_at and a.name in f.asked)
                                            if all_at is not None else 0),
                distrust_lost=[f"{h}@{t:.1f}" for (h, m), ts in sorted(poll.lost.items()) if m == a.name for t in ts]))
        verified = total("chunk_verified", lambda p: True)
        false_pos = poll.false_positives()
        evidence: dict[str, dict[str, int]] = {}
        for peer in sorted({p for _, p in false_pos[0]}):
            pid = next(m.peer_id for m in self.members if m.name == peer)
            for obs in observed.values():
                for kind, n in obs.get(pid, {}).items():
                    evidence.setdefault(peer, {})[kind] = evidence.get(peer, {}).get(kind, 0) + n
        bad = total("chunk_invalid", lambda p: True)
        done = [f for f in self.fetch_log if f.ok]
        return RealnetResult(
            config=cfg.to_dict(), wall_s=round(time.monotonic() - self.t_start, 1), phases_s=self.phases,
            connect_failures=self.connect_failures, fetches=len(self.fetch_log),
            fetches_ok=sum(1 for f in self.fetch_log if f.ok),
            inauthentic_accepted=sum(1 for f in self.fetch_log if f.ok and not f.authentic),
            chunks_verified=verified, chunks_from_adversaries=total("chunk_verified", lambda p: p in adv_ids),
            bad_chunks=bad, bad_chunks_from_honest=total("chunk_invalid", lambda p: p not in adv_ids),
            wasted_fraction=bad / (bad + verified) if bad + verified else 0.0,
            fetches_asking_adversary=sum(1 for f in self.fetch_log if f.asked),
            fetches_publisher_skipped=sum(1 for f in self.fetch_log if f.publisher_skipped),
            honest_distrusted=false_pos[0], honest_distrusted_ever=false_pos[1], honest_distrusted_evidence=evidence,
            poll_resolution_s=round(poll.resolution(), 3),
            fetch_phases_median_s={k: round(statistics.median(f.phases[k] for f in done if k in f.phases), 3)
                                   for k in sorted({k for f in done for k in f.phases})},
            rounds=self.rounds, adversaries=outcomes,
            propagation=propagation, overhead=overhead, fetch_log=self.fetch_log)


# -- helpers --------------------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together while chosen, so distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _distrusted_by(node: Member) -> set[str]:
    """The peer IDs ``node`` distrusts now (its ``trust`` op)."""
    return {r["peer_id"] for r in call_pages(node.home, {"op": "trust"}, "rows", timeout=10)
            if r.get("distrusted")}


def _scrape(port: int) -> dict[str, float]:
    """The node's vouchnet_gossip_* counters, as {"rpcs_sent": ..., "bytes_received": ...}."""
    from prometheus_client.parser import text_string_to_metric_families

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            # traffic counters only (by direction); vouchnet_gossip_dropped_total is by reason
            if s.name.startswith("vouchnet_gossip_") and s.name.endswith("_total") and "direction" in s.labels:
                out[f"{s.name[len('vouchnet_gossip_'):-len('_total')]}_{s.labels['direction']}"] = s.value
    return out


def _overhead(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]], window: float,
              honest: list[Member]) -> Overhead:
    names = [m.name for m in honest if m.name in before and m.name in after]
    per_min = 60.0 / window if window > 0 else 0.0

    def spread(key: str) -> Spread:
        return Spread.of([(after[n].get(key, 0.0) - before[n].get(key, 0.0)) * per_min for n in names])

    return Overhead(round(window, 2), len(names), spread("rpcs_sent"), spread("rpcs_received"),
                    spread("messages_sent"), spread("messages_received"), spread("bytes_sent"),
                    spread("bytes_received"), None)


def _cpu_seconds(members: list[Member]) -> float | None:
    """User + system CPU seconds of the node processes so far (Linux only, else None)."""
    total = 0.0
    try:
        for m in members:
            if m.proc:
                with open(f"/proc/{m.proc.proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return total
