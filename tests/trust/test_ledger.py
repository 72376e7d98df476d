"""The tamper-evident ledger: appends, heads, proofs, audit against direct edits of the SQLite
file, crash safety under SIGKILL, equivocation, and the `vouchnet ledger` commands."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, run_cli
from trust import encoding, keyfile
from trust.attestation import (Attestation, Equivocation, TreeHead, check_equivocation, open_tree_head,
                               sign_attestation, sign_tree_head)
from trust.errors import DecodeError, ProofError, SignatureError
from trust.identity import Identity
from trust.ledger import (Ledger, LedgerError, LedgerOpenError, Problem, decode_body, encode_body, leaf_data,
                          parse_leaf_data, verify_equivocation, verify_proof_bundle)
from trust.merkle import leaf_hash, root

OTHERS = [Identity.from_seed(bytes([i]) * 32) for i in range(2, 7)]


def obs(i: int) -> dict:
    return {"n": i, "ev": hashlib.sha256(str(i).encode()).digest(), "kind": "chunk_verified",
            "peer": OTHERS[i % 5].peer_id}


def att_body(issuer: Identity, subject: Identity, value: float, seq: int = 1) -> dict:
    env = sign_attestation(issuer, subject.peer_id, value, seq, 1_700_000_000 + seq, bytes(32))
    return {"envelope": env, "att": Attestation(issuer.peer_id, subject.peer_id, int(value * 1_000_000), seq,
                                                1_700_000_000 + seq, bytes(32)).to_dict()}


def build(path: Path, me: Identity) -> Ledger:
    """A healthy ledger: 3 heads, 46 entries incl. attestations (received and issued) and a peer head.

    Entries 0-29 are observations; 30-33 attestation-received; 34 attestation-issued;
    35 peer-head; 36-45 observations. Heads: seq 1 at size 10, seq 2 at 30, seq 3 at 46.
    """
    led = Ledger(path, me)
    for b in range(3):
        led.append_many([("observation", obs(b * 10 + j)) for j in range(10)])
        if b != 1:
            led.sign_head()
    led.append_many([("attestation-received", att_body(OTHERS[i], OTHERS[i + 1], 0.25 * (i + 1)))
                     for i in range(4)])
    led.append("attestation-issued", att_body(me, OTHERS[0], 0.5))
    led.append("peer-head", {"envelope": sign_tree_head(OTHERS[0], 3, bytes(32), 1_700_000_000, 1)})
    led.append_many([("observation", obs(100 + j)) for j in range(10)])
    led.sign_head()
    return led


@pytest.fixture
def me(identity) -> Identity:
    return identity


@pytest.fixture
def healthy(tmp_path, me) -> Path:
    path = tmp_path / "ledger.db"
    build(path, me).close()
    return path


def audit(path: Path, me: Identity | None = None, **kw):
    led = Ledger(path, readonly=True, owner=me.peer_id if me else None)
    try:
        return led.audit(**kw)
    finally:
        led.close()


def edit(path: Path, *statements: tuple[str, tuple]) -> None:
    db = sqlite3.connect(path)
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()


def wheres(report) -> set[str]:
    return {p.where for p in report.problems}


# --- appending and reading ------------------------------------------------------------------------


def test_append_iterate_root(tmp_path, me):
    led = Ledger(tmp_path / "l.db", me)
    assert led.size == 0 and led.root() == hashlib.sha256(b"").digest()
    assert led.append("observation", obs(0), ts_ms=1000) == 0
    assert led.append_many([("rating", {"verdict": "good", "providers": ["a", "b"]}), ("observation", obs(1))],
                           ts_ms=2000) == [1, 2]
    assert led.append_many([]) == []
    entries = list(led.entries())
    assert [(e.idx, e.kind, e.ts) for e in entries] == [(0, "observation", 1000), (1, "rating", 2000),
                                                        (2, "observation", 2000)]
    assert entries[1].body == {"verdict": "good", "providers": ["a", "b"]}
    assert led.entry(2).body == obs(1)
    assert [e.idx for e in led.entries(1, 2)] == [1]
    # the leaf encoding, spelled out: idx u64 BE || ts u64 BE || len(kind) u8 || kind || canonical body
    expect = [leaf_hash(struct.pack(">QQB", e.idx, e.ts, len(e.kind)) + e.kind.encode() + encoding.encode(e.body))
              for e in entries]
    assert [e.leaf for e in entries] == expect
    assert led.root() == root(expect) and led.root(1) == root(expect[:1])
    assert led.size == 3
    led.close()
    # reopening loads the tree from the stored leaves
    again = Ledger(tmp_path / "l.db", me)
    assert again.root() == root(expect)
    assert again.append("observation", obs(3)) == 3
    assert again.root() == root(expect + [list(again.entries(3))[0].leaf])


def test_timestamps_never_go_backwards(tmp_path):
    led = Ledger(tmp_path / "l.db")
    led.append("observation", obs(0), ts_ms=5000)
    led.append("observation", obs(1), ts_ms=4000)
    led.append_many([("observation", obs(2), 7000), ("observation", obs(3), 6000), ("observation", obs(4))],
                    ts_ms=1)
    assert [e.ts for e in led.entries()] == [5000, 5000, 7000, 7000, 7000]
    assert led.append("observation", obs(5)) >= 0 and led.entry(5).ts >= 7000  # now


def test_append_many_is_all_or_nothing(tmp_path):
    led = Ledger(tmp_path / "l.db")
    led.append_many([("observation", obs(i)) for i in range(3)])
    before = led.root()
    for bad in ([("observation", obs(9)), ("observation", {"x": 1.5})],          # floats are not allowed
                [("observation", obs(9)), ("Bad Kind", obs(1))],
                [("observation", obs(9)), ("observation", {"x": 1 << 70})],    # beyond 64 bits
                [("observation", obs(9)), ("observation", ["not", "a", "map"])],
                [("observation", obs(9)), ("observation", {"big": b"x" * 300_000})]):
        with pytest.raises((DecodeError, ValueError)):
            led.append_many(bad)
    assert led.size == 3 and led.root() == before
    with pytest.raises(ValueError):
        led.append("observation", obs(1), ts_ms=-5)
    assert led.size == 3


def test_second_writer_catches_up(tmp_path, me):
    a, b = Ledger(tmp_path / "l.db", me), Ledger(tmp_path / "l.db", me)
    a.append_many([("observation", obs(i)) for i in range(5)])
    assert b.append("observation", obs(5)) == 5
    assert a.append("observation", obs(6)) == 6
    assert a.root() == b.root()
    a.sign_head()
    b.sign_head()
    assert [h.seq for h in a.heads()] == [1, 2]
    assert audit(tmp_path / "l.db", me).ok


_scalars = st.one_of(st.integers(-(1 << 64), (1 << 64) - 1), st.text(max_size=12), st.binary(max_size=12),
                     st.booleans(), st.none())
_values = st.recursive(_scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                       max_leaves=8)
_bodies = st.dictionaries(st.text(max_size=8), _values, max_size=6)


def _fits_64(v) -> bool:
    if type(v) is int:
        return -(1 << 64) <= v < (1 << 64)
    if isinstance(v, dict):
        return all(map(_fits_64, v.values()))
    if isinstance(v, list):
        return all(map(_fits_64, v))
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies, st.integers(0, 10_000), st.integers(0, 255))
def test_body_codec_is_the_strict_canonical_one(body, pos, byte):
    data = encode_body(body)
    assert data == encoding.encode(body)  # the fast path gives byte-identical canonical CBOR
    assert decode_body(data) == body
    # any one-byte change: accepted exactly when the strict decoder accepts it as a map
    mutated = bytearray(data)
    mutated[pos % len(mutated)] = byte
    try:
        strict = encoding.decode(bytes(mutated), 1 << 20)
        strict_ok = isinstance(strict, dict) and _fits_64(strict)  # bodies also refuse bignums
    except DecodeError:
        strict_ok = False
    try:
        decode_body(bytes(mutated))
        ours = True
    except DecodeError:
        ours = False
    assert ours == strict_ok
    # the same map with keys in another order decodes to the same value but is not canonical
    if len(body) > 1:
        unordered = cbor2.dumps(dict(reversed(list(body.items()))))
        if unordered != data:
            with pytest.raises(DecodeError):
                decode_body(unordered)


def test_decode_body_rejects_what_strict_decoding_rejects():
    good = {"a": 1, "bb": b"x"}
    assert decode_body(encode_body(good)) == good
    for bad in (cbor2.dumps({"bb": b"x", "a": 1}),                 # keys out of canonical order
                encode_body(good) + b"\x00",                        # trailing byte
                b"\xa2\x61a\x18\x01\x62bb\x41x",                     # non-minimal integer 1
                cbor2.dumps({"a": 2 ** 70}),                        # bignum tag
                cbor2.dumps({"a": 1.5}),                            # float
                cbor2.dumps([1, 2]),                                # not a map
                b"\xbf\x61a\x01\xff",                               # indefinite-length map
                b"\xa2\x61a\x01\x61a\x02"):                         # duplicate key
        with pytest.raises(DecodeError):
            decode_body(bad)


# --- the audit's regex check of flat bodies --------------------------------------------------------

_flat_scalars = st.one_of(st.integers(-(1 << 64), (1 << 64) - 1), st.text(max_size=30),
                          st.text("ab", min_size=250, max_size=260), st.binary(max_size=30), st.booleans(), st.none())
_flat_bodies = st.dictionaries(st.sampled_from(["a", "n", "at", "ev", "cid", "x" * 30]), _flat_scalars, max_size=6)


def _strict_ok(data: bytes) -> bool:
    try:
        decode_body(data)
        return True
    except DecodeError:
        return False


def _in_regex_scope(body: dict) -> bool:
    return all(len(v) < 256 and (type(v) is bytes or v.isascii()) for v in body.values() if isinstance(v, (str, bytes)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # each compiles a regex
@given(st.lists(_flat_bodies, min_size=1, max_size=6), st.data())
def test_body_regex_accepts_only_what_decode_body_accepts(bodies, data):
    from trust.ledger.codec import Shapes
    shapes = Shapes()
    enc = [encode_body(b) for b in bodies]
    for e in enc:
        shapes.learn("k", decode_body(e))  # keys in canonical order, as the audit learns them
    missed = set(shapes.unmatched("k", enc))
    assert missed == {i for i, b in enumerate(bodies) if not _in_regex_scope(b)}  # the fast path is taken
    # mutants: a byte changed, inserted or deleted, or bytes moved across the boundary of two bodies
    cands = list(enc)
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(cands) - 1))
        b = bytearray(cands[i])
        pos = data.draw(st.integers(0, len(b)))
        op = data.draw(st.sampled_from(["set", "insert", "delete", "move"]))
        if op == "set" and pos < len(b):
            b[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            b.insert(pos, data.draw(st.integers(0, 255)))
        elif op == "delete" and pos < len(b):
            del b[pos]
        elif op == "move" and i + 1 < len(cands):
            b += cands[i + 1][:pos]
            cands[i + 1] = cands[i + 1][pos:]
        cands[i] = bytes(b)
    missed = set(shapes.unmatched("k", cands))
    for i, c in enumerate(cands):
        assert i in missed or _strict_ok(c), c


def test_body_regex_refuses_every_non_canonical_form():
    from trust.ledger.codec import Shapes
    shapes = Shapes()
    good = {"a": 1, "b": "text", "c": b"\x00\xff", "d": None, "e": True, "f": -300, "g": 1 << 40}
    shapes.learn("k", good)
    ok = encode_body(good)
    assert list(shapes.unmatched("k", [ok])) == []
    variants = [
        ok.replace(b"\x61a\x01", b"\x61a\x18\x01"),               # non-minimal integer
        ok.replace(b"\x61f\x39\x01\x2b", b"\x61f\x3a\x00\x00\x01\x2b"),  # non-minimal negative integer
        ok.replace(b"\x64text", b"\x78\x04text"),                 # non-minimal length
        ok.replace(b"\x64text", b"\x7f\x64text\xff"),             # indefinite-length text
        ok.replace(b"\x61a\x01", b"\x61a\xf9\x3c\x00"),           # float
        ok.replace(b"\x61a\x01", b"\x61a\xc1\x01"),               # tag
        ok.replace(b"\x61a\x01", b"\x61a\xc2\x41\x01"),           # bignum
        ok.replace(b"\xf6", b"\xf7"),                             # undefined
        ok.replace(b"\x64text", b"\x64te\xffx"),                  # invalid UTF-8
        ok.replace(b"\x64text", "\x64tèx".encode()),              # canonical, but not ASCII
        ok + b"\x00",                                             # trailing byte
        ok[:-1],                                                  # truncated
        b"\xa8" + ok[1:] + b"\x61h\x01",                          # canonical, but a key the regex does not know
        ok.replace(b"\x61a\x01", b"\x61b\x01"),                   # duplicate key
        ok.replace(b"\x61a\x01\x61b", b"\x61b\x01\x61a"),         # keys out of order
    ]
    assert set(shapes.unmatched("k", variants)) == set(range(len(variants)))
    assert [_strict_ok(v) for v in variants] == [False] * 9 + [True, False, False, True, False, False]


def _one_kind_ledger(path: Path, me: Identity, n: int) -> None:
    led = Ledger(path, me)
    led.append_many([("observation", {"n": i % 7, "at": 1_700_000_000_000 + i, "ev": f"chunk {i} verified",
                                      "peer": OTHERS[i % 5].peer_id, "bytes": 262144 + i}) for i in range(n)])
    led.sign_head()
    led.close()


def _set_body(path: Path, idx: int, body: bytes) -> None:
    """Store another body and its matching leaf: only the body checks (and the heads) can tell."""
    db = sqlite3.connect(path)
    ts, kind = db.execute("SELECT ts, kind FROM entries WHERE idx = ?", (idx,)).fetchone()
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?",
               (body, leaf_hash(leaf_data(idx, ts, kind, body)), idx))
    db.commit()
    db.close()


def _tamper_one_kind_ledger(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    (body,) = db.execute("SELECT body FROM entries WHERE idx = 600").fetchone()
    db.close()
    assert body.startswith(b"\xa5\x61n\x05")
    _set_body(path, 600, body.replace(b"\x61n\x05", b"\x61n\x18\x05", 1))           # non-minimal integer
    _set_body(path, 1250, body.replace(b"chunk", b"ch\xffnk", 1))                    # invalid UTF-8
    _flip_last_byte(path, "entries", "body", "idx", 1100)
    _flip_last_byte(path, "entries", "leaf", "idx", 1000)
    edit(path, ("UPDATE entries SET kind = 'rating' WHERE idx = 700", ()),
         ("UPDATE entries SET ts = ts + 1 WHERE idx = 900", ()))
    return {"entry 600", "entry 700", "entry 900", "entry 1000", "entry 1100", "entry 1250", "head seq 1"}


def test_audit_of_one_kind_checks_bodies_without_decoding_them(tmp_path, me, monkeypatch):
    import trust.ledger.codec as codec
    import trust.ledger.scan as mod
    monkeypatch.setattr(mod, "_shapes", codec.Shapes())
    decoded = []
    real = mod.decode_body
    monkeypatch.setattr(mod, "decode_body", lambda data: decoded.append(data) or real(data))
    path = tmp_path / "l.db"
    _one_kind_ledger(path, me, 1300)
    led = Ledger(path, readonly=True, owner=me.peer_id)
    sql: list[str] = []
    led._db.set_trace_callback(sql.append)
    report = led.audit(workers=1)
    led.close()
    assert report.ok and report.entries == 1300, report.problems
    assert len(decoded) == mod.SUB  # only the first batch, which teaches the kind's regex
    assert not any(q.startswith(mod._SQL_RANGE.split("?")[0]) for q in sql)  # neither idx nor kind fetched
    expected = _tamper_one_kind_ledger(path)
    report = audit(path, me, workers=1)
    assert expected <= wheres(report), report.problems
    msgs = {str(p) for p in report.problems}
    assert any(m.startswith("entry 600: body is not canonical CBOR") for m in msgs), msgs
    assert any(m.startswith("entry 1250: body is not canonical CBOR") for m in msgs), msgs


def test_audit_of_one_kind_in_worker_processes_names_tampered_entries(tmp_path, me, monkeypatch):
    import trust.ledger.audit as mod
    monkeypatch.setattr(mod, "PARALLEL_ROWS", 10)
    monkeypatch.setattr(mod, "CHUNK", 1024)
    path = tmp_path / "l.db"
    _one_kind_ledger(path, me, 2500)
    assert audit(path, me, workers=2).ok
    expected = _tamper_one_kind_ledger(path)
    assert expected <= wheres(audit(path, me, workers=2))


def test_audit_when_idx_is_not_the_rowid(tmp_path, me):
    path = tmp_path / "l.db"
    _one_kind_ledger(path, me, 1300)
    db = sqlite3.connect(path)
    db.executescript("ALTER TABLE entries RENAME TO old; CREATE TABLE entries (idx INT, ts INTEGER, kind TEXT, "
                     "body BLOB, leaf BLOB); INSERT INTO entries SELECT * FROM old; DROP TABLE old;")
    db.close()
    assert audit(path, me).ok
    expected = _tamper_one_kind_ledger(path)
    edit(path, ("INSERT INTO entries SELECT * FROM entries WHERE idx = 300", ()))  # idx 300 twice
    assert expected | {"entry 301"} <= wheres(audit(path, me))


def test_leaf_data_round_trip():
    data = leaf_data(7, 123, "peer-head", b"\xa0")
    assert data == struct.pack(">QQB", 7, 123, 9) + b"peer-head" + b"\xa0"
    assert parse_leaf_data(data) == (7, 123, "peer-head", b"\xa0")
    for bad in (b"", data[:17], struct.pack(">QQB", 1, 2, 0) + b"\xa0", struct.pack(">QQB", 1, 2, 3) + b"A-B\xa0"):
        with pytest.raises(DecodeError):
            parse_leaf_data(bad)


# --- heads -----------------------------------------------------------------------------------------


def test_heads_sign_and_increase(tmp_path, me):
    led = Ledger(tmp_path / "l.db", me)
    assert led.latest_head() is None
    envs = []
    for i in range(4):  # faster than the clock: ts is bumped so it still strictly increases
        led.append("observation", obs(i))
        envs.append(led.sign_head())
    heads = [open_tree_head(e) for e in envs]
    assert [h.seq for h in heads] == [1, 2, 3, 4]
    assert [h.size for h in heads] == [1, 2, 3, 4]
    assert all(a.timestamp < b.timestamp for a, b in zip(heads, heads[1:]))
    assert all(h.issuer == me.peer_id for h in heads)
    assert heads[-1].root == led.root()
    latest = led.latest_head()
    assert latest.envelope == envs[-1] and latest.seq == 4 and [h.seq for h in led.heads()] == [1, 2, 3, 4]
    assert open_tree_head(led.sign_head()).size == 4  # re-signing an unchanged tree is allowed
    with pytest.raises(LedgerError, match="identity"):
        Ledger(tmp_path / "l2.db").sign_head()


def test_ledger_refuses_another_identity_and_foreign_files(tmp_path, me, other_identity):
    led = Ledger(tmp_path / "l.db", me)
    led.sign_head()
    led.close()
    with pytest.raises(LedgerError, match="belongs to"):
        Ledger(tmp_path / "l.db", other_identity)
    foreign = tmp_path / "foreign.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(LedgerOpenError):
        Ledger(foreign)
    with pytest.raises(LedgerOpenError):
        Ledger(foreign, readonly=True)
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(LedgerOpenError):
        Ledger(tmp_path / "junk.db", readonly=True)
    with pytest.raises(LedgerOpenError):
        Ledger(tmp_path / "missing.db", readonly=True)
    ro = Ledger(tmp_path / "l.db", readonly=True)
    with pytest.raises(LedgerError, match="read-only"):
        ro.append("observation", obs(1))


# --- proofs ----------------------------------------------------------------------------------------


def test_prove_and_verify_round_trip(healthy, me):
    led = Ledger(healthy, readonly=True)
    for index in (0, 17, 31, 45):
        bundle = json.loads(json.dumps(led.prove(index)))
        assert set(bundle) == {"head", "index", "leaf_data", "proof"}
        head, idx = verify_proof_bundle(bundle, issuer=me.peer_id)
        assert idx == index and head.size == 46 and head.seq == 3
        assert parse_leaf_data(base64.b64decode(bundle["leaf_data"]))[0] == index
    with pytest.raises(ProofError, match="not covered"):
        led.prove(46)


def test_proof_failures(healthy, me, other_identity):
    led = Ledger(healthy, readonly=True)
    bundle = led.prove(12)
    # wrong index: the leaf data says 12
    b = dict(bundle, index=13)
    with pytest.raises(ProofError, match="entry 12"):
        verify_proof_bundle(b)
    # a proof for one entry presented with another entry's leaf data
    b = dict(led.prove(13), proof=bundle["proof"])
    with pytest.raises(ProofError):
        verify_proof_bundle(b)
    # tampered leaf data: one byte of a string in the body (still canonical CBOR)
    data = bytearray(base64.b64decode(bundle["leaf_data"]))
    data[-5] ^= 0x01
    b = dict(bundle, leaf_data=base64.b64encode(bytes(data)).decode())
    with pytest.raises(ProofError, match="root mismatch"):
        verify_proof_bundle(b)
    # a head from another key: same size and root, but not the ledger owner's signature
    head = open_tree_head(base64.b64decode(bundle["head"]))
    forged = sign_tree_head(other_identity, head.size, head.root, head.timestamp, head.seq)
    b = dict(bundle, head=base64.b64encode(forged).decode())
    verify_proof_bundle(b)  # a valid signature by someone...
    with pytest.raises(SignatureError, match="not by"):
        verify_proof_bundle(b, issuer=me.peer_id)  # ...but not by the owner
    # a head from another key over another tree
    other = sign_tree_head(other_identity, head.size, hashlib.sha256(b"x").digest(), head.timestamp, head.seq)
    with pytest.raises(ProofError):
        verify_proof_bundle(dict(bundle, head=base64.b64encode(other).decode()))
    # a broken signature on the head
    raw = bytearray(base64.b64decode(bundle["head"]))
    raw[-1] ^= 0x01
    with pytest.raises(SignatureError):
        verify_proof_bundle(dict(bundle, head=base64.b64encode(bytes(raw)).decode()))
    # malformed bundles
    for bad in ([], dict(bundle, extra=1), {k: v for k, v in bundle.items() if k != "proof"},
                dict(bundle, index=True), dict(bundle, proof="abc"), dict(bundle, head="!!!"),
                dict(bundle, proof=["***"])):
        with pytest.raises(DecodeError):
            verify_proof_bundle(bad)
    with pytest.raises(ProofError):
        verify_proof_bundle(dict(bundle, proof=bundle["proof"][:-1]))


# --- audit -----------------------------------------------------------------------------------------


def test_audit_passes_on_a_healthy_ledger(healthy, me):
    report = audit(healthy, me)
    assert report.ok, report.problems
    assert (report.entries, report.heads) == (46, 3)
    assert report.envelopes == 4 + 1 + 1 + 3  # received, issued, peer-head entries, own heads
    assert report.equivocations_found == []
    assert audit(healthy, me, workers=1).ok
    assert audit(healthy).ok  # owner from the file
    json.dumps(report.to_dict())


def test_audit_parallel_path_matches(healthy, me, monkeypatch):
    import trust.ledger.audit as mod
    import trust.ledger.scan as scan_mod
    monkeypatch.setattr(mod, "PARALLEL_ROWS", 10)
    monkeypatch.setattr(mod, "PARALLEL_SIGNATURES", 2)
    monkeypatch.setattr(mod, "CHUNK", 8)
    monkeypatch.setattr(scan_mod, "SUB", 4)
    pools = []

    class CountingPool(mod.ProcessPoolExecutor):
        def __init__(self, *a, **kw):
            pools.append(self)
            super().__init__(*a, **kw)
    monkeypatch.setattr(mod, "ProcessPoolExecutor", CountingPool)
    report = audit(healthy, me, workers=2)
    assert len(pools) == 1  # the scan and the signature checks ran in worker processes
    assert report.ok, report.problems
    assert report.envelopes == 9
    edit(healthy, ("UPDATE entries SET leaf = ? WHERE idx = 21", (bytes(32),)),
         ("DELETE FROM entries WHERE idx = 40", ()))
    report = audit(healthy, me, workers=2)
    assert {"entry 21", "entry 40", "head seq 3"} <= wheres(report), report.problems


def test_audit_goes_on_alone_without_a_core_to_spare(healthy, monkeypatch):
    import trust.ledger.audit as mod
    from concurrent.futures import Future

    class Pending(Future):  # a helper's task: runs only when its result is asked for
        def __init__(self, fn, args, done):
            super().__init__()
            self.call, self.finished = (fn, args), done

        def done(self):
            return self.finished

        def result(self, timeout=None):
            return self.call[0](*self.call[1])

    # a core to spare: helpers take all they can; none: this process stops handing out after two tasks
    for starved, finished, remote in ((False, True, 10), (True, False, 2)):
        class Pool:
            def __init__(self, *a, **kw):
                pass

            def submit(self, fn, *args):
                return Pending(fn, args, finished)

            def shutdown(self, **kw):
                pass
        monkeypatch.setattr(mod, "ProcessPoolExecutor", Pool)
        if starved:  # no CPU time passes while this process works: it gets no core at all
            monkeypatch.setattr(mod.time, "process_time", lambda: 0.0)
        led = Ledger(healthy, readonly=True)
        try:
            run = mod.Audit(led, led._db, 2, None, 0.0)._spread(lambda i: ("helper", i), lambda i: ("here", i),
                                                         [(i,) for i in range(10)])
            assert list(run) == [("helper", i) for i in range(remote)] + [("here", i) for i in range(remote, 10)]
        finally:
            led.close()


def test_audit_rejects_another_owner(healthy, other_identity):
    report = audit(healthy, other_identity)
    assert not report.ok
    assert "ledger" in wheres(report) and {"head seq 1", "head seq 2", "head seq 3"} <= wheres(report)


def _flip_last_byte(path: Path, table: str, col: str, key: str, keyval: int) -> None:
    db = sqlite3.connect(path)
    (blob,) = db.execute(f"SELECT {col} FROM {table} WHERE {key} = ?", (keyval,)).fetchone()
    db.execute(f"UPDATE {table} SET {col} = ? WHERE {key} = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), keyval))
    db.commit()
    db.close()


def _swap(path: Path, a: int, b: int) -> None:
    edit(path, ("UPDATE entries SET idx = -1 WHERE idx = ?", (a,)), ("UPDATE entries SET idx = ? WHERE idx = ?", (a, b)),
         ("UPDATE entries SET idx = ? WHERE idx = -1", (b,)))


def _resign_att_with_bad_sig(path: Path, idx: int) -> None:
    """Corrupt the signature of the attestation in entry idx, keep the body canonical CBOR and
    even recompute the leaf: only the signature check and the signed heads can tell."""
    db = sqlite3.connect(path)
    ts, kind, body = db.execute("SELECT ts, kind, body FROM entries WHERE idx = ?", (idx,)).fetchone()
    value = encoding.decode(body, 1 << 20)
    env = encoding.decode(value["envelope"], 1 << 20)
    env[5] = env[5][:-1] + bytes([env[5][-1] ^ 1])
    value["envelope"] = encoding.encode(env)
    new = encoding.encode(value)
    db.execute("UPDATE entries SET body = ?, leaf = ? WHERE idx = ?", (new, leaf_hash(leaf_data(idx, ts, kind, new)), idx))
    db.commit()
    db.close()


TAMPER = {
    "body byte": (lambda p: _flip_last_byte(p, "entries", "body", "idx", 7), {"entry 7", "head seq 1"}),
    "leaf": (lambda p: edit(p, ("UPDATE entries SET leaf = ? WHERE idx = 7", (hashlib.sha256(b"x").digest(),))),
             {"entry 7"}),
    "ts": (lambda p: edit(p, ("UPDATE entries SET ts = ts + 1 WHERE idx = 7", ())), {"entry 7", "head seq 1"}),
    "delete middle": (lambda p: edit(p, ("DELETE FROM entries WHERE idx = 20", ())), {"entry 20", "head seq 2"}),
    "swap": (lambda p: _swap(p, 12, 25), {"entry 12", "entry 25", "head seq 2"}),
    "head root": (lambda p: edit(p, ("UPDATE heads SET root = ? WHERE seq = 2", (bytes(32),))), {"head seq 2"}),
    "head signature": (lambda p: _flip_last_byte(p, "heads", "envelope", "seq", 2), {"head seq 2"}),
    "attestation signature": (lambda p: _resign_att_with_bad_sig(p, 31), {"entry 31", "head seq 3"}),
    "truncate": (lambda p: edit(p, ("DELETE FROM entries WHERE idx >= 40", ())), {"head seq 3"}),
    "delete head": (lambda p: edit(p, ("DELETE FROM heads WHERE seq = 2", ())), {"head seq 2"}),
    "non-canonical body": (lambda p: edit(p, ("UPDATE entries SET body = ? WHERE idx = 3",
                                              (cbor2.dumps(dict(reversed(list(obs(3).items())))),))),
                           {"entry 3", "head seq 1"}),
}


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_audit_catches_tampering(healthy, me, case):
    tamper, expected = TAMPER[case]
    assert audit(healthy, me).ok
    tamper(healthy)
    report = audit(healthy, me)
    assert not report.ok
    assert expected <= wheres(report), report.problems
    # problems name only what was touched (and the heads that cover it)
    assert all(p.where.startswith(("entry", "head seq")) for p in report.problems), report.problems


def test_audit_messages_say_what_failed(healthy, me):
    _resign_att_with_bad_sig(healthy, 31)
    _flip_last_byte(healthy, "heads", "envelope", "seq", 1)
    edit(healthy, ("DELETE FROM entries WHERE idx = 20", ()), ("UPDATE entries SET ts = 0 WHERE idx = 36", ()))
    msgs = {str(p) for p in audit(healthy, me).problems}
    assert any(m.startswith("entry 31: attestation-received: bad signature") for m in msgs), msgs
    assert any(m.startswith("head seq 1: signature check failed") for m in msgs), msgs
    assert "entry 20: is missing (entries jump from 19 to 21)" in msgs
    assert any(m.startswith("entry 36: timestamp goes backwards") for m in msgs), msgs
    assert "head seq 2: root does not match the tree rebuilt from entries 0..29" in msgs
    assert "head seq 3: covers 46 entries but the ledger has 45" in msgs


def test_audit_reports_equivocation_among_received_attestations(healthy, me):
    led = Ledger(healthy, me)
    led.append("attestation-received", att_body(OTHERS[0], OTHERS[1], 0.9))  # same slot as entry 30, new value
    led.sign_head()
    report = led.audit()
    assert report.ok, report.problems  # a finding, not a failure of the ledger
    assert len(report.equivocations_found) == 1
    eq = report.equivocations_found[0]
    assert eq.issuer == OTHERS[0].peer_id and eq.kind == Attestation.TAG
    assert verify_equivocation(eq.to_bytes()).issuer == OTHERS[0].peer_id


def test_audit_calls_trust_check(healthy, me):
    seen = []

    def check(ledger):
        seen.append(ledger.size)
        return [Problem("entry 40", "stored trust differs")]
    report = audit(healthy, me, trust_check=check)
    assert seen == [46] and not report.ok and [str(p) for p in report.problems] == ["entry 40: stored trust differs"]

    def broken(ledger):
        raise KeyError("x")
    report = audit(healthy, me, trust_check=broken)
    assert not report.ok and report.problems[0].where == "trust check"


# --- equivocation ----------------------------------------------------------------------------------


def test_add_peer_head_detects_equivocation(tmp_path, me):
    peer = OTHERS[0]
    led = Ledger(tmp_path / "l.db", me)
    r1, r2 = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
    h1 = sign_tree_head(peer, 5, r1, 1000, 1)
    assert led.add_peer_head(h1) is None
    assert led.add_peer_head(h1) is None  # the same head again
    assert led.add_peer_head(sign_tree_head(peer, 9, r2, 1001, 2)) is None
    # another head with seq 1
    eq = led.add_peer_head(sign_tree_head(peer, 6, r2, 1002, 1))
    assert isinstance(eq, Equivocation) and eq.issuer == peer.peer_id and eq.kind == TreeHead.TAG
    assert led.equivocators() == {peer.peer_id}
    # two heads of the same size with different roots (a forked log), different seq
    other = OTHERS[1]
    assert led.add_peer_head(sign_tree_head(other, 5, r1, 1000, 1)) is None
    eq2 = led.add_peer_head(sign_tree_head(other, 5, r2, 1001, 2))
    assert eq2 is not None and verify_equivocation(eq2.to_bytes()).issuer == other.peer_id
    assert led.equivocators() == {peer.peer_id, other.peer_id}
    assert len(led.equivocations()) == 2 and len(led.peer_heads(peer.peer_id)) == 3
    # a bad signature is refused and nothing is stored
    bad = bytearray(sign_tree_head(OTHERS[2], 1, r1, 1, 1))
    bad[-1] ^= 1
    with pytest.raises(SignatureError):
        led.add_peer_head(bytes(bad))
    assert OTHERS[2].peer_id not in {h.issuer for h in led.peer_heads()}
    # attestation equivocation, recorded once
    a = sign_attestation(OTHERS[3], peer.peer_id, 0.1, 4, 1, bytes(32))
    b = sign_attestation(OTHERS[3], peer.peer_id, 0.2, 4, 1, bytes(32))
    proof = check_equivocation(a, b, Attestation.TAG)
    assert led.record_equivocation(proof) is True and led.record_equivocation(proof) is False
    assert OTHERS[3].peer_id in led.equivocators()
    report = led.audit()
    assert report.ok, report.problems
    assert {e.issuer for e in report.equivocations_found} == {peer.peer_id, other.peer_id}
    # a stored proof that no longer verifies is an audit problem
    edit(tmp_path / "l.db", ("UPDATE equivocations SET proof = ? WHERE issuer = ?", (b"\xa0", OTHERS[3].peer_id)))
    assert any(p.where.startswith("equivocation ") for p in audit(tmp_path / "l.db", me).problems)


def test_split_view_and_rollback_of_our_own_heads(tmp_path, me):
    path = tmp_path / "l.db"
    led = Ledger(path, me)
    led.append_many([("observation", obs(i)) for i in range(4)])
    led.sign_head()
    # a peer shows us a different head of ours with seq 1: we signed two heads (or were forked)
    forged = sign_tree_head(me, 4, hashlib.sha256(b"other").digest(), 5, 1)
    eq = led.add_peer_head(forged)
    assert eq is not None and eq.issuer == me.peer_id
    assert "peer head " + me.peer_id + " seq 1" in wheres(led.audit())
    # rollback: a peer holds our head seq 2 that our (restored) ledger no longer has
    path2 = tmp_path / "l2.db"
    led2 = Ledger(path2, me)
    led2.append("observation", obs(0))
    led2.sign_head()
    led2.close()
    backup = {s: Path(str(path2) + s).read_bytes() for s in ("",) if Path(str(path2) + s).exists()}
    led2 = Ledger(path2, me)
    led2.append("observation", obs(1))
    newer = led2.sign_head()
    led2.close()
    for s, data in backup.items():
        Path(str(path2) + s).write_bytes(data)
    led2 = Ledger(path2, me)
    assert led2.audit().ok  # alone, a rolled-back ledger looks fine...
    assert led2.add_peer_head(newer) is None
    report = led2.audit()  # ...until a peer shows us a newer head of ours
    assert any("rolled back" in p.what for p in report.problems), report.problems


# --- crash safety ----------------------------------------------------------------------------------

CHILD = r"""
import sys
from pathlib import Path
from trust.identity import Identity
from trust.ledger import Ledger
led = Ledger(Path(sys.argv[1]), Identity.from_seed(bytes(range(32))))
i = led.size // 100
first = True
while True:
    led.append_many([("observation", {"n": i * 100 + j, "pad": "x" * 120, "peer": "p"}) for j in range(100)])
    i += 1
    if i % 3 == 0:
        led.sign_head()
    if first:
        print("writing", flush=True)
        first = False
"""


def test_sigkill_at_any_moment_loses_at_most_the_batch_in_flight(tmp_path):
    path = tmp_path / "ledger.db"
    rng = random.Random()
    delays = [rng.uniform(0.02, 0.15), rng.uniform(0.15, 0.4), rng.uniform(0.4, 0.8)]
    last = 0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for delay in delays:
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, env=env, cwd=REPO)
        try:
            assert proc.stdout.readline() == b"writing\n"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        report = audit(path)
        assert report.ok, (delays, report.problems)
        led = Ledger(path, readonly=True)
        size = led.size
        assert size % 100 == 0 and size > last, (delays, size, last)
        assert report.entries == size
        heads = led.heads()
        assert heads and heads[-1].size <= size
        led.close()
        last = size


# --- durability off the event loop, threads ----------------------------------------------------------


def _fsyncs(monkeypatch, delay: float = 0.0, started: Any = None) -> list[tuple[str, float, float]]:
    """Record every os.fsync from Python as (path, start, end), each made to take `delay` s (a slow
    disk); `started` (a threading.Event) is set when the first one begins. SQLite's own fsyncs
    (from C) are not seen."""
    calls: list[tuple[str, float, float]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        t0 = time.perf_counter()
        if started is not None:
            started.set()
        if delay:
            time.sleep(delay)
        real(fd)
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.isdir("/proc/self/fd") else str(fd)
        calls.append((name, t0, time.perf_counter()))

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the fsynced files")
def test_sign_head_fsyncs_the_wal_before_it_returns(tmp_path, me, monkeypatch):
    """The head commits with synchronous=NORMAL; the WAL fsync after it is what makes the head
    (and every entry before it) durable, and it happens before sign_head returns."""
    led = Ledger(tmp_path / "l.db", me)
    led.append_many([("observation", obs(i)) for i in range(5)])
    calls = _fsyncs(monkeypatch)
    env = led.sign_head()
    assert open_tree_head(env).size == 5
    assert [c[0] for c in calls][:1] == [str((tmp_path / "l.db-wal").resolve())], calls
    assert str(tmp_path.resolve()) in [c[0] for c in calls]  # the WAL's directory entry, once
    calls.clear()
    led.append("observation", obs(5))
    led.sign_head()
    assert [c[0] for c in calls] == [str((tmp_path / "l.db-wal").resolve())]
    led.close()


def test_appends_go_on_while_a_head_is_fsynced(tmp_path, me, monkeypatch):
    """The fsync runs outside the connection lock: a thread signing a head on a slow disk does not
    hold up appends from another thread (the event loop's, in the node)."""
    import threading

    led = Ledger(tmp_path / "l.db", me)
    led.append("observation", obs(0))
    fsyncing = threading.Event()
    calls = _fsyncs(monkeypatch, delay=0.5, started=fsyncing)
    signer = threading.Thread(target=led.sign_head)
    signer.start()
    assert fsyncing.wait(5)
    t0 = time.perf_counter()
    for i in range(1, 21):
        led.append("observation", obs(i))
    appending = time.perf_counter() - t0
    signer.join()
    assert calls and calls[0][2] - calls[0][1] >= 0.5  # the head's fsync did take its time
    assert appending < 0.25, f"20 appends took {appending:.3f} s while the head was fsynced"
    assert led.latest_head().size == 1 and led.size == 21
    assert led.audit(workers=1).ok
    led.close()


def test_ledger_shared_between_threads_stays_consistent(tmp_path, me):
    """A worker thread signs heads and checkpoints while this one appends, stores peer heads and
    reads: every head is consistent with the ledger and the audit passes."""
    import threading

    led = Ledger(tmp_path / "l.db", me, background_checkpoints=True)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            while not stop.is_set():
                led.sign_head()
                led.checkpoint()
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    try:
        for i in range(300):
            led.append_many([("observation", obs(i)), ("observation", obs(i + 1))])
            if i % 10 == 0:
                led.add_peer_head(sign_tree_head(OTHERS[0], i, bytes(32), 1_700_000_000 + i, i + 1))
            assert led.size == 2 * (i + 1)
            list(led.entries(max(0, led.size - 3)))
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    heads = led.heads()
    assert len(heads) > 1 and [h.seq for h in heads] == list(range(1, len(heads) + 1))
    assert all(h.root == led.root(h.size) for h in heads)
    report = led.audit(workers=1)
    assert report.ok, report.problems
    led.close()


def test_background_checkpoints_move_the_wal_copy_off_the_writers(tmp_path, me, monkeypatch):
    """With background_checkpoints, commits never checkpoint (SQLite's auto-checkpoint fsyncs on
    whichever commit fills the WAL); checkpoint() does, when due; a writer does it itself only
    when nobody did for MAX_UNCHECKPOINTED commits."""
    import trust.ledger.log as ledger_mod

    path = tmp_path / "l.db"
    led = Ledger(path, me, background_checkpoints=True)
    db_size = path.stat().st_size
    for i in range(ledger_mod.CHECKPOINT_AFTER - 1):
        led.append("observation", obs(i))
    assert not led.checkpoint_due
    led.append("observation", obs(999))
    assert led.checkpoint_due and path.stat().st_size == db_size  # all of it still in the WAL only
    led.checkpoint()
    assert not led.checkpoint_due and path.stat().st_size > db_size  # copied into the database
    monkeypatch.setattr(ledger_mod, "MAX_UNCHECKPOINTED", 300)
    db_size = path.stat().st_size
    for i in range(299):
        led.append("observation", obs(i))
    assert led.checkpoint_due and path.stat().st_size == db_size
    led.append("observation", obs(299))  # the 300th commit without checkpoint(): inline
    assert not led.checkpoint_due and path.stat().st_size > db_size
    assert led.audit(workers=1).ok
    led.close()
    assert Ledger(path, readonly=True).size == ledger_mod.CHECKPOINT_AFTER + 300


@pytest.mark.parametrize("slow_part", ["sign_head", "fsync"])
def test_tick_signs_the_head_off_the_event_loop(tmp_path, me, monkeypatch, slow_part):
    """ReputationService.tick signs the head in a worker thread: with a sign_head that blocks for
    0.5 s (all of it, or only its fsync: then the ledger's lock must not be held meanwhile), a
    concurrent task on the event loop that writes to the ledger every 10 ms is never late by more
    than a fraction of that, and the head it publishes is durable. Entries appended meanwhile are
    not covered by this head, so the next tick signs another."""
    import trio

    from overlay.services.reputation import ReputationService
    from trust.observations import Kind, Observation

    slow = 0.5
    if slow_part == "fsync":
        _fsyncs(monkeypatch, delay=slow)  # a disk that takes its time over the fsync
    else:
        real_sign_head = Ledger.sign_head

        def slow_sign_head(self: Ledger) -> bytes:
            time.sleep(slow)
            return real_sign_head(self)

        monkeypatch.setattr(Ledger, "sign_head", slow_sign_head)
    rs = ReputationService(tmp_path, me)
    rs.record(Observation(OTHERS[0].peer_id, Kind.CHUNK_VERIFIED, count=1))
    published: list[bytes] = []

    async def publish(what: str, data: bytes) -> None:
        published.append(data)

    rs._publish = publish  # type: ignore[method-assign]

    async def main() -> tuple[list[float], float]:
        lags: list[float] = []
        took = 0.0
        done = trio.Event()

        async def ticker() -> None:
            nonlocal took
            t0 = time.perf_counter()
            await rs.tick()
            took = time.perf_counter() - t0
            done.set()

        async def serving() -> None:  # stands in for the node serving and recording evidence
            i = 0
            while not done.is_set():
                t0 = time.perf_counter()
                await trio.sleep(0.01)
                lags.append(time.perf_counter() - t0 - 0.01)
                rs.record(Observation(OTHERS[i % 5].peer_id, Kind.CHUNK_VERIFIED, count=1))
                i += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(serving)
            nursery.start_soon(ticker)
        return lags, took

    try:
        lags, took = trio.run(main)
        assert took >= slow and len(lags) >= 10
        assert max(lags) < 0.25, f"event loop stalled {max(lags):.3f} s during the tick"
        head = open_tree_head(published[-1])
        assert rs.ledger.latest_head().envelope == published[-1] and rs._head_size == head.size
        assert rs.ledger.size > head.size  # the loop kept appending while the head was signed
        published.clear()
        trio.run(rs.tick)
        assert open_tree_head(published[-1]).size == rs.ledger.size
    finally:
        rs.close()


# --- command line ----------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, me) -> Path:
    from overlay.home import Home
    h = Home(tmp_path / "home")
    h.create()
    keyfile.save_identity(h.key_file, me)
    build(h.path / "ledger.db", me).close()
    return h.path


def test_cli_audit_exit_codes(home, tmp_path):
    db = home / "ledger.db"
    before = hashlib.sha256(db.read_bytes()).digest()
    proc = run_cli("ledger", "audit", home=home)
    assert proc.returncode == 0, proc.stderr
    assert b"OK: 46 entries, 3 signed heads" in proc.stdout
    assert hashlib.sha256(db.read_bytes()).digest() == before  # audit does not write
    report = json.loads(run_cli("ledger", "audit", "--json", home=home, check=True).stdout)
    assert report["ok"] is True and report["entries"] == 46 and report["problems"] == []

    edit(db, ("DELETE FROM entries WHERE idx = 20", ()))
    proc = run_cli("ledger", "audit", home=home)
    assert proc.returncode == 1
    assert b"FAIL entry 20: is missing" in proc.stdout and b"FAIL head seq 2:" in proc.stdout
    report = json.loads(run_cli("ledger", "audit", "--json", home=home).stdout)
    assert report["ok"] is False and {"where": "entry 20", "what": "is missing (entries jump from 19 to 21)"} \
        in report["problems"]

    proc = run_cli("ledger", "audit", home=tmp_path / "nowhere")
    assert proc.returncode == 2 and b"no ledger at" in proc.stderr
    db.write_bytes(b"garbage" * 1000)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    proc = run_cli("ledger", "audit", home=home)
    assert proc.returncode == 2 and b"error:" in proc.stderr


def test_cli_show_tail_export(home):
    rows = json.loads(run_cli("ledger", "show", "--from", "30", "-n", "2", "--json", home=home, check=True).stdout)
    assert [r["idx"] for r in rows] == [30, 31] and rows[0]["kind"] == "attestation-received"
    assert base64.b64decode(rows[0]["body"]["envelope"])  # bytes shown as base64
    rows = json.loads(run_cli("ledger", "tail", "-n", "3", "--json", home=home, check=True).stdout)
    assert [r["idx"] for r in rows] == [43, 44, 45]
    out = run_cli("ledger", "tail", "-n", "2", home=home, check=True).stdout.decode()
    assert "observation" in out and "44" in out and "45" in out
    out = run_cli("ledger", "show", "--from", "34", "-n", "1", home=home, check=True).stdout.decode()
    assert "attestation-issued" in out
    lines = run_cli("ledger", "export", home=home, check=True).stdout.decode().splitlines()
    assert len(lines) == 46
    # the export alone rebuilds the tree under the signed head
    recs = [json.loads(line) for line in lines]
    leaves = [leaf_hash(leaf_data(r["idx"], r["ts"], r["kind"], base64.b64decode(r["body_cbor"]))) for r in recs]
    assert [base64.b64decode(r["leaf"]) for r in recs] == leaves
    led = Ledger(home / "ledger.db", readonly=True)
    assert root(leaves) == led.latest_head().root


def test_cli_prove_and_verify_proof(home, tmp_path, me):
    proc = run_cli("ledger", "prove", "17", home=home, check=True)
    bundle = json.loads(proc.stdout)
    f = tmp_path / "proof.json"
    f.write_bytes(proc.stdout)
    proc = run_cli("ledger", "verify-proof", str(f), "--issuer", me.peer_id)
    assert proc.returncode == 0 and b"OK entry 17 (observation" in proc.stdout
    info = json.loads(run_cli("ledger", "verify-proof", "-", "--json", input=f.read_bytes(), check=True).stdout)
    assert info["ok"] and info["entry"]["index"] == 17 and info["head_seq"] == 3
    bad = dict(bundle, index=18)
    proc = run_cli("ledger", "verify-proof", "-", input=json.dumps(bad).encode())
    assert proc.returncode == 1 and proc.stdout.startswith(b"FAIL")
    proc = run_cli("ledger", "verify-proof", "-", "--issuer", OTHERS[0].peer_id, input=f.read_bytes())
    assert proc.returncode == 1 and b"not by" in proc.stdout
    assert run_cli("ledger", "verify-proof", "-", input=b"{not json").returncode == 1
    assert run_cli("ledger", "verify-proof", str(tmp_path / "missing.json")).returncode == 2
    proc = run_cli("ledger", "prove", "46", home=home)
    assert proc.returncode == 1 and b"not covered" in proc.stderr


def test_cli_help_has_examples():
    for cmd in ("audit", "show", "tail", "prove", "verify-proof", "export"):
        out = run_cli("ledger", cmd, "--help", check=True).stdout.decode()
        assert "Example" in out, cmd
