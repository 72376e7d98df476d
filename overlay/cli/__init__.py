"""The `vouchnet` command line (click). Nothing in the library imports this package.

``main`` is the root group (``overlay.cli.app``); importing the command modules registers their
commands on it. Entry point: ``overlay.cli:main`` (also ``python -m overlay.cli``)."""
from __future__ import annotations

from overlay.cli.app import main
from overlay.cli import ledger, local, node, policy, sim, trust  # noqa: F401  (register their commands)

__all__ = ["main"]
