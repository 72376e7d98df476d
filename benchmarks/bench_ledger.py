"""Ledger cost against plain SQLite doing the same I/O.

- Batched appends (1,000 entries per `append_many`, ~200-byte bodies) against raw
  ``executemany`` inserts of rows of the same size into a plain table with the same pragmas
  (WAL, synchronous=NORMAL), one transaction per 1,000 rows. The ledger side includes
  canonical encoding, leaf hashing and keeping the in-memory Merkle tree current.
- `Ledger.audit` of 1M entries (quick: 100k) with a few signed heads and no envelope entries,
  against a plain SHA-256 hash-chain scan of the same rows (SELECT every column,
  ``h = sha256(h || idx || ts || kind || body || leaf)``). The audit recomputes every leaf,
  checks every body is canonical CBOR, rebuilds the tree and checks heads and consistency; it
  uses its default 2 processes, the baseline one process. The same audit in one process
  (``workers=1``, what a machine with its other core busy gets) is timed in the same rounds and
  its ratio is in the detail.

Usage: ``python -m benchmarks.bench_ledger [--quick]``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from benchmarks.common import Result
from trust.identity import Identity
from trust.ledger import Ledger, encode_body

PEER = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA"
KIND = "observation"
MB = 1e6


def _body(i: int) -> dict:
    # ~200 bytes encoded, the shape of an observation (keys already in canonical order).
    return {"n": 1 + i % 7, "at": 1_700_000_000_000 + i, "ev": f"chunk {i % 4096} verified against root 3fa2c1",
            "cid": "bafyrei" + "k" * 52, "kind": "chunk_verified", "peer": PEER, "bytes": 262144 + i}


def _fresh_plain(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, ts INTEGER NOT NULL, kind TEXT NOT NULL, "
               "body BLOB NOT NULL, leaf BLOB NOT NULL)")
    return db


def _rm(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        try:
            os.unlink(str(path) + suffix)
        except FileNotFoundError:
            pass


def _append_case(tmp: Path, n: int, repeat: int) -> Result:
    batch = 1000
    bodies = [_body(i) for i in range(n)]
    batches = [[(KIND, b) for b in bodies[s:s + batch]] for s in range(0, n, batch)]
    encoded = [encode_body(b) for b in bodies]
    body_bytes = sum(len(e) for e in encoded)
    ts0 = 1_700_000_000_000
    rows = [(i, ts0 + i, KIND, encoded[i], os.urandom(32)) for i in range(n)]
    row_batches = [rows[s:s + batch] for s in range(0, n, batch)]
    subject, baseline = [], []
    for _ in range(repeat):
        p = tmp / "plain.db"
        _rm(p)
        db = _fresh_plain(p)
        t0 = time.perf_counter()
        for rb in row_batches:
            db.execute("BEGIN")
            db.executemany("INSERT INTO entries(idx, ts, kind, body, leaf) VALUES (?, ?, ?, ?, ?)", rb)
            db.execute("COMMIT")
        baseline.append(time.perf_counter() - t0)
        db.close()
        _rm(p)

        p = tmp / "ledger.db"
        _rm(p)
        ledger = Ledger(p)
        t0 = time.perf_counter()
        for b in batches:
            ledger.append_many(b)
        ledger.root()  # the tree is current: nothing deferred
        subject.append(time.perf_counter() - t0)
        assert ledger.size == n
        ledger.close()
        _rm(p)
    s, b = statistics.median(subject), statistics.median(baseline)
    return Result(
        name=f"Ledger.append_many, {n:,} entries in batches of {batch:,}",
        baseline="sqlite3 executemany of same-size rows, same pragmas, 1,000 rows per transaction",
        subject_s=s, baseline_s=b, target="<= 2.00x", ok=s / b <= 2.0,
        detail=(f"~{body_bytes / n:.0f}-byte bodies; ledger {n / s:,.0f} entries/s ({body_bytes / MB / s:.1f} MB/s of "
                f"bodies), plain {n / b:,.0f} rows/s ({body_bytes / MB / b:.1f} MB/s)"),
    )


def _build_ledger(path: Path, n: int, heads: int) -> None:
    ledger = Ledger(path, Identity.generate())
    step = 10_000
    head_every = max(step, (n // heads) // step * step)
    for s in range(0, n, step):
        ledger.append_many([(KIND, _body(i)) for i in range(s, min(n, s + step))])
        if (s + step) % head_every == 0 or s + step >= n:
            ledger.sign_head()
    ledger.close()


def _chain_scan(path: Path) -> bytes:
    db = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    sha = hashlib.sha256
    pack = struct.Struct(">QQ").pack
    h = bytes(32)
    for idx, ts, kind, body, leaf in db.execute("SELECT idx, ts, kind, body, leaf FROM entries ORDER BY idx"):
        h = sha(h + pack(idx, ts) + kind.encode() + body + leaf).digest()
    db.close()
    return h


def _audit(path: Path, workers: int) -> None:
    ledger = Ledger(path, readonly=True)
    try:
        report = ledger.audit(workers=workers)
    finally:
        ledger.close()
    if not report.ok:
        raise AssertionError(f"benchmark ledger failed its audit: {report.problems[:3]}")


def _audit_case(tmp: Path, n: int, repeat: int) -> Result:
    path = tmp / "audit.db"
    _rm(path)
    t0 = time.perf_counter()
    _build_ledger(path, n, heads=4)
    build_s = time.perf_counter() - t0
    db = sqlite3.connect(path)
    row_bytes = db.execute("SELECT sum(length(body) + length(kind) + 48) FROM entries").fetchone()[0]
    heads = db.execute("SELECT count(*) FROM heads").fetchone()[0]
    db.close()
    subject, baseline, one = [], [], []
    for _ in range(repeat):
        for times, run in ((baseline, partial(_chain_scan, path)), (subject, partial(_audit, path, 2)),
                           (one, partial(_audit, path, 1))):
            t0 = time.perf_counter()
            run()
            times.append(time.perf_counter() - t0)
    _rm(path)
    s, b, single = statistics.median(subject), statistics.median(baseline), statistics.median(one)
    return Result(
        name=f"Ledger.audit, {n:,} entries, {heads} heads, no envelopes",
        baseline="one-process SHA-256 hash-chain scan of the same rows",
        subject_s=s, baseline_s=b, target="<= 2.00x", ok=s / b <= 2.0,
        detail=(f"audit (2 processes) {n / s:,.0f} rows/s, {row_bytes / MB / s:.0f} MB/s; "
                f"chain scan {n / b:,.0f} rows/s, {row_bytes / MB / b:.0f} MB/s; "
                f"audit in 1 process {single:.2f} s ({single / b:.2f}x, median of {repeat}); "
                f"building the ledger took {build_s:.1f} s ({n / build_s:,.0f} entries/s incl. body construction)"),
    )


def run(quick: bool = False) -> list[Result]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    try:
        return [
            _append_case(tmp, 50_000 if quick else 200_000, 3 if quick else 5),
            _audit_case(tmp, 100_000 if quick else 1_000_000, 3 if quick else 5),
        ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    for r in run(quick="--quick" in sys.argv):
        print(f"{'OK  ' if r.ok else 'MISS'} {r.name}: {r.subject_s * 1000:.1f} ms vs {r.baseline_s * 1000:.1f} ms "
              f"({r.ratio:.2f}x, target {r.target})\n     {r.detail}")


if __name__ == "__main__":
    main()
