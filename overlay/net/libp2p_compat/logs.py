"""Workarounds (a) and (e): py-libp2p's logging set-up. See the package docstring."""
from __future__ import annotations

import logging
import os
import sys
from types import ModuleType
from typing import Any

_LIBP2P_LOGGER = "libp2p"

# ---------------------------------------------------------------------------------------
# (a) `import libp2p` resets the "libp2p" logger.
#
# Verified: libp2p/__init__.py line 141 calls `setup_logging()` at import time;
# libp2p/utils/logging.py `setup_logging()`: when the LIBP2P_DEBUG environment variable
# is unset it does `root_logger.handlers.clear()`,
# `setLevel(logging.WARNING)` and `propagate = False` on logging.getLogger("libp2p")
# (lines 117-124). So whatever level/handlers we configured before the import are lost,
# and because propagate is False libp2p records never reach our root handlers (Python's
# `logging.lastResort` prints WARNING+ straight to stderr instead).
#
# Fix: snapshot the logger before the first import and restore it afterwards; if libp2p
# was already imported by someone else we cannot know the earlier state, so we undo the
# reset's signature (WARNING, no handlers, propagate False) into a neutral child logger
# (NOTSET, propagate True) that follows our root configuration. When LIBP2P_DEBUG is set
# the user explicitly asked for libp2p's own logging set-up, so we leave it alone.
# ---------------------------------------------------------------------------------------
def import_libp2p(level: int | None = None) -> ModuleType:
    """Import ``libp2p`` (once) and undo its logger reset; return the module.

    :param level: if given, set the ``libp2p`` logger to this level afterwards.
    """
    logger = logging.getLogger(_LIBP2P_LOGGER)
    first_import = "libp2p" not in sys.modules
    saved = (logger.level, list(logger.handlers), logger.propagate)

    import libp2p  # noqa: PLC0415 - the point of this function

    if not os.environ.get("LIBP2P_DEBUG"):
        if first_import:
            logger.setLevel(saved[0])
            logger.handlers[:] = saved[1]
            logger.propagate = saved[2]
        elif logger.level == logging.WARNING and not logger.handlers and not logger.propagate:
            logger.setLevel(logging.NOTSET)
            logger.propagate = True
    if level is not None:
        logger.setLevel(level)
    return libp2p


# Importing this module performs the fixed import, before any other libp2p module loads.
import_libp2p()

import libp2p.network.connection.swarm_connection as _swarm_connection  # noqa: E402


# ---------------------------------------------------------------------------------------
# (e) libp2p/network/connection/swarm_connection.py logs with the module-level functions
# `logging.debug(...)` / `logging.warning(...)` (lines 85-365; it has no `getLogger`).
# Those go to the ROOT logger and, if the root has no handler yet, call
# `logging.basicConfig()` (CPython logging/__init__.py, `def debug`): the first libp2p
# connection then installs a stderr handler on the root logger of OUR process, changing
# how every later log record (ours and libp2p's) is printed. Verified: root had no
# handlers after `import libp2p`, and "ERROR:libp2p.transport.tcp.tcp:..." lines
# appeared after the first SwarmConn existed. Fix: give that module a `logging` stand-in
# whose logging functions go to its own named logger (under "libp2p", so the level set
# in (a) applies) and everything else to the real logging module.
# ---------------------------------------------------------------------------------------
class _NamedLoggerShim:
    _FUNCS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log"})

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def __getattr__(self, attr: str) -> Any:
        if attr in self._FUNCS:
            return getattr(self._logger, attr)
        return getattr(logging, attr)


if getattr(_swarm_connection, "logging", None) is logging:
    _swarm_connection.logging = _NamedLoggerShim(_swarm_connection.__name__)  # type: ignore[attr-defined]

