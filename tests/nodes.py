"""Start real vouchnet node processes on 127.0.0.1 for integration tests, and clean them up.

The helpers live in overlay/lab/localnet.py (``vouchnet sim --real`` uses them too)."""
from overlay.lab.localnet import START_TIMEOUT, Cluster, NodeProc, init_home, start_node, wait_for

__all__ = ["START_TIMEOUT", "Cluster", "NodeProc", "init_home", "start_node", "wait_for"]
