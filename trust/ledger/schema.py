"""The ledger's SQLite schema: its tables, the format check on open, and the bulk entry insert."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from itertools import chain, islice
from pathlib import Path

from trust.ledger.types import FORMAT, VERSION, LedgerOpenError


SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,      -- leaf index: 0, 1, 2, ... without gaps
    ts INTEGER NOT NULL,          -- unix milliseconds, never decreasing
    kind TEXT NOT NULL,           -- [a-z][a-z-]{0,31}
    body BLOB NOT NULL,           -- canonical CBOR map (RFC 8949 core deterministic)
    leaf BLOB NOT NULL            -- SHA-256(0x00 || leaf data), 32 bytes
);
CREATE TABLE IF NOT EXISTS heads (
    seq INTEGER PRIMARY KEY,      -- 1, 2, 3, ...
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    ts INTEGER NOT NULL,          -- unix seconds (as signed), strictly increasing
    envelope BLOB NOT NULL        -- the signed TreeHead envelope
);
CREATE TABLE IF NOT EXISTS peer_heads (
    issuer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    size INTEGER NOT NULL,
    root BLOB NOT NULL,
    ts INTEGER NOT NULL,          -- unix seconds (as signed)
    envelope BLOB NOT NULL UNIQUE,
    received_ts INTEGER NOT NULL  -- unix milliseconds
);
CREATE INDEX IF NOT EXISTS peer_heads_by_seq ON peer_heads(issuer, seq);
CREATE INDEX IF NOT EXISTS peer_heads_by_size ON peer_heads(issuer, size);
CREATE TABLE IF NOT EXISTS equivocations (
    issuer TEXT NOT NULL,
    kind TEXT NOT NULL,           -- record tag, e.g. vouchnet/attestation
    proof BLOB NOT NULL UNIQUE,   -- Equivocation.to_bytes()
    ts INTEGER NOT NULL           -- unix milliseconds when recorded
);
"""
TABLES = ("meta", "entries", "heads", "peer_heads", "equivocations")


def read_meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def init_schema(db: sqlite3.Connection, path: Path, peer_id: str | None) -> None:
    """Create the tables (if missing) and the format rows, refusing an SQLite file that is not a ledger."""
    db.execute("BEGIN IMMEDIATE")
    try:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if names and "meta" not in names:
            raise LedgerOpenError(f"{path} is an SQLite database but not a vouchnet ledger")
        for stmt in SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)
        db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('format', ?), ('version', ?)",
                   (FORMAT, str(VERSION)))
        if peer_id is not None:
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('peer_id', ?)", (peer_id,))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def check_format(db: sqlite3.Connection, path: Path) -> None:
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    missing = [t for t in TABLES if t not in names]
    if missing:
        raise LedgerOpenError(f"{path} is not a vouchnet ledger (no table {', '.join(missing)})")
    fmt, ver = read_meta(db, "format"), read_meta(db, "version")
    if fmt != FORMAT:
        raise LedgerOpenError(f"{path} is not a vouchnet ledger (format {fmt!r})")
    if ver != str(VERSION):
        raise LedgerOpenError(f"{path} is a version {ver} ledger; this vouchnet reads version {VERSION}")


_INSERT_ONE = "INSERT INTO entries(idx, ts, kind, body, leaf) VALUES (?, ?, ?, ?, ?)"
# Rows per multi-row INSERT: 100 x 5 parameters stays under SQLite's historical limit of 999
# variables, and one statement per 100 rows costs ~20% less than executemany of single rows.
_MULTI = 100
_PLACEHOLDERS = ", ".join(["(?, ?, ?, ?, ?)"] * _MULTI)
# A constant built once from placeholders: no data ever reaches the SQL text.
_INSERT_MULTI = f"INSERT INTO entries(idx, ts, kind, body, leaf) VALUES {_PLACEHOLDERS}"  # nosec B608


def insert_entries(db: sqlite3.Connection, rows: Iterable[tuple], count: int) -> None:
    full = count - count % _MULTI
    it = iter(rows)
    if full:
        flat = list(chain.from_iterable(islice(it, full)))
        step = 5 * _MULTI
        db.executemany(_INSERT_MULTI, [flat[i:i + step] for i in range(0, len(flat), step)])
    if full < count:
        db.executemany(_INSERT_ONE, it)
