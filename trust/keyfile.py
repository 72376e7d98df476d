"""The identity key file: 0600, optionally sealed with a passphrase (Argon2id + SecretBox).

Loading refuses a file that group or others can access (as ssh does), bounds every field, and
checks the stored peer ID against the key so a damaged file is caught, not silently used. A
passphrase file goes through the same check (trust/localfs.py), and neither may be a FIFO or
device: they are refused, not waited on.
"""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from trust.atomic import atomic_write
from trust.errors import KeyFileError
from trust.identity import Identity
from trust.localfs import check_private, open_regular

FORMAT = "vouchnet-key"
MAX_KEYFILE = 4096
MAX_PASSPHRASE = 1024
# Moderate cost (~0.5 s here): a key file is unlocked once per command, not per request.
OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
# A hostile file must not make us allocate or spin without bound.
_MAX_OPS = nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE
_MAX_MEM = nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(s, str) or len(s) > 1024:
        raise KeyFileError(f"key file field {what!r} is missing or not a string")
    try:
        raw = base64.b64decode(s, validate=True)
    except ValueError:
        raise KeyFileError(f"key file field {what!r} is not valid base64") from None
    if size is not None and len(raw) != size:
        raise KeyFileError(f"key file field {what!r} has the wrong length")
    return raw


def _open_secret(path: Path, what: str, missing: str | None = None) -> int:
    """A descriptor of the secret file at ``path``: a regular file (a FIFO or device is refused,
    not waited on) that only its owner, this user, can access. The checks are made on the
    opened file, so what is checked is what is read."""
    fd, st = open_regular(path, what, KeyFileError, missing=missing)
    try:
        check_private(st, path, what, KeyFileError)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_passphrase_file(path: Path) -> bytes:
    """The passphrase in ``path``, which must be a regular file only its owner can access (like
    the key file: :func:`_open_secret`)."""
    fd = _open_secret(path, "passphrase file")
    try:
        with open(fd, "rb") as f:
            data = f.read(MAX_PASSPHRASE + 3)
    except OSError as exc:
        raise KeyFileError(f"cannot read passphrase file {path}: {exc.strerror}") from None
    # Only the one line ending an editor adds is not part of the passphrase.
    for ending in (b"\r\n", b"\n"):
        if data.endswith(ending):
            data = data[: -len(ending)]
            break
    if not data.strip(b"\r\n"):
        raise KeyFileError(f"passphrase file {path} is empty")
    if len(data) > MAX_PASSPHRASE:
        raise KeyFileError(f"passphrase in {path} is longer than {MAX_PASSPHRASE} bytes")
    return data


def save_identity(path: Path, identity: Identity, passphrase: bytes | None = None, *, overwrite: bool = False) -> None:
    doc: dict[str, object] = {"format": FORMAT, "version": 1, "type": "ed25519", "peer_id": identity.peer_id}
    if passphrase is None:
        doc["protection"] = "none"
        doc["seed"] = _b64(identity.seed)
    else:
        salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
        key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt,
                                       opslimit=OPSLIMIT, memlimit=MEMLIMIT)
        doc.update(protection="argon2id-secretbox", salt=_b64(salt), opslimit=OPSLIMIT,
                   memlimit=MEMLIMIT, ciphertext=_b64(nacl.secret.SecretBox(key).encrypt(identity.seed)))
    data = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
    try:
        atomic_write(Path(path), data, mode=0o600, overwrite=overwrite)
    except FileExistsError:
        raise KeyFileError(f"{path} already exists; use --force to replace the identity") from None


def _open_key(path: Path) -> int:
    """The key file, refused if missing, not a regular file, open to group or others, or owned
    by another user."""
    return _open_secret(path, "key file", missing=f"no identity at {path}; run 'vouchnet init' first")


def is_protected(path: Path) -> bool:
    return _read_doc(path).get("protection") != "none"


def stored_peer_id(path: Path) -> str | None:
    """The peer ID a key file records in clear beside the sealed key (no passphrase needed)."""
    peer = _read_doc(path).get("peer_id")
    return peer if isinstance(peer, str) else None


def _read_doc(path: Path) -> dict:
    with open(_open_key(path), "rb") as f:
        raw = f.read(MAX_KEYFILE + 1)
    if len(raw) > MAX_KEYFILE:
        raise KeyFileError(f"{path} is larger than {MAX_KEYFILE} bytes; not a vouchnet key file")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise KeyFileError(f"{path} is not a valid vouchnet key file (bad JSON)") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or type(doc.get("version")) is not int \
            or doc.get("version") != 1:
        raise KeyFileError(f"{path} is not a vouchnet key file of a known version")
    if doc.get("type") != "ed25519":
        raise KeyFileError(f"{path}: unsupported key type {doc.get('type')!r}")
    return doc


def load_identity(path: Path, passphrase: bytes | None = None) -> Identity:
    doc = _read_doc(path)
    protection = doc.get("protection")
    if protection == "none":
        seed = _unb64(doc.get("seed"), "seed", 32)
    elif protection == "argon2id-secretbox":
        if passphrase is None:
            raise KeyFileError(f"{path} is passphrase-protected; pass --passphrase-file FILE")
        ops, mem = doc.get("opslimit"), doc.get("memlimit")
        if not (type(ops) is int and type(mem) is int and 1 <= ops <= _MAX_OPS and 8192 <= mem <= _MAX_MEM):
            raise KeyFileError(f"{path}: Argon2id parameters out of the accepted range")
        salt = _unb64(doc.get("salt"), "salt", nacl.pwhash.argon2id.SALTBYTES)
        ct = _unb64(doc.get("ciphertext"), "ciphertext", 32 + nacl.secret.SecretBox.NONCE_SIZE + nacl.secret.SecretBox.MACBYTES)
        key = nacl.pwhash.argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=ops, memlimit=mem)
        try:
            seed = nacl.secret.SecretBox(key).decrypt(ct)
        except nacl.exceptions.CryptoError:
            raise KeyFileError(f"wrong passphrase for {path} (or the key file is damaged)") from None
    else:
        raise KeyFileError(f"{path}: unknown protection {protection!r}")
    identity = Identity.from_seed(seed)
    if doc.get("peer_id") != identity.peer_id:
        raise KeyFileError(f"{path} is damaged: its key does not match the peer ID it records")
    return identity
