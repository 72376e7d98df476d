"""Crash-safe file writes: temp file in the same folder, fsync, atomic rename, fsync folder."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import IO, Iterator
from contextlib import contextmanager


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, mode: int = 0o644, *, overwrite: bool = True) -> Iterator[IO[bytes]]:
    """Yield a file to write; on clean exit it replaces ``path`` whole, else nothing changes."""
    path = Path(path)
    # A random name: a temp file left by a crashed process can never block a later write.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path exists: check and write are one step
            os.unlink(tmp)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write(path: Path, data: bytes, mode: int = 0o644, *, overwrite: bool = True) -> None:
    with atomic_file(path, mode, overwrite=overwrite) as f:
        f.write(data)
