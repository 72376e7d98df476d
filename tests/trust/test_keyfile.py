"""Tests for trust.keyfile (and trust.atomic through it).

The real Argon2id parameters cost about a second each here, so they are used three times
(one save, two loads). Everything else uses files sealed with the minimum parameters.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import nacl.pwhash
import pytest

from trust import keyfile
from trust.errors import KeyFileError, VouchnetError
from trust.identity import Identity
from trust.keyfile import (
    MAX_KEYFILE,
    MAX_PASSPHRASE,
    is_protected,
    load_identity,
    read_passphrase_file,
    save_identity,
)

SEED = bytes(range(100, 132))
OTHER_SEED = bytes(range(1, 33))
PASS = b"correct horse battery staple"


@pytest.fixture
def ident() -> Identity:
    return Identity.from_seed(SEED)


@pytest.fixture
def cheap_kdf(monkeypatch):
    monkeypatch.setattr(keyfile, "OPSLIMIT", nacl.pwhash.argon2id.OPSLIMIT_MIN)
    monkeypatch.setattr(keyfile, "MEMLIMIT", nacl.pwhash.argon2id.MEMLIMIT_MIN)


@pytest.fixture(scope="module")
def real_protected(tmp_path_factory) -> Path:
    """A key file sealed with the production Argon2id parameters (one KDF call)."""
    path = tmp_path_factory.mktemp("real") / "identity.key"
    save_identity(path, Identity.from_seed(SEED), PASS)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def read_doc(path: Path) -> dict:
    return json.loads(path.read_bytes())


def write_doc(path: Path, doc: object) -> None:
    """Rewrite a key file's content in place, keeping its 0600 mode."""
    path.write_text(json.dumps(doc))
    assert mode(path) == 0o600


def copy_0600(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    os.chmod(dst, 0o600)
    return dst


# ----------------------------------------------------------------------------- plain files

def test_save_creates_0600_and_round_trips(tmp_path, ident):
    path = tmp_path / "identity.key"
    save_identity(path, ident)
    assert mode(path) == 0o600
    loaded = load_identity(path)
    assert loaded.seed == SEED and loaded.peer_id == ident.peer_id
    assert not is_protected(path)
    doc = read_doc(path)
    assert doc["peer_id"] == ident.peer_id and doc["protection"] == "none"
    assert sorted(os.listdir(tmp_path)) == ["identity.key"]  # no temp file left behind


def test_save_is_0600_even_with_permissive_umask(tmp_path, ident):
    old = os.umask(0)
    try:
        save_identity(tmp_path / "k", ident)
    finally:
        os.umask(old)
    assert mode(tmp_path / "k") == 0o600


def test_overwrite_replaces_loose_file_with_0600(tmp_path, ident):
    path = tmp_path / "k"
    path.write_bytes(b"junk")
    os.chmod(path, 0o644)
    save_identity(path, ident, overwrite=True)
    assert mode(path) == 0o600
    assert load_identity(path).peer_id == ident.peer_id


@pytest.mark.parametrize("perm", [0o644, 0o640, 0o604, 0o660, 0o606, 0o700, 0o610, 0o601, 0o777])
def test_group_or_other_access_refused(tmp_path, ident, perm):
    path = tmp_path / "k"
    save_identity(path, ident)
    os.chmod(path, perm)
    expect_ok = not (perm & 0o077)
    if expect_ok:
        assert load_identity(path).peer_id == ident.peer_id
        return
    with pytest.raises(KeyFileError, match="chmod 600") as exc:
        load_identity(path)
    assert str(path) in str(exc.value)
    with pytest.raises(KeyFileError, match="chmod 600"):
        is_protected(path)


@pytest.mark.parametrize("perm", [0o400, 0o600, 0o700])
def test_owner_only_modes_accepted(tmp_path, ident, perm):
    path = tmp_path / "k"
    save_identity(path, ident)
    os.chmod(path, perm)
    assert load_identity(path).seed == SEED


def test_missing_file(tmp_path):
    with pytest.raises(KeyFileError, match="vouchnet init"):
        load_identity(tmp_path / "nope.key")
    with pytest.raises(KeyFileError, match="vouchnet init"):
        is_protected(tmp_path / "nope.key")


def test_directory_and_fifo_refused_without_hanging(tmp_path):
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="regular file"):
        load_identity(d)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="regular file"):
        load_identity(fifo)  # would block forever if it were opened


def test_overwrite_refused_and_original_unchanged(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, ident)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        save_identity(path, Identity.from_seed(OTHER_SEED))
    assert path.read_bytes() == before
    assert mode(path) == 0o600
    assert load_identity(path).seed == SEED
    assert sorted(os.listdir(tmp_path)) == ["k"]
    save_identity(path, Identity.from_seed(OTHER_SEED), overwrite=True)
    assert load_identity(path).seed == OTHER_SEED


DAMAGED = {
    "empty": b"",
    "truncated json": b'{"format": "vouchnet-key", "version": 1, ',
    "not json": b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
    "binary": bytes(range(256)),
    "json list": b"[1, 2, 3]",
    "json string": b'"vouchnet-key"',
    "json null": b"null",
}


@pytest.mark.parametrize("content", list(DAMAGED.values()), ids=list(DAMAGED))
def test_damaged_content(tmp_path, content):
    path = tmp_path / "k"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_identity(path)


def test_deeply_nested_json_is_key_file_error(tmp_path):
    path = tmp_path / "k"
    path.write_bytes(b"[" * 4000)  # within MAX_KEYFILE
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_identity(path)


@pytest.mark.parametrize("change", [
    {"format": "ssh-key"},
    {"format": None},
    {"version": 2},
    {"version": "1"},
    {"type": "rsa"},
    {"protection": "rot13"},
    {"protection": None},
    {"seed": None},
    {"seed": 42},
    {"seed": "not base64!"},
    {"seed": "AAAA"},  # valid base64, 3 bytes
    {"seed": "A" * 2000},  # over the field bound
])
def test_wrong_format_or_fields(tmp_path, ident, change):
    path = tmp_path / "k"
    save_identity(path, ident)
    doc = read_doc(path)
    doc.update(change)
    write_doc(path, doc)
    with pytest.raises(KeyFileError):
        load_identity(path)


def test_missing_fields(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, ident)
    original = read_doc(path)
    for key in original:
        doc = dict(original)
        del doc[key]
        write_doc(path, doc)
        with pytest.raises(KeyFileError):
            load_identity(path)


def test_huge_file(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, ident)
    doc_bytes = path.read_bytes()
    # Still a valid key file as JSON, just padded past the limit.
    path.write_bytes(doc_bytes + b" " * (MAX_KEYFILE + 1 - len(doc_bytes)))
    assert len(path.read_bytes()) == MAX_KEYFILE + 1
    with pytest.raises(KeyFileError, match="larger than"):
        load_identity(path)
    # The limit itself is accepted.
    path.write_bytes(doc_bytes + b" " * (MAX_KEYFILE - len(doc_bytes)))
    assert load_identity(path).seed == SEED


def test_very_large_file_refused_quickly(tmp_path):
    path = tmp_path / "k"
    with open(path, "wb") as f:
        f.truncate(1 << 30)  # sparse 1 GiB
    os.chmod(path, 0o600)
    start = time.monotonic()
    with pytest.raises(KeyFileError):
        load_identity(path)
    assert time.monotonic() - start < 1


def test_peer_id_mismatch(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, ident)
    doc = read_doc(path)
    doc["peer_id"] = Identity.from_seed(OTHER_SEED).peer_id
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="damaged"):
        load_identity(path)


def test_seed_swapped_is_caught(tmp_path, ident):
    # Another valid seed under the recorded peer ID: the key does not match, so it is refused.
    import base64
    path = tmp_path / "k"
    save_identity(path, ident)
    doc = read_doc(path)
    doc["seed"] = base64.b64encode(OTHER_SEED).decode()
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="damaged"):
        load_identity(path)


def test_save_doc_has_no_seed_in_protected_file(tmp_path, ident, cheap_kdf):
    import base64
    path = tmp_path / "k"
    save_identity(path, ident, b"pw")
    text = path.read_text()
    assert base64.b64encode(SEED).decode() not in text
    assert SEED.hex() not in text
    assert "seed" not in read_doc(path)


# ----------------------------------------------------------------------------- passphrases

def test_real_params_round_trip(real_protected):
    assert mode(real_protected) == 0o600
    doc = read_doc(real_protected)
    assert doc["protection"] == "argon2id-secretbox"
    assert doc["opslimit"] == nacl.pwhash.argon2id.OPSLIMIT_MODERATE
    assert doc["memlimit"] == nacl.pwhash.argon2id.MEMLIMIT_MODERATE
    assert is_protected(real_protected)
    assert load_identity(real_protected, PASS).seed == SEED


def test_real_params_wrong_passphrase(real_protected):
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(real_protected, b"not the passphrase")


def test_protected_without_passphrase(real_protected):
    with pytest.raises(KeyFileError, match="--passphrase-file"):
        load_identity(real_protected)


@pytest.mark.parametrize("change", [
    {"memlimit": 2**40},
    {"memlimit": nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE + 1},
    {"memlimit": 8191},
    {"memlimit": 0},
    {"memlimit": -1},
    {"memlimit": "268435456"},
    {"memlimit": 268435456.0},
    {"memlimit": None},
    {"opslimit": 0},
    {"opslimit": 2**40},
    {"opslimit": nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE + 1},
    {"opslimit": 3.0},
])
def test_argon2_params_out_of_range(tmp_path, real_protected, change):
    path = copy_0600(real_protected, tmp_path / "k")
    doc = read_doc(path)
    doc.update(change)
    write_doc(path, doc)
    start = time.monotonic()
    with pytest.raises(KeyFileError, match="Argon2id parameters"):
        load_identity(path, PASS)
    assert time.monotonic() - start < 0.5  # refused before any key derivation


@pytest.mark.parametrize("change", [
    {"salt": "AAAA"},
    {"salt": None},
    {"ciphertext": "AAAA"},
    {"ciphertext": "***"},
])
def test_protected_bad_fields(tmp_path, real_protected, change):
    path = copy_0600(real_protected, tmp_path / "k")
    doc = read_doc(path)
    doc.update(change)
    write_doc(path, doc)
    with pytest.raises(KeyFileError):
        load_identity(path, PASS)


def test_cheap_round_trip_and_wrong_passphrase(tmp_path, ident, cheap_kdf):
    path = tmp_path / "k"
    save_identity(path, ident, PASS)
    assert mode(path) == 0o600 and is_protected(path)
    assert load_identity(path, PASS).seed == SEED
    for wrong in (b"wrong", PASS + b"\n", PASS[:-1], b"\x00"):
        with pytest.raises(KeyFileError, match="wrong passphrase"):
            load_identity(path, wrong)


def test_tampered_ciphertext_is_wrong_passphrase(tmp_path, ident, cheap_kdf):
    import base64
    path = tmp_path / "k"
    save_identity(path, ident, PASS)
    doc = read_doc(path)
    ct = bytearray(base64.b64decode(doc["ciphertext"]))
    ct[-1] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(ct)).decode()
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(path, PASS)


def test_protected_peer_id_mismatch(tmp_path, ident, cheap_kdf):
    path = tmp_path / "k"
    save_identity(path, ident, PASS)
    doc = read_doc(path)
    doc["peer_id"] = Identity.from_seed(OTHER_SEED).peer_id
    write_doc(path, doc)
    with pytest.raises(KeyFileError, match="damaged"):
        load_identity(path, PASS)


def test_plain_file_ignores_passphrase(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, ident)
    assert load_identity(path, b"anything").seed == SEED


def test_protected_overwrite_refused(tmp_path, ident, cheap_kdf):
    path = tmp_path / "k"
    save_identity(path, ident)
    before = path.read_bytes()
    with pytest.raises(KeyFileError):
        save_identity(path, ident, PASS)
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------- passphrase files

def write_secret(path: Path, data: bytes) -> None:
    """A passphrase file as it must be: 0600 (one others can read is refused, like the key file)."""
    path.write_bytes(data)
    os.chmod(path, 0o600)


def test_passphrase_file(tmp_path):
    p = tmp_path / "pw"
    write_secret(p, PASS + b"\n")
    assert read_passphrase_file(p) == PASS
    write_secret(p, PASS + b"\r\n")
    assert read_passphrase_file(p) == PASS
    write_secret(p, b"  inner spaces kept  ")
    assert read_passphrase_file(p) == b"  inner spaces kept  "
    write_secret(p, b"x" * MAX_PASSPHRASE + b"\n")
    assert read_passphrase_file(p) == b"x" * MAX_PASSPHRASE


@pytest.mark.parametrize("content", [b"", b"\n", b"\r\n", b"\n\n\n"], ids=["empty", "lf", "crlf", "lfs"])
def test_passphrase_file_empty(tmp_path, content):
    p = tmp_path / "pw"
    write_secret(p, content)
    with pytest.raises(KeyFileError, match="is empty"):
        read_passphrase_file(p)


def test_passphrase_file_too_long(tmp_path):
    p = tmp_path / "pw"
    write_secret(p, b"x" * (MAX_PASSPHRASE + 1))
    with pytest.raises(KeyFileError, match="longer"):
        read_passphrase_file(p)
    write_secret(p, b"x" * 100_000)
    with pytest.raises(KeyFileError, match="longer"):
        read_passphrase_file(p)


def test_passphrase_file_missing(tmp_path):
    with pytest.raises(KeyFileError, match="cannot read"):
        read_passphrase_file(tmp_path / "nope")


def test_passphrase_file_too_long_after_newlines(tmp_path):
    p = tmp_path / "pw"
    write_secret(p, b"x" * 1000 + b"\n\nmore")
    assert read_passphrase_file(p) == b"x" * 1000 + b"\n\nmore"  # embedded newlines are kept
    write_secret(p, b"x" * MAX_PASSPHRASE + b"\n\nmore")  # 1030 bytes of content: too long
    with pytest.raises(KeyFileError, match="longer"):
        read_passphrase_file(p)


def test_stale_temp_file_does_not_block_forced_save(tmp_path, ident):
    path = tmp_path / "k"
    save_identity(path, Identity.from_seed(OTHER_SEED))
    (tmp_path / f".k.{os.getpid()}.tmp").write_bytes(b"left over by a crash")
    save_identity(path, ident, overwrite=True)
    assert load_identity(path).seed == SEED


def test_key_file_errors_are_vouchnet_errors():
    assert issubclass(KeyFileError, VouchnetError)
