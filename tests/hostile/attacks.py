"""The registry of attacks the hostile tests define, for running several at once.

Each entry names an attack function (``module:function``, run by :mod:`tests.hostile.attacker`),
how many identities it uses, the options it needs from the victim, and how to tell it is under
way. ``test_all_at_once`` and ``benchmarks/bench_hostile.py`` both read this list, so a new
attack added here is tested together with the others and measured."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from overlay.lab.localnet import Cluster, NodeProc, init_home, start_node

MiB = 1 << 20

# Every attacker and honest peer of these tests dials from 127.0.0.1, where the per-IP and
# per-subnet limits (H10) would refuse them before the layer under attack is reached.
LOOPBACK_LIMITS = {"connections_per_ip": 256, "connections_per_subnet": 256}


def set_limits(home: Path, limits: dict[str, int]) -> None:
    """Rewrite keys of the [limits] section `vouchnet init` wrote in ``home``'s config."""
    cfg = home / "config.toml"
    text = cfg.read_text()
    for key, value in limits.items():
        text, n = re.subn(rf"(?m)^{key} = \d+$", f"{key} = {value}", text)
        if n != 1:
            raise AssertionError(f"config.toml has no single [limits] key {key!r}")
    cfg.write_text(text)


def add_loopback_victim(cluster: Cluster, name: str = "victim", *extra: str) -> NodeProc:
    """A default node but for LOOPBACK_LIMITS, started in ``cluster``."""
    home = init_home(cluster.root / name)
    set_limits(home, LOOPBACK_LIMITS)
    node = start_node(home, *extra)
    cluster.nodes.append(node)
    return node


@dataclass
class Attack:
    name: str
    spec: str  # module:function run by tests.hostile.attacker
    identities: int
    options: Callable[[NodeProc, Path], dict[str, Any]] = field(default=lambda victim, root: {})
    under_way: Callable[[dict[str, Any]], bool] = field(default=lambda stats: True)  # from atk.stats()


def share(node: NodeProc, root: Path, size: int) -> dict:
    """Share a fresh random file of ``size`` bytes on ``node``."""
    src = root / f"share-{time.monotonic_ns()}.bin"
    src.write_bytes(os.urandom(size))
    return node.cli_json("share", str(src))


def _unread_options(victim: NodeProc, root: Path) -> dict[str, Any]:
    big = share(victim, root, 8 * MiB)
    return {"cid": big["cid"], "chunks": min(16, big["chunks"])}


def _dht_options(victim: NodeProc, root: Path) -> dict[str, Any]:
    from overlay.node.daemon import dht_key
    from trust.manifest import parse_cid

    return {"key": dht_key(parse_cid(share(victim, root, 1 * MiB)["cid"]))}


ATTACKS: list[Attack] = [
    Attack("unread answers (2 ids x 4 streams)", "tests.hostile.test_stream_failures:request_and_never_read", 2,
           _unread_options, lambda st: bool(st.get("sent"))),
    Attack("DHT provider sybils (40 ids)", "tests.hostile.test_dht_providers:announce_as_provider", 40,
           _dht_options, lambda st: bool(st.get("announced"))),
    Attack("slow requests (16 ids x 4 streams, a byte a second)", "tests.hostile.test_slow_requests:trickle_requests",
           16, lambda victim, root: {"cid": share(victim, root, 200_000)["cid"]},
           lambda st: (st.get("peak") or 0) >= 64),
]
