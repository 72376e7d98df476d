"""Local file-system trust: the checks every file and folder the node reads or writes goes through.

* :func:`open_regular` opens a file to read without blocking (a FIFO or a device is refused,
  never waited on) and, for the node's own files, without following a symlink;
* :func:`check_private` refuses a secret file (key file, passphrase file) that group or others
  can access, or that another user owns, as ssh does;
* :func:`check_private_dir` refuses a folder (home, store) that group or others can write to:
  whoever can write there can plant links and files the node would use.

Each check raises the caller's error type with one line saying what is wrong and the command
that fixes it.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from trust.errors import VouchnetError

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"))


def kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "an unknown kind of file")


def open_flags(*, follow: bool) -> int:
    """Flags that never block on a FIFO, never take a controlling tty and, unless ``follow``,
    never follow a symlink in the last path component."""
    flags = os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    if not follow:
        flags |= os.O_NOFOLLOW
    return flags


def opened(fd: int, path: Path | str, what: str, error: type[VouchnetError], *, single_link: bool = False,
           ) -> os.stat_result:
    """Check that ``fd`` (opened with :func:`open_flags`) is a regular file, then make it
    blocking again; with ``single_link``, that it has no other name (a hard link planted to
    another file). Closes ``fd`` and raises ``error`` otherwise."""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{what} {path} is not a regular file ({kind(st.st_mode)}); refusing to use it")
        if single_link and st.st_nlink > 1:
            raise error(f"{what} {path} has {st.st_nlink} hard links; refusing to use it (remove it)")
        os.set_blocking(fd, True)
        return st
    except BaseException:
        os.close(fd)
        raise


def os_error(exc: OSError, path: Path | str, what: str, error: type[VouchnetError], *, follow: bool,
             missing: str | None = None) -> VouchnetError:
    """The one-line error for an ``os.open`` that failed (``missing``: the message for a file
    that does not exist, when the caller has a better one)."""
    if not follow and exc.errno == errno.ELOOP:
        return error(f"{what} {path} is a symbolic link; refusing to follow it (remove it)")
    if missing is not None and exc.errno == errno.ENOENT:
        return error(missing)
    return error(f"cannot read {what} {path}: {exc.strerror}")


def open_regular(path: Path | str, what: str, error: type[VouchnetError], *, flags: int = os.O_RDONLY,
                 follow: bool = True, single_link: bool = False, mode: int = 0o600,
                 missing: str | None = None) -> tuple[int, os.stat_result]:
    """``(fd, stat)`` of the regular file at ``path``, opened with ``flags`` (O_RDONLY by
    default) without blocking: a FIFO, device or socket is refused with ``error`` naming
    ``what`` and ``path`` instead of hanging the caller. ``follow=False`` also refuses a symlink
    (O_NOFOLLOW), for files inside the node's own folders; ``single_link`` a file with other
    hard links, for a file the node writes into."""
    try:
        fd = os.open(path, flags | open_flags(follow=follow), mode)
    except OSError as exc:
        raise os_error(exc, path, what, error, follow=follow, missing=missing) from None
    return fd, opened(fd, path, what, error, single_link=single_link)


def check_private(st: os.stat_result, path: Path | str, what: str, error: type[VouchnetError]) -> None:
    """Refuse a secret file that group or others can access, or that another user owns
    (``st``: the ``fstat`` of the descriptor about to be read, so what is checked is what is read)."""
    if st.st_mode & 0o077:
        raise error(
            f"permissions {stat.S_IMODE(st.st_mode):04o} for {path} are too open: the {what} must not be "
            f"accessible by group or others. Fix it with: chmod 600 {path}")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise error(f"{path} is owned by another user (uid {st.st_uid}); refusing to use it")


def check_private_dir(path: Path, what: str, error: type[VouchnetError]) -> None:
    """Refuse a folder that group or others can write to (sticky or not)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise error(f"cannot use {what} {path}: {exc.strerror}") from None
    if mode & 0o022:
        raise error(f"{what} {path} is writable by group or others ({mode:04o}); fix it with: chmod 700 {path}")
