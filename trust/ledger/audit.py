"""`Ledger.audit`: the checks of docs/ledger.md over one read snapshot, spread over worker processes
when the ledger is big."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Protocol, TypeVar

from trust.attestation import TreeHead
from trust.errors import ProofError
from trust.ledger.proofs import find_equivocations, verify_jobs
from trust.ledger.scan import Chunk, check_record, ro_uri, scan_range, worker_init, worker_scan, worker_verify
from trust.ledger.schema import read_meta
from trust.ledger.types import AuditReport, Problem
from trust.merkle import MerkleTree, grow_levels, pair_level, verify_consistency

# Audit tuning: below PARALLEL_ROWS entries everything runs in this process; above, idx ranges of
# CHUNK entries (a power of two, so each chunk is a perfect subtree) are scanned by this process
# and `workers - 1` helpers. Signatures outside those scans are spread only above PARALLEL_SIGNATURES.
PARALLEL_ROWS = 50_000
PARALLEL_SIGNATURES = 2_000
CHUNK = 1 << 14
_T = TypeVar("_T")


class AuditedLog(Protocol):
    """What an audit needs of the `Ledger` it checks (trust.ledger.log imports this module)."""

    path: Path

    @property
    def owner(self) -> str | None: ...


class Audit:
    """One run of Ledger.audit; see docs/ledger.md for the list of checks."""

    def __init__(self, ledger: AuditedLog, db: sqlite3.Connection, workers: int, trust_check: Any, t0: float):
        self.ledger = ledger
        self.db = db  # the ledger's connection, its lock held by the caller
        self.workers = workers
        self.trust_check = trust_check
        self.t0 = t0
        self.problems: list[Problem] = []
        self.pool: Executor | None = None
        self.envelopes = 0
        self.records: list[tuple[str, str, Any, bytes]] = []   # (where, kind, record, envelope)
        self.tree = MerkleTree()
        self.own_heads: dict[int, TreeHead] = {}
        self.own_envelopes: dict[int, bytes] = {}

    def add(self, where: str, what: str) -> None:
        self.problems.append(Problem(where, what))

    def _spread(self, remote: Callable[..., _T], local: Callable[..., _T], tasks: Sequence[tuple]) -> Iterator[_T]:
        """remote(*task) in the `workers - 1` helper processes and local(*task) here, results in
        task order. The helpers are kept two tasks ahead and this process takes the next task
        itself rather than wait. Once this process got less than 3/4 of a core for two tasks in a
        row while helpers ran, the machine has no core to spare (helpers would only take CPU from
        it, the more so as the kernel shares CPU per session): it goes on alone."""
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers - 1, initializer=worker_init,
                                            initargs=(ro_uri(self.ledger.path),))
        ahead = 2 * (self.workers - 1)
        futures: dict[int, Future[_T]] = {}
        results: dict[int, _T] = {}
        nxt = 0
        starved = 0  # tasks in a row on which this process got under 3/4 of a core (2: alone from then on)
        for i in range(len(tasks)):
            while i not in results:
                if i in futures and (futures[i].done() or nxt == len(tasks)):
                    results[i] = futures.pop(i).result()
                    break
                while starved < 2 and nxt < len(tasks) and sum(not f.done() for f in futures.values()) < ahead:
                    futures[nxt] = self.pool.submit(remote, *tasks[nxt])
                    nxt += 1
                if nxt < len(tasks):
                    wall, cpu = time.perf_counter(), time.process_time()
                    results[nxt] = local(*tasks[nxt])
                    if starved < 2:
                        starved = 0 if time.process_time() - cpu > 0.75 * (time.perf_counter() - wall) else starved + 1
                    nxt += 1
            yield results.pop(i)

    def verify(self, jobs: list[tuple[Any, str, Any]]) -> list[tuple[Any, Any, str | None]]:
        """Check signed records: inline, or spread over the processes when there are many."""
        self.envelopes += len(jobs)
        if len(jobs) <= PARALLEL_SIGNATURES or self.workers == 1:
            return verify_jobs(jobs)
        step = -(-len(jobs) // (self.workers * 4))
        parts = [(jobs[i:i + step],) for i in range(0, len(jobs), step)]
        return list(chain.from_iterable(self._spread(worker_verify, verify_jobs, parts)))

    def run(self) -> AuditReport:
        db = self.db
        owner = self.ledger.owner
        n = heads = peers = 0
        try:
            db.execute("BEGIN")  # one snapshot for everything read here
            try:
                self._owner(owner)
                n = self._entries(owner)
                heads = self._heads(owner)
                peers = self._peer_heads(owner)
                self._equivocation_rows()
            finally:
                db.execute("COMMIT")
                if self.pool is not None:
                    self.pool.shutdown()
                    self.pool = None
        except BaseException:
            if self.pool is not None:
                self.pool.shutdown(cancel_futures=True)
            raise
        found = find_equivocations(self.records)
        if self.trust_check is not None:
            try:
                for p in self.trust_check(self.ledger) or []:
                    self.problems.append(p if isinstance(p, Problem) else Problem(str(p.where), str(p.what)))
            except Exception as exc:  # the hook is someone else's code: report it, don't crash
                self.add("trust check", f"failed: {type(exc).__name__}: {exc}")
        return AuditReport(not self.problems, n, heads, self.problems, time.perf_counter() - self.t0,
                           found, self.envelopes, peers)

    def _owner(self, owner: str | None) -> None:
        stored = read_meta(self.db, "peer_id")
        if owner is not None and stored is not None and stored != owner:
            self.add("ledger", f"the ledger records owner {stored}, but this node is {owner}")

    # (1) entries; (6) the envelopes in them
    def _entries(self, owner: str | None) -> int:
        db = self.db
        (top,) = db.execute("SELECT max(idx) FROM entries").fetchone()
        n = 0 if top is None or top < 0 else top + 1
        rows = 0
        for (idx,) in db.execute("SELECT idx FROM entries WHERE idx < 0 ORDER BY idx LIMIT 100"):
            self.add(f"entry {idx}", "has a negative index")
        if self.workers > 1 and n >= PARALLEL_ROWS:
            ranges = [(lo, min(lo + CHUNK, n), owner) for lo in range(0, n, CHUNK)]
            chunks = self._spread(worker_scan, partial(scan_range, db, verify=True), ranges)
        else:
            chunks = iter([scan_range(db, 0, n, owner, verify=False)])
        levels: list[list[bytes]] = []
        complete = True
        prev: Chunk | None = None
        jobs: list[tuple[tuple[int, str], str, Any]] = []
        for c in chunks:
            if prev is not None and c.count and type(c.first_ts) is int and type(prev.last_ts) is int \
                    and c.first_ts < prev.last_ts:
                self.add(f"entry {c.first_idx}",
                         f"timestamp goes backwards ({c.first_ts} ms, entry before has {prev.last_ts} ms)")
            for where, what in c.problems:
                self.add(where, what)
            if c.truncated:
                self.add(f"entries {c.lo}..{c.hi - 1}", f"{c.truncated} more problems not listed")
            rows += c.count
            complete = complete and c.count == c.hi - c.lo
            for k, lv in enumerate(c.levels):
                if k == len(levels):
                    levels.append([])
                levels[k].extend(lv)
            for idx, kind, rec, env in c.records:
                self.records.append((f"entry {idx}", kind, rec, env))
            jobs.extend(c.jobs)
            self.envelopes += c.envelopes
            if c.count:
                prev = c
        # Envelopes the in-process scan collected.
        sink = Chunk(0, 0)
        for (idx, kind), rec, err in self.verify(jobs):
            if err is not None:
                self.add(f"entry {idx}", f"{kind}: {err}")
            else:
                check_record(idx, kind, rec, b"", owner, sink)
        for where, what in sink.problems:
            self.add(where, what)
        envs = {idx: data for (idx, _), _, data in jobs}
        for idx, kind, rec, _ in sink.records:
            self.records.append((f"entry {idx}", kind, rec, envs[idx]))
        # (2) the tree over the recomputed leaves
        if not levels:
            levels = [[]]
        if complete:  # chunks are aligned perfect subtrees: carry on from their levels
            while len(levels[-1]) > 1:
                levels.append(pair_level(levels[-1]))
            self.tree = MerkleTree.from_levels(levels)
        else:  # missing entries shift every later leaf: rebuild over the leaves as they are
            levels = [levels[0]]
            grow_levels(levels)
            self.tree = MerkleTree.from_levels(levels)
        return rows

    # (2)-(5) own heads
    def _heads(self, owner: str | None) -> int:
        rows = self.db.execute("SELECT seq, size, root, ts, envelope FROM heads ORDER BY seq").fetchall()
        if rows and owner is None:
            self.add("ledger", "the ledger has signed heads but records no owner peer ID")
        results = self.verify([(i, "tree-head", r[4]) for i, r in enumerate(rows)])
        verified: list[TreeHead] = []
        expect = 1
        for (seq, size, root, ts, env), (_, th, err) in zip(rows, results):
            where = f"head seq {seq}"
            if seq != expect:
                if seq < 1:
                    self.add(where, "sequence numbers start at 1")
                elif seq == expect + 1:
                    self.add(f"head seq {expect}", f"is missing (heads jump from seq {expect - 1} to {seq})")
                else:
                    self.add(f"head seq {expect}", f"heads seq {expect}..{seq - 1} are missing")
            expect = seq + 1
            if err is not None:
                self.add(where, f"signature check failed: {err}")
                continue
            if owner is not None and th.issuer != owner:
                self.add(where, f"signed by {th.issuer}, not by this ledger's owner {owner}")
            stored = {"seq": seq, "size": size, "root": root, "ts": ts}
            signed = {"seq": th.seq, "size": th.size, "root": th.root, "ts": th.timestamp}
            for col in stored:
                if stored[col] != signed[col]:
                    self.add(where, f"stored {col} differs from the signed head")
            verified.append(th)
            self.own_heads.setdefault(th.seq, th)
            self.own_envelopes.setdefault(th.seq, env)
        tree = self.tree
        prev: TreeHead | None = None
        for th in verified:
            where = f"head seq {th.seq}"
            if th.size > tree.size:
                self.add(where, f"covers {th.size} entries but the ledger has {tree.size}")
            elif tree.root(th.size) != th.root:
                self.add(where, f"root does not match the tree rebuilt from entries 0..{th.size - 1}")
            if prev is not None:
                if th.seq <= prev.seq:
                    self.add(where, f"sequence number does not increase (head before has seq {prev.seq})")
                if th.timestamp <= prev.timestamp:
                    self.add(where, f"timestamp {th.timestamp} does not increase "
                                    f"(head seq {prev.seq} has {prev.timestamp})")
                if th.size < prev.size:
                    self.add(where, f"the tree shrinks from {prev.size} to {th.size} entries since head seq {prev.seq}")
                elif prev.size > 0 and th.size <= tree.size:
                    try:
                        proof = tree.consistency_proof(prev.size, th.size)
                        verify_consistency(prev.size, th.size, prev.root, th.root, proof)
                    except ProofError as exc:
                        self.add(where, f"not consistent with head seq {prev.seq}: {exc}")
                elif prev.size == 0 and th.size == 0 and prev.root != th.root:
                    self.add(where, f"empty tree with a different root than head seq {prev.seq}")
            prev = th
        return len(rows)

    # (6) peer heads; split view against our own heads
    def _peer_heads(self, owner: str | None) -> int:
        rows = self.db.execute("SELECT issuer, seq, size, root, ts, envelope, received_ts FROM peer_heads "
                               "ORDER BY issuer, seq").fetchall()
        results = self.verify([(i, "tree-head", r[5]) for i, r in enumerate(rows)])
        latest = max(self.own_heads) if self.own_heads else 0
        for (issuer, seq, size, root, ts, env, _rts), (_, th, err) in zip(rows, results):
            where = f"peer head {issuer} seq {seq}"
            if err is not None:
                self.add(where, f"signature check failed: {err}")
                continue
            stored = {"issuer": issuer, "seq": seq, "size": size, "root": root, "ts": ts}
            signed = {"issuer": th.issuer, "seq": th.seq, "size": th.size, "root": th.root, "ts": th.timestamp}
            for col in stored:
                if stored[col] != signed[col]:
                    self.add(where, f"stored {col} differs from the signed head")
            self.records.append((where, "peer-head", th, env))
            if owner is not None and th.issuer == owner:
                mine = self.own_heads.get(th.seq)
                if mine is not None and self.own_envelopes[th.seq] != env:
                    self.add(where, f"a peer holds a head of ours that differs from our head seq {th.seq} (split view)")
                elif mine is None and th.seq > latest:
                    self.add(where, f"a peer holds our head seq {th.seq} but our latest is seq {latest}: "
                                    "the ledger was rolled back")
                same_size = [h for h in self.own_heads.values() if h.size == th.size and h.root != th.root]
                if same_size:
                    self.add(where, f"a peer holds a head of ours for size {th.size} with another root than "
                                    f"our head seq {same_size[0].seq} (split view)")
        return len(rows)

    def _equivocation_rows(self) -> None:
        rows = self.db.execute("SELECT rowid, issuer, kind, proof FROM equivocations ORDER BY rowid").fetchall()
        results = self.verify([(i, "equivocation", r[3]) for i, r in enumerate(rows)])
        for (rowid, issuer, kind, _), (_, eq, err) in zip(rows, results):
            where = f"equivocation {rowid}"
            if err is not None:
                self.add(where, f"proof does not verify: {err}")
                continue
            if (issuer, kind) != (eq.issuer, eq.kind):
                self.add(where, f"stored issuer/kind ({issuer}, {kind}) differ from the proof ({eq.issuer}, {eq.kind})")
