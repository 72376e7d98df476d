"""Findings 7 and 9 (file parts): what another local account, or a wrong file, can do to a node.

On main before the fix: a symlink planted at ``store/partial/<cid>.part`` was followed and the
fetched chunks written through it (and ``finish`` truncated its target); a symlink at
``store/data/<cid>.data`` was served; a group/world-writable store folder was used as is; a
group/world-readable passphrase file was accepted; a FIFO given as passphrase file or to
``vouchnet share`` (also through a running node's control socket) hung the command forever.
Every test here failed on that code; the FIFO tests fail by a timeout guard, never by hanging."""
from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Callable

import pytest

from overlay.lab.localnet import run_cli
from overlay.store import ContentStore
from tests.nodes import Cluster, NodeProc
from trust import keyfile
from trust.errors import KeyFileError, StoreError
from trust.manifest import MIN_CHUNK_SIZE

CHUNK = MIN_CHUNK_SIZE
HANG = 15  # seconds: far more than any of these commands needs when it does not hang


def make_fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def release(fifo: Path) -> None:
    """Let a reader stuck opening ``fifo`` (unfixed code) go: open it for writing, then close."""
    try:
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass  # nobody is reading: nothing is stuck


def no_hang(fn: Callable[[], object], fifo: Path, timeout: float = HANG) -> BaseException | None:
    """Run ``fn`` in a thread; fail the test (not hang it) if it is still blocked after ``timeout``.
    Returns what ``fn`` raised, or None."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        release(fifo)
        t.join(5)
        pytest.fail(f"blocked for {timeout} s on the FIFO {fifo}")
    return outcome[0]


def cli_no_hang(*args: str, fifo: Path, home: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return run_cli(*args, home=home, timeout=HANG)
    except subprocess.TimeoutExpired:
        pytest.fail(f"vouchnet {' '.join(args)} hung for {HANG} s on the FIFO {fifo}")
    finally:
        release(fifo)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode != 0, proc
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr.decode()
    return lines[0]


@pytest.fixture
def published(tmp_path, identity):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3 * CHUNK + 17))
    pub = ContentStore(tmp_path / "pub")
    item = pub.add_file(src, identity, chunk_size=CHUNK)
    yield pub, item, src
    pub.close()


@pytest.fixture
def home(tmp_path) -> Path:
    h = tmp_path / "home"
    run_cli("init", home=h, check=True)
    return h


# -- L1: store files are opened without following symlinks ----------------------------------------

def test_planted_partial_symlink_is_not_followed(tmp_path, published):
    pub, item, _ = published
    victim = tmp_path / "victim.txt"  # a file of the node's user that a planted link points at
    victim.write_bytes(b"precious\n" * 100)
    before = victim.read_bytes()
    dst = ContentStore(tmp_path / "dst")
    try:
        link = dst.partial_dir / f"{item.cid}.part"
        link.symlink_to(victim)
        with pytest.raises(StoreError, match="symbolic link") as exc:
            dst.begin(item.cid, item.signed_manifest)
            for i in range(item.manifest.chunk_count):
                dst.put_chunk(item.cid, i, *pub.read_chunk(item.cid, i))
            dst.finish(item.cid)
        assert str(link) in str(exc.value)
        assert victim.read_bytes() == before
        assert link.is_symlink()  # left for the user to look at, not followed and not moved
        assert not dst.data_path(item.cid).exists()
    finally:
        dst.close()


def test_planted_data_symlink_is_not_served_or_exported(tmp_path, published):
    pub, item, _ = published
    secret = tmp_path / "secret"
    secret.write_bytes(b"S" * item.manifest.size)  # same size: only the link itself gives it away
    data = pub.data_path(item.cid)
    data.unlink()
    data.symlink_to(secret)
    with pytest.raises(StoreError, match="symbolic link"):
        pub.read_chunk(item.cid, 0)
    with pytest.raises(StoreError, match="symbolic link"):
        pub.export(item.cid, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(StoreError, match="symbolic link"):
        pub.verify(item.cid)


def test_a_partial_file_that_is_a_fifo_is_refused(tmp_path, published):
    pub, item, _ = published
    dst = ContentStore(tmp_path / "dst")
    try:
        fifo = make_fifo(dst.partial_dir / f"{item.cid}.part")
        exc = no_hang(lambda: dst.begin(item.cid, item.signed_manifest), fifo)
        assert isinstance(exc, StoreError) and "not a regular file" in str(exc), exc
    finally:
        dst.close()


# -- L2: group/world-writable store and home folders are refused ----------------------------------

@pytest.mark.parametrize("sub", ["", "data", "partial"])
@pytest.mark.parametrize("perm", [0o777, 0o770, 0o707, 0o1777], ids=oct)
def test_writable_store_folders_are_refused(tmp_path, sub, perm):
    root = tmp_path / "store"
    ContentStore(root).close()
    target = root / sub if sub else root
    os.chmod(target, perm)
    try:
        with pytest.raises(StoreError) as exc:
            ContentStore(root).close()
        msg = str(exc.value)
        assert str(target) in msg and f"{stat.S_IMODE(perm):04o}" in msg and f"chmod 700 {target}" in msg, msg
    finally:
        os.chmod(target, 0o700)
    ContentStore(root).close()  # fixed as told: accepted again


@pytest.mark.parametrize("perm", [0o700, 0o750, 0o755, 0o705], ids=oct)
def test_store_folders_readable_but_not_writable_by_others_are_accepted(tmp_path, perm):
    root = tmp_path / "store"
    ContentStore(root).close()
    os.chmod(root, perm)
    ContentStore(root).close()


def test_cli_refuses_writable_store_and_home_in_one_line(home, tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"x")
    run_cli("ls", home=home, check=True)  # creates the store
    os.chmod(home / "store", 0o777)
    line = one_error_line(run_cli("share", str(f), home=home))
    assert f"chmod 700 {home / 'store'}" in line and "0777" in line
    os.chmod(home / "store", 0o700)
    os.chmod(home, 0o775)
    line = one_error_line(run_cli("share", str(f), home=home))
    assert f"chmod 700 {home}" in line and "0775" in line
    os.chmod(home, 0o700)
    assert not any((home / "store" / "data").iterdir())


# -- L3: a passphrase file that others can read is refused, like the key file ---------------------

@pytest.mark.parametrize("perm", [0o644, 0o640, 0o604, 0o660, 0o606, 0o610], ids=oct)
def test_passphrase_file_readable_by_others_is_refused(tmp_path, perm):
    p = tmp_path / "pw"
    p.write_bytes(b"correct horse\n")
    os.chmod(p, perm)
    with pytest.raises(KeyFileError, match=f"chmod 600 {p}") as exc:
        keyfile.read_passphrase_file(p)
    assert f"{perm:04o}" in str(exc.value) and "passphrase file" in str(exc.value)


@pytest.mark.parametrize("perm", [0o400, 0o600], ids=oct)
def test_passphrase_file_for_the_owner_only_is_accepted(tmp_path, perm):
    p = tmp_path / "pw"
    p.write_bytes(b"correct horse\n")
    os.chmod(p, perm)
    assert keyfile.read_passphrase_file(p) == b"correct horse"


def test_cli_refuses_a_world_readable_passphrase_file(tmp_path):
    pw = tmp_path / "pw"
    pw.write_bytes(b"correct horse\n")
    os.chmod(pw, 0o644)
    h = tmp_path / "h"
    line = one_error_line(run_cli("init", "--passphrase-file", str(pw), home=h))
    assert f"chmod 600 {pw}" in line
    assert not (h / "identity.key").exists()


# -- L4: a passphrase file that is a FIFO (or device) is refused, not waited on -------------------

def test_passphrase_fifo_is_refused_not_waited_on(tmp_path):
    fifo = make_fifo(tmp_path / "pw")
    exc = no_hang(lambda: keyfile.read_passphrase_file(fifo), fifo)
    assert isinstance(exc, KeyFileError) and "not a regular file" in str(exc) and str(fifo) in str(exc), exc


def test_passphrase_device_is_refused():
    with pytest.raises(KeyFileError, match="not a regular file"):
        keyfile.read_passphrase_file(Path("/dev/null"))


def test_cli_passphrase_fifo_fails_in_one_line(tmp_path, home):
    fifo = make_fifo(tmp_path / "pw")
    line = one_error_line(cli_no_hang("--passphrase-file", str(fifo), "id", home=home, fifo=fifo))
    assert "not a regular file" in line and str(fifo) in line
    h = tmp_path / "new"
    line = one_error_line(cli_no_hang("init", "--passphrase-file", str(fifo), home=h, fifo=fifo))
    assert "not a regular file" in line
    assert not (h / "identity.key").exists()


# -- L5: `share` of a FIFO (or device) is refused, by the CLI and by a running node ---------------

def test_store_add_file_refuses_a_fifo(tmp_path, identity):
    fifo = make_fifo(tmp_path / "f")
    store = ContentStore(tmp_path / "store")
    try:
        exc = no_hang(lambda: store.add_file(fifo, identity), fifo)
        assert isinstance(exc, StoreError) and "not a regular file" in str(exc), exc
        assert store.list() == [] and not any(store.partial_dir.iterdir())
    finally:
        store.close()


def test_store_verify_of_a_fifo_is_refused(tmp_path, identity):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    store = ContentStore(tmp_path / "store")
    try:
        cid = store.add_file(empty, identity).cid  # size 0: a FIFO's stat size matches it
        fifo = make_fifo(tmp_path / "f")
        for check in (lambda: store.find_by_file(fifo), lambda: store.verify_external(fifo, cid)):
            exc = no_hang(check, fifo)
            assert isinstance(exc, StoreError) and "not a regular file" in str(exc), exc
    finally:
        store.close()


def test_cli_share_fifo_fails_in_one_line(tmp_path, home):
    fifo = make_fifo(tmp_path / "f")
    line = one_error_line(cli_no_hang("share", str(fifo), home=home, fifo=fifo))
    assert "not a regular file" in line and str(fifo) in line
    assert not any((home / "store" / "data").iterdir())


@pytest.mark.network
def test_node_share_of_a_fifo_is_an_error_answer_and_the_node_keeps_running(cluster: Cluster, victim: NodeProc,
                                                                            tmp_path: Path):
    fifo = make_fifo(tmp_path / "f")
    line = one_error_line(cli_no_hang("share", str(fifo), home=victim.home, fifo=fifo))
    assert "not a regular file" in line and str(fifo) in line
    assert victim.proc.poll() is None, victim.log()[-2000:]
    src = tmp_path / "ok.bin"
    src.write_bytes(os.urandom(100_000))
    info = victim.cli_json("share", str(src), timeout=HANG)  # the node still answers and shares
    assert info["size"] == 100_000
    assert victim.cli_json("status", timeout=HANG)
