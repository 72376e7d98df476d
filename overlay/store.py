"""The verified content store: SQLite metadata plus one data file per content.

Nothing unverified is written: a chunk is checked against the signed root (inclusion proof)
before its bytes touch the disk. Partial content lives in ``partial/<cid>.part``; a chunk is
recorded as present only after its bytes are fsync'd, so a crash loses at most unrecorded
chunks, which are fetched again. A finished file is fsync'd and atomically renamed into
``data/``: a partial or corrupt file never appears under a final name.

Local file-system trust: the store's folders must not be writable by group or others (refused,
with the chmod that fixes it), and every file inside them is opened with O_NOFOLLOW (created with
O_EXCL), so a link planted there is refused rather than followed. A file to share must be a
regular file: a FIFO or device is refused, never waited on (trust/localfs.py).
"""
from __future__ import annotations

import hmac
import os
import sqlite3
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, Sequence

from trust import merkle
from trust.atomic import atomic_file, fsync_dir
from trust.errors import StoreError
from trust.localfs import check_private_dir, open_flags, open_regular, opened, os_error
from trust.manifest import DEFAULT_CHUNK_SIZE, MAX_CONTENT_SIZE, Manifest, open_manifest, parse_cid, sign_manifest

SCHEMA = """
CREATE TABLE IF NOT EXISTS contents (
    cid TEXT PRIMARY KEY,          -- content ID (multibase SHA-256 of the signed manifest)
    manifest BLOB NOT NULL,        -- the signed manifest envelope, as received
    publisher TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    chunk_count INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('partial', 'complete')),
    leaves BLOB,                   -- chunk leaf hashes, 32 bytes each, once complete
    added INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (   -- durably written chunks of partial content
    cid TEXT NOT NULL REFERENCES contents(cid) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    leaf BLOB NOT NULL,
    PRIMARY KEY (cid, idx)
) WITHOUT ROWID;
"""

_FLUSH_EVERY = 64  # chunks buffered between fsync + commit; bounds what a crash can lose


@dataclass(frozen=True)
class StoredContent:
    cid: str
    manifest: Manifest
    signed_manifest: bytes
    complete: bool
    chunks_present: int


@dataclass(frozen=True)
class VerifyReport:
    cid: str
    ok: bool
    chunks: int
    bad_chunks: list[int]
    reason: str


def connect_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    return db


class ContentStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.partial_dir = self.root / "partial"
        for d in (self.root, self.data_dir, self.partial_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
            check_private_dir(d, "store folder", StoreError)
        self.db = connect_db(self.root / "store.db")
        self.db.executescript(SCHEMA)
        self._trees: OrderedDict[str, merkle.MerkleTree] = OrderedDict()
        self._pending: dict[str, list[tuple[int, bytes]]] = {}
        self._part_fds: dict[str, int] = {}
        # Per-chunk paths (put_chunk, read_chunk) reuse a manifest verified earlier as long as
        # the stored signed bytes are unchanged, and keep data files of served content open.
        self._opened: OrderedDict[str, tuple[bytes, Manifest]] = OrderedDict()
        self._data_fds: OrderedDict[str, int] = OrderedDict()
        self._recover()

    def close(self) -> None:
        for cid in list(self._pending):
            self.flush(cid)
        for fd in self._part_fds.values():
            os.close(fd)
        self._part_fds.clear()
        for fd in self._data_fds.values():
            os.close(fd)
        self._data_fds.clear()
        self.db.close()

    # -- lookups -------------------------------------------------------------------------------

    def _row(self, cid: str) -> sqlite3.Row | tuple | None:
        return self.db.execute(
            "SELECT manifest, state, (SELECT count(*) FROM chunks WHERE chunks.cid = contents.cid) "
            "FROM contents WHERE cid = ?", (cid,)).fetchone()

    def get(self, cid: str) -> StoredContent | None:
        parse_cid(cid)
        row = self._row(cid)
        if row is None:
            return None
        signed, state, present = row
        _, manifest = open_manifest(signed, cid)
        complete = state == "complete"
        return StoredContent(cid, manifest, signed, complete, manifest.chunk_count if complete else present)

    def lookup(self, cid: str) -> tuple[Manifest, bool] | None:
        """``(manifest, complete)`` for ``cid``, or None if it is not here: the cheap check for a
        serving path (no chunk count; the signature is re-checked only if the stored bytes
        changed since the last call)."""
        try:
            return self._current(cid)
        except StoreError:
            return None

    def _current(self, cid: str) -> tuple[Manifest, bool]:
        """Manifest and completeness of ``cid`` for the per-chunk paths, without re-verifying the
        signature of every chunk: the signed manifest is read from the database on each call and
        opened (CID binding + signature) again whenever its bytes differ from the ones opened
        last time, so a changed row is caught exactly as :meth:`get` would catch it."""
        row = self.db.execute("SELECT manifest, state FROM contents WHERE cid = ?", (cid,)).fetchone()
        if row is None:
            raise StoreError(f"content {cid} is not in this store")
        signed, state = row
        cached = self._opened.get(cid)
        if cached is None or cached[0] != signed:
            _, manifest = open_manifest(signed, cid)
            cached = self._opened[cid] = (signed, manifest)
            while len(self._opened) > 64:
                self._opened.popitem(last=False)
        return cached[1], state == "complete"

    def require(self, cid: str) -> StoredContent:
        item = self.get(cid)
        if item is None:
            raise StoreError(f"content {cid} is not in this store")
        return item

    def list(self) -> list[StoredContent]:
        cids = [r[0] for r in self.db.execute("SELECT cid FROM contents ORDER BY added, cid")]
        return [c for c in (self.get(cid) for cid in cids) if c is not None]

    def data_path(self, cid: str) -> Path:
        return self.data_dir / f"{cid}.data"

    def _part_path(self, cid: str) -> Path:
        return self.partial_dir / f"{cid}.part"

    # -- publishing ----------------------------------------------------------------------------

    def add_file(self, path: Path, identity, *, name: str | None = None,
                 media_type: str = "application/octet-stream", chunk_size: int = DEFAULT_CHUNK_SIZE,
                 progress: Callable[[int], None] | None = None) -> StoredContent:
        """Chunk, hash and sign ``path`` in one streaming pass; store it under its new CID."""
        path = Path(path)
        fd, st = open_regular(path, "file to share", StoreError)  # a FIFO or device: refused, not waited on
        with open(fd, "rb") as src:
            if st.st_size > MAX_CONTENT_SIZE:
                raise StoreError(f"{path} is larger than the {MAX_CONTENT_SIZE} byte limit")
            tmp = self.partial_dir / f".share-{os.getpid()}-{time.monotonic_ns()}.tmp"
            leaves: list[bytes] = []
            size = 0
            buf = bytearray(chunk_size)
            try:
                with open(self._create(tmp, os.O_WRONLY), "wb") as out:
                    while True:
                        n = src.readinto(buf)
                        if not n:
                            break
                        view = memoryview(buf)[:n]
                        if n < chunk_size:  # short read mid-file: top the chunk up
                            while n < chunk_size:
                                more = src.read(chunk_size - n)
                                if not more:
                                    break
                                buf[n:n + len(more)] = more
                                n += len(more)
                            view = memoryview(buf)[:n]
                        leaves.append(merkle.leaf_hash(view))
                        out.write(view)
                        size += n
                        if progress:
                            progress(size)
                    out.flush()
                    os.fsync(out.fileno())
                cid, signed, manifest = sign_manifest(identity, merkle.root(leaves), size,
                                                      name or path.name, media_type, chunk_size)
                final = self.data_path(cid)
                os.replace(tmp, final)
                fsync_dir(self.data_dir)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO contents (cid, manifest, publisher, name, size, chunk_count, state, leaves, added) "
                "VALUES (?, ?, ?, ?, ?, ?, 'complete', ?, ?)",
                (cid, signed, manifest.publisher, manifest.name, manifest.size, manifest.chunk_count,
                 b"".join(leaves), int(time.time())))
        return StoredContent(cid, manifest, signed, True, manifest.chunk_count)

    # -- receiving -----------------------------------------------------------------------------

    def begin(self, cid: str, signed_manifest: bytes) -> StoredContent:
        """Accept a manifest for ``cid`` (checked against the CID and its signature) to fetch into."""
        parse_cid(cid)
        _, manifest = open_manifest(signed_manifest, cid)
        existing = self.get(cid)
        if existing is not None:
            return existing
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT OR IGNORE INTO contents (cid, manifest, publisher, name, size, chunk_count, state, added) "
                "VALUES (?, ?, ?, ?, ?, ?, 'partial', ?)",
                (cid, signed_manifest, manifest.publisher, manifest.name, manifest.size,
                 manifest.chunk_count, int(time.time())))
        if manifest.chunk_count == 0:
            self.finish(cid)
        else:
            self._part_fd(cid)  # create the (empty) partial file now, before any chunk arrives
        return self.require(cid)

    def missing_chunks(self, cid: str) -> list[int]:
        item = self.require(cid)
        if item.complete:
            return []
        have = {r[0] for r in self.db.execute("SELECT idx FROM chunks WHERE cid = ?", (cid,))}
        have.update(i for i, _ in self._pending.get(cid, ()))
        return [i for i in range(item.manifest.chunk_count) if i not in have]

    def put_chunk(self, cid: str, index: int, data: bytes, proof: Sequence[bytes]) -> bytes:
        """Verify ``data`` as chunk ``index`` against the signed root, then write it.

        Raises StoreError (wrong length, unknown content) or ProofError (bad proof) before any
        byte is written. Returns the chunk's leaf hash.
        """
        with self.chunk_writer(cid) as writer:
            leaf = writer.write(index, data, proof)
        self.record_chunk(cid, index, leaf)
        return leaf

    def chunk_writer(self, cid: str) -> "ChunkWriter":
        """A :class:`ChunkWriter` for one chunk of ``cid``: its ``write`` (verify, then write the
        bytes) may run in a worker thread; afterwards call :meth:`record_chunk` from the thread
        that owns this store. (put_chunk = chunk_writer + write + record_chunk.)"""
        m, complete = self._current(cid)
        return ChunkWriter(cid, m, None if complete else os.dup(self._part_fd(cid)))

    def record_chunk(self, cid: str, index: int, leaf: bytes, *, flush: bool = True) -> bool:
        """Note a chunk written by a :class:`ChunkWriter`; see :meth:`record_chunks`."""
        return self.record_chunks(cid, [(index, leaf)], flush=flush)

    def record_chunks(self, cid: str, chunks: Sequence[tuple[int, bytes]], *, flush: bool = True) -> bool:
        """Note chunks ``(index, leaf)`` written by a :class:`ChunkWriter`; they become durable at
        the next flush (every ``_FLUSH_EVERY`` chunks). Nothing to do once the content is complete.

        With ``flush=False`` a due flush is not done here: the return value says it is due, and
        the caller runs it (:meth:`begin_flush`, fsync, :meth:`end_flush`), e.g. with the fsync
        in a worker thread."""
        if not chunks or self._current(cid)[1]:
            return False
        pending = self._pending.setdefault(cid, [])
        pending.extend(chunks)
        if len(pending) < _FLUSH_EVERY:
            return False
        if flush:
            self.flush(cid)
            return False
        return True

    def begin_flush(self, cid: str) -> tuple[int, list[tuple[int, bytes]]] | None:
        """Take the chunks written since the last flush: ``(fd, chunks)`` where ``fd`` is a new
        descriptor of the partial file for the caller to fsync and close before passing
        ``chunks`` to :meth:`end_flush`; None if there is nothing to flush."""
        pending = self._pending.pop(cid, [])
        if not pending:
            return None
        return os.dup(self._part_fds[cid]), pending

    def end_flush(self, cid: str, chunks: list[tuple[int, bytes]]) -> None:
        """Record chunks whose bytes the caller has fsync'd (see :meth:`begin_flush`)."""
        if not chunks:
            return
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("INSERT OR IGNORE INTO chunks (cid, idx, leaf) VALUES (?, ?, ?)",
                                [(cid, i, leaf) for i, leaf in chunks])

    def _part_fd(self, cid: str) -> int:
        """The partial file of ``cid``, opened (resume) or created: never through a symlink,
        never a FIFO or device, never a file with another name (hard link) elsewhere."""
        fd = self._part_fds.get(cid)
        if fd is None:
            path = self._part_path(cid)
            try:
                fd = os.open(path, os.O_RDWR | open_flags(follow=False))
            except FileNotFoundError:
                fd = self._create(path, os.O_RDWR)
            except OSError as exc:
                raise os_error(exc, path, "partial file", StoreError, follow=False) from None
            opened(fd, path, "partial file", StoreError, single_link=True)
            self._part_fds[cid] = fd
        return fd

    @staticmethod
    def _create(path: Path, flags: int) -> int:
        """A new 0600 file at ``path`` (O_EXCL: not if anything, a symlink included, is there)."""
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create {path}: {exc.strerror}") from None
        os.fchmod(fd, 0o600)  # whatever the umask
        return fd

    def flush(self, cid: str) -> None:
        """Make written chunks durable, then record them (data first, so records never lie)."""
        pending = self._pending.pop(cid, [])
        if not pending:
            return
        os.fsync(self._part_fds[cid])
        self.end_flush(cid, pending)

    def finish(self, cid: str) -> StoredContent:
        """Seal complete content: check every chunk is present, rename into place, mark complete."""
        item = self.require(cid)
        if item.complete:
            return item
        m = item.manifest
        fd = self._part_fd(cid)
        # One fsync makes both the unflushed chunks and the final size durable (as flush() would,
        # before they are recorded) ahead of the rename.
        os.ftruncate(fd, m.size)
        os.fsync(fd)
        self.end_flush(cid, self._pending.pop(cid, []))
        rows = self.db.execute("SELECT idx, leaf FROM chunks WHERE cid = ? ORDER BY idx", (cid,)).fetchall()
        if len(rows) != m.chunk_count:
            raise StoreError(f"content {cid} is incomplete: {len(rows)} of {m.chunk_count} chunks present")
        leaves = [leaf for _, leaf in rows]
        if not hmac.compare_digest(merkle.root(leaves), m.root):
            raise StoreError(f"content {cid}: stored chunks do not reproduce the signed root")
        os.close(self._part_fds.pop(cid))
        os.replace(self._part_path(cid), self.data_path(cid))
        fsync_dir(self.data_dir)
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute("UPDATE contents SET state = 'complete', leaves = ? WHERE cid = ?", (b"".join(leaves), cid))
            self.db.execute("DELETE FROM chunks WHERE cid = ?", (cid,))
        return self.require(cid)

    def _recover(self) -> None:
        """Finish what a crash interrupted between renaming a finished file and recording it."""
        for (cid,) in self.db.execute("SELECT cid FROM contents WHERE state = 'partial'").fetchall():
            if self.data_path(cid).exists() and not self._part_path(cid).exists():
                m = self.require(cid).manifest
                try:
                    f, size = self._open_read(self.data_path(cid))
                    with f:
                        leaves = list(_hash_stream(f, m)) if size == m.size else None
                except StoreError:
                    continue  # not a file of ours (a link, a FIFO): left partial, and `verify` names it
                if leaves is not None and hmac.compare_digest(merkle.root(leaves), m.root):
                    with self.db:
                        self.db.execute("BEGIN IMMEDIATE")
                        self.db.execute("UPDATE contents SET state='complete', leaves=? WHERE cid=?", (b"".join(leaves), cid))
                        self.db.execute("DELETE FROM chunks WHERE cid = ?", (cid,))

    # -- serving -------------------------------------------------------------------------------

    def _leaves(self, cid: str) -> list[bytes]:
        row = self.db.execute("SELECT leaves FROM contents WHERE cid = ? AND state = 'complete'", (cid,)).fetchone()
        if row is None:
            raise StoreError(f"content {cid} is not complete in this store")
        return _split_leaves(row[0])

    def tree(self, cid: str) -> merkle.MerkleTree:
        tree = self._trees.get(cid)
        if tree is None:
            tree = merkle.MerkleTree(self._leaves(cid))
            self._trees[cid] = tree
            while len(self._trees) > 32:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(cid)
        return tree

    def read_chunk(self, cid: str, index: int) -> tuple[bytes, list[bytes]]:
        """A chunk of complete content and its inclusion proof."""
        m, complete = self._current(cid)
        if not complete:
            raise StoreError(f"content {cid} is not complete; only complete content is served")
        length = m.chunk_length(index)
        data = os.pread(self._data_fd(cid), length, index * m.chunk_size)
        if len(data) != length:
            raise StoreError(f"data file of {cid} is truncated at chunk {index}")
        return data, self.tree(cid).inclusion_proof(index)

    def _data_fd(self, cid: str) -> int:
        """A read-only descriptor of the data file of complete ``cid`` (a few are kept open)."""
        fd = self._data_fds.get(cid)
        if fd is not None:
            if os.fstat(fd).st_nlink:  # still linked: not removed or replaced since it was opened
                self._data_fds.move_to_end(cid)
                return fd
            os.close(self._data_fds.pop(cid))
        fd, _ = open_regular(self.data_path(cid), "data file", StoreError, follow=False)
        self._data_fds[cid] = fd
        while len(self._data_fds) > 16:
            os.close(self._data_fds.popitem(last=False)[1])
        return fd

    # -- checking and export -------------------------------------------------------------------

    @staticmethod
    def _open_read(path: Path, *, external: bool = False) -> tuple[BinaryIO, int]:
        """``(file, size)``: a data file of this store (no symlink followed), or (``external``) a
        file of the user's; either way a regular file, never a FIFO or device waited on."""
        if external:
            fd, st = open_regular(path, "file", StoreError)
        else:
            fd, st = open_regular(path, "data file", StoreError, follow=False)
        return open(fd, "rb"), st.st_size

    def _verify_file(self, m: Manifest, path: Path, cid: str, *, external: bool = False) -> VerifyReport:
        if not os.path.lexists(path):
            return VerifyReport(cid, False, m.chunk_count, [], f"data file {path} is missing")
        f, size = self._open_read(path, external=external)
        with f:
            if size != m.size:
                return VerifyReport(cid, False, m.chunk_count, [], f"size is {size} bytes, manifest says {m.size}")
            leaves = list(_hash_stream(f, m))
        if hmac.compare_digest(merkle.root(leaves), m.root):
            return VerifyReport(cid, True, m.chunk_count, [], "all chunks match the signed root")
        bad: list[int] = []
        stored = self.db.execute("SELECT leaves FROM contents WHERE cid = ?", (cid,)).fetchone()
        good = _split_leaves(stored[0]) if stored and stored[0] else []
        if good and merkle.root(good) == m.root:  # name the damaged chunks when we can
            bad = [i for i, leaf in enumerate(leaves) if leaf != good[i]]
        return VerifyReport(cid, False, m.chunk_count, bad, "content does not match the signed root")

    def verify(self, cid: str) -> VerifyReport:
        """Re-check stored content against its signed manifest (signature, CID, every chunk)."""
        item = self.require(cid)  # opening it re-checks the CID binding and signature
        if not item.complete:
            return VerifyReport(cid, False, item.manifest.chunk_count, [],
                                f"incomplete: {item.chunks_present} of {item.manifest.chunk_count} chunks present")
        return self._verify_file(item.manifest, self.data_path(cid), cid)

    def verify_external(self, path: Path, cid: str) -> VerifyReport:
        """Check a file anywhere on disk against the signed manifest of ``cid``."""
        m = self.require(cid).manifest
        return self._verify_file(m, Path(path), cid, external=True)

    def find_by_file(self, path: Path) -> list[str]:
        """CIDs in this store whose signed root matches the file at ``path``."""
        f, size = self._open_read(Path(path), external=True)
        f.close()
        matches = []
        for item in self.list():
            m = item.manifest
            if m.size == size and self._verify_file(m, Path(path), item.cid, external=True).ok:
                matches.append(item.cid)
        return matches

    def export(self, cid: str, out: Path, *, overwrite: bool = False) -> None:
        """Write complete content to ``out`` re-verifying every chunk; atomic, never partial."""
        item = self.require(cid)
        if not item.complete:
            raise StoreError(f"content {cid} is incomplete; fetch it first")
        out = Path(out)
        if out.exists() and not overwrite:
            raise StoreError(f"{out} already exists (pass --force to replace it)")
        m = item.manifest
        leaves = self._leaves(cid)
        try:
            src, _ = self._open_read(self.data_path(cid))
            with src, atomic_file(out, 0o644, overwrite=overwrite) as dst:
                buf = bytearray(m.chunk_size)
                for i in range(m.chunk_count):
                    n = src.readinto(buf)
                    view = memoryview(buf)[:n]
                    if n != m.chunk_length(i) or merkle.leaf_hash(view) != leaves[i]:
                        raise StoreError(f"stored chunk {i} of {cid} is damaged; run 'vouchnet verify {cid}'")
                    dst.write(view)
        except FileExistsError:
            raise StoreError(f"{out} already exists (pass --force to replace it)") from None


class ChunkWriter:
    """Checks one chunk against the signed manifest and only then writes it to the partial
    file. ``write`` touches neither the database nor the store's state, only its own duplicate
    of the file descriptor, so it may run in a worker thread (hashing and ``pwrite`` release
    the GIL) while the store's thread keeps receiving; ``close`` (or the ``with`` block)
    releases the descriptor. For complete content ``write`` only verifies."""

    __slots__ = ("cid", "manifest", "_fd")

    def __init__(self, cid: str, manifest: Manifest, fd: int | None):
        self.cid = cid
        self.manifest = manifest
        self._fd = fd

    def __enter__(self) -> "ChunkWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def write(self, index: int, data: bytes | memoryview, proof: Sequence[bytes]) -> bytes:
        """Verify ``data`` as chunk ``index`` (StoreError: bad index or length; ProofError: bad
        proof; both before any byte is written), then write it. Returns its leaf hash."""
        m = self.manifest
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < m.chunk_count:
            raise StoreError(f"chunk index {index!r} out of range for {self.cid} ({m.chunk_count} chunks)")
        want = m.chunk_length(index)
        if len(data) != want:
            raise StoreError(f"chunk {index} of {self.cid} is {len(data)} bytes, expected {want}")
        leaf = merkle.leaf_hash(data)
        merkle.verify_inclusion(leaf, index, m.chunk_count, proof, m.root)
        fd = self._fd
        if fd is not None:
            view = memoryview(data)
            offset = index * m.chunk_size
            while view:
                n = os.pwrite(fd, view, offset)
                view, offset = view[n:], offset + n
        return leaf


def _hash_stream(f: BinaryIO, m: Manifest) -> Iterator[bytes]:
    buf = bytearray(m.chunk_size)
    for _ in range(m.chunk_count):
        n = f.readinto(buf)
        yield merkle.leaf_hash(memoryview(buf)[:n])


def _split_leaves(blob: bytes) -> list[bytes]:
    return [blob[i:i + 32] for i in range(0, len(blob), 32)]
