"""The verified store: nothing unverified is written, nothing partial is visible."""
import os
from pathlib import Path

import pytest

from overlay.store import ContentStore
from trust import merkle
from trust.errors import DecodeError, ProofError, SignatureError, StoreError
from trust.manifest import MIN_CHUNK_SIZE

CHUNK = MIN_CHUNK_SIZE


def make_file(tmp_path: Path, size: int, name: str = "f.bin") -> Path:
    p = tmp_path / name
    p.write_bytes(os.urandom(size))
    return p


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under root with its bytes, except SQLite's own files."""
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and not p.name.startswith("store.db")}


@pytest.fixture
def published(tmp_path, identity):
    src = make_file(tmp_path, 5 * CHUNK + 123)
    pub = ContentStore(tmp_path / "pub")
    item = pub.add_file(src, identity, chunk_size=CHUNK)
    yield pub, item, src
    pub.close()


def test_share_then_fetch_round_trip(tmp_path, published):
    pub, item, src = published
    assert item.manifest.chunk_count == 6 and item.manifest.size == src.stat().st_size
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    for i in reversed(range(item.manifest.chunk_count)):
        data, proof = pub.read_chunk(item.cid, i)
        dst.put_chunk(item.cid, i, data, proof)
    done = dst.finish(item.cid)
    assert done.complete
    out = tmp_path / "out.bin"
    dst.export(item.cid, out)
    assert out.read_bytes() == src.read_bytes()
    assert dst.verify(item.cid).ok
    dst.close()


def test_empty_file(tmp_path, identity):
    src = make_file(tmp_path, 0)
    pub = ContentStore(tmp_path / "pub")
    item = pub.add_file(src, identity)
    assert item.manifest.chunk_count == 0 and item.manifest.root == merkle.EMPTY_ROOT
    dst = ContentStore(tmp_path / "dst")
    assert dst.begin(item.cid, item.signed_manifest).complete
    dst.export(item.cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b""


@pytest.mark.parametrize("attack", ["flip_data", "wrong_index_proof", "short_proof", "wrong_size_proof",
                                    "flip_proof", "short_chunk", "long_chunk", "other_content"])
def test_bad_chunk_is_refused_before_any_write(tmp_path, published, identity, attack):
    pub, item, src = published
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    dst.flush(item.cid)
    before = snapshot(tmp_path / "dst")
    data, proof = pub.read_chunk(item.cid, 2)
    index = 2
    if attack == "flip_data":
        data = bytes([data[0] ^ 1]) + data[1:]
    elif attack == "wrong_index_proof":
        data, proof = pub.read_chunk(item.cid, 3)  # valid chunk, proof for index 3, claimed as 2
    elif attack == "short_proof":
        proof = proof[:-1]
    elif attack == "wrong_size_proof":
        leaves = pub._leaves(item.cid) + [merkle.leaf_hash(b"extra")] * 3  # proof for a 9-leaf tree
        proof = merkle.MerkleTree(leaves).inclusion_proof(2)
    elif attack == "flip_proof":
        proof = [proof[0][:-1] + bytes([proof[0][-1] ^ 0x80])] + proof[1:]
    elif attack == "short_chunk":
        data = data[:-1]
    elif attack == "long_chunk":
        data = data + b"\0"
    elif attack == "other_content":
        other = pub.add_file(make_file(tmp_path, 5 * CHUNK + 123, "g.bin"), identity, chunk_size=CHUNK)
        data, proof = pub.read_chunk(other.cid, 2)
    with pytest.raises((ProofError, StoreError)):
        dst.put_chunk(item.cid, index, data, proof)
    dst.flush(item.cid)
    assert snapshot(tmp_path / "dst") == before, "a refused chunk changed files on disk"
    assert dst.missing_chunks(item.cid) == list(range(6))
    with pytest.raises(StoreError):
        dst.finish(item.cid)
    assert not dst.data_path(item.cid).exists()
    dst.close()


def test_bad_index_values(tmp_path, published):
    pub, item, _ = published
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    data, proof = pub.read_chunk(item.cid, 0)
    for bad in (-1, 6, 2**64, True):
        with pytest.raises(StoreError):
            dst.put_chunk(item.cid, bad, data, proof)


def test_manifest_for_another_cid_is_refused(tmp_path, published, identity, other_identity):
    pub, item, src = published
    other = pub.add_file(src, identity, chunk_size=CHUNK, name="renamed")
    dst = ContentStore(tmp_path / "dst")
    with pytest.raises(DecodeError):
        dst.begin(item.cid, other.signed_manifest)
    tampered = bytearray(item.signed_manifest)
    tampered[-1] ^= 1
    with pytest.raises(DecodeError):  # the CID no longer matches: caught before the signature
        dst.begin(item.cid, bytes(tampered))
    assert dst.list() == []


def test_resume_after_crash_keeps_flushed_chunks(tmp_path, published):
    pub, item, src = published
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    for i in (0, 1, 4):
        dst.put_chunk(item.cid, i, *pub.read_chunk(item.cid, i))
    dst.flush(item.cid)
    dst.put_chunk(item.cid, 5, *pub.read_chunk(item.cid, 5))  # written, never flushed: "crash" now
    dst.db.close()  # simulate the process dying: no close(), no flush
    again = ContentStore(tmp_path / "dst")
    assert again.missing_chunks(item.cid) == [2, 3, 5]
    assert not again.data_path(item.cid).exists()
    for i in again.missing_chunks(item.cid):
        again.put_chunk(item.cid, i, *pub.read_chunk(item.cid, i))
    again.finish(item.cid)
    out = tmp_path / "o"
    again.export(item.cid, out)
    assert out.read_bytes() == src.read_bytes()


def test_verify_detects_corruption_and_export_refuses(tmp_path, published):
    pub, item, src = published
    path = pub.data_path(item.cid)
    raw = bytearray(path.read_bytes())
    raw[3 * CHUNK + 7] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = pub.verify(item.cid)
    assert not report.ok and report.bad_chunks == [3]
    out = tmp_path / "out.bin"
    with pytest.raises(StoreError, match="chunk 3"):
        pub.export(item.cid, out)
    assert not out.exists() and not any(p.name.startswith(".out.bin") for p in tmp_path.iterdir())


def test_export_does_not_clobber_existing(tmp_path, published):
    pub, item, _ = published
    out = tmp_path / "exists"
    out.write_bytes(b"keep me")
    with pytest.raises(StoreError, match="already exists"):
        pub.export(item.cid, out)
    assert out.read_bytes() == b"keep me"


def test_verify_external_file(tmp_path, published):
    pub, item, src = published
    assert pub.verify_external(src, item.cid).ok
    assert pub.find_by_file(src) == [item.cid]
    bad = tmp_path / "bad"
    data = src.read_bytes()
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a flip, never a no-op
    assert not pub.verify_external(bad, item.cid).ok
    assert pub.find_by_file(bad) == []


def test_stored_manifest_tamper_is_caught(tmp_path, published):
    pub, item, _ = published
    raw = bytearray(item.signed_manifest)
    raw[-5] ^= 1
    pub.db.execute("UPDATE contents SET manifest = ? WHERE cid = ?", (bytes(raw), item.cid))
    with pytest.raises((DecodeError, SignatureError)):
        pub.verify(item.cid)


def test_serving_partial_content_is_refused(tmp_path, published):
    pub, item, _ = published
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    with pytest.raises(StoreError, match="not complete"):
        dst.read_chunk(item.cid, 0)


def test_chunk_writer_split_path_and_deferred_flush(tmp_path, published):
    """The path a fetch uses: verify+write (ChunkWriter, may run in a thread), record without an
    inline flush, then begin_flush / fsync / end_flush; a refused chunk still writes nothing."""
    pub, item, src = published
    dst = ContentStore(tmp_path / "dst")
    assert dst.lookup(item.cid) is None
    dst.begin(item.cid, item.signed_manifest)
    manifest, complete = dst.lookup(item.cid)
    assert manifest == item.manifest and not complete
    before = snapshot(tmp_path / "dst")
    data, proof = pub.read_chunk(item.cid, 1)
    with dst.chunk_writer(item.cid) as w, pytest.raises(ProofError):
        w.write(2, data, proof)  # chunk 1's bytes and proof claimed as chunk 2
    assert snapshot(tmp_path / "dst") == before
    for i in range(item.manifest.chunk_count):
        with dst.chunk_writer(item.cid) as w:
            leaf = w.write(i, *pub.read_chunk(item.cid, i))
        assert dst.record_chunk(item.cid, i, leaf, flush=False) is False  # 6 < _FLUSH_EVERY
    assert dst.missing_chunks(item.cid) == []  # pending chunks count as present
    fd, chunks = dst.begin_flush(item.cid)
    assert sorted(i for i, _ in chunks) == list(range(6)) and dst.begin_flush(item.cid) is None
    os.fsync(fd)
    os.close(fd)
    dst.end_flush(item.cid, chunks)
    dst.db.close()  # "crash" right after: the recorded chunks survive
    again = ContentStore(tmp_path / "dst")
    assert again.missing_chunks(item.cid) == []
    assert again.finish(item.cid).complete
    assert again.lookup(item.cid)[1]
    with again.chunk_writer(item.cid) as w:  # complete content: verify only
        assert w.write(0, *pub.read_chunk(item.cid, 0)) == pub._leaves(item.cid)[0]
    again.record_chunk(item.cid, 0, b"\0" * 32)  # ignored once complete
    out = tmp_path / "o"
    again.export(item.cid, out)
    assert out.read_bytes() == src.read_bytes()
    again.close()


def test_record_chunks_in_groups_and_finish_makes_unflushed_chunks_durable(tmp_path, published, monkeypatch):
    """A fetch records chunks a group at a time; finish() makes the unflushed ones durable with
    the file's one fsync before recording them and sealing the file."""
    pub, item, src = published
    dst = ContentStore(tmp_path / "dst")
    dst.begin(item.cid, item.signed_manifest)
    n = item.manifest.chunk_count
    with dst.chunk_writer(item.cid) as w:
        group = [(i, w.write(i, *pub.read_chunk(item.cid, i))) for i in range(n)]
    assert dst.record_chunks(item.cid, []) is False
    assert dst.record_chunks(item.cid, group[:2], flush=False) is False
    monkeypatch.setattr("overlay.store._FLUSH_EVERY", 3)
    assert dst.record_chunks(item.cid, group[2:], flush=False) is True  # due: the caller flushes
    assert dst.missing_chunks(item.cid) == []
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    assert dst.finish(item.cid).complete
    assert len(synced) == 2  # the data file once (not once more for the unflushed chunks), then its directory
    out = tmp_path / "o"
    dst.export(item.cid, out)
    assert out.read_bytes() == src.read_bytes()
    dst.close()


def test_read_chunk_reopens_a_replaced_data_file(tmp_path, published):
    pub, item, src = published
    first, _ = pub.read_chunk(item.cid, 0)  # opens and keeps the data file
    path = pub.data_path(item.cid)
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0xFF
    tmp = path.with_suffix(".new")
    tmp.write_bytes(bytes(raw))
    os.replace(tmp, path)  # a new file under the same name
    again, _ = pub.read_chunk(item.cid, 0)
    assert again[0] == first[0] ^ 0xFF
    path.unlink()
    with pytest.raises(StoreError):
        pub.read_chunk(item.cid, 0)
