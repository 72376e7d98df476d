"""First-hand observations: what this node saw each peer do, with the evidence.

They are the raw material of local trust (the reputation issue builds on them): served and
verified chunks, failed verifications with the failing chunk's hash, forged manifests,
protocol violations, timeouts. Stored in SQLite (WAL); appends are batched per exchange.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from trust.peerid import is_peer_id


class Kind(str, Enum):
    CHUNK_VERIFIED = "chunk_verified"      # a chunk from the peer verified against the signed root
    CHUNK_INVALID = "chunk_invalid"        # a chunk failed its proof (evidence: leaf hash, index)
    MANIFEST_INVALID = "manifest_invalid"  # manifest forged, foreign, or not matching the CID
    PROTOCOL_VIOLATION = "protocol_violation"  # malformed, oversized or unexpected messages
    TIMEOUT = "timeout"                    # stalled or too slow
    SERVED = "served"                      # we served the peer verified chunks

    @property
    def negative(self) -> bool:
        return self in (Kind.CHUNK_INVALID, Kind.MANIFEST_INVALID, Kind.PROTOCOL_VIOLATION, Kind.TIMEOUT)


SCHEMA = """
CREATE TABLE IF NOT EXISTS observations (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,              -- unix time
    peer TEXT NOT NULL,            -- the peer observed (libp2p peer ID)
    kind TEXT NOT NULL,            -- see trust.observations.Kind
    cid TEXT,                      -- content concerned, if any
    count INTEGER NOT NULL,        -- how many events this row stands for (batched chunks)
    bytes INTEGER NOT NULL,        -- payload bytes involved
    evidence TEXT NOT NULL         -- e.g. 'chunk 7 leaf 3fa2...: root mismatch'
);
CREATE INDEX IF NOT EXISTS observations_peer ON observations(peer, kind);
"""

MAX_EVIDENCE = 512


@dataclass(frozen=True)
class Observation:
    peer: str
    kind: Kind
    cid: str | None = None
    count: int = 1
    nbytes: int = 0
    evidence: str = ""
    at: float = 0.0


@dataclass(frozen=True)
class PeerSummary:
    peer: str
    counts: dict[str, int]
    last_seen: float

    @property
    def misbehaved(self) -> bool:
        return any(Kind(k).negative and n > 0 for k, n in self.counts.items())


class ObservationLog:
    def __init__(self, path: Path):
        self.db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def record(self, *observations: Observation) -> None:
        rows = []
        for o in observations:
            if not is_peer_id(o.peer):
                raise ValueError(f"not a peer ID: {o.peer!r}")
            rows.append((o.at or time.time(), o.peer, Kind(o.kind).value, o.cid, int(o.count), int(o.nbytes),
                         o.evidence[:MAX_EVIDENCE]))
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany(
                "INSERT INTO observations (at, peer, kind, cid, count, bytes, evidence) VALUES (?,?,?,?,?,?,?)", rows)

    def summary(self, peer: str | None = None) -> list[PeerSummary]:
        q = "SELECT peer, kind, sum(count), max(at) FROM observations"
        args: tuple = ()
        if peer is not None:
            q += " WHERE peer = ?"
            args = (peer,)
        q += " GROUP BY peer, kind ORDER BY peer"
        by_peer: dict[str, PeerSummary] = {}
        for p, kind, n, at in self.db.execute(q, args):
            s = by_peer.setdefault(p, PeerSummary(p, {}, 0.0))
            s.counts[kind] = n
            by_peer[p] = PeerSummary(p, s.counts, max(s.last_seen, at))
        return list(by_peer.values())

    def for_peer(self, peer: str, limit: int = 100) -> list[Observation]:
        rows = self.db.execute(
            "SELECT peer, kind, cid, count, bytes, evidence, at FROM observations WHERE peer = ? "
            "ORDER BY id DESC LIMIT ?", (peer, limit)).fetchall()
        return [Observation(p, Kind(k), c, n, b, e, at) for p, k, c, n, b, e, at in rows]
