"""Shared fixtures for the attack tests: a default node to attack, and its publisher."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.hostile.attacks import add_loopback_victim
from tests.nodes import Cluster, NodeProc


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Node processes started here are all stopped at the end of the test, whatever happened."""
    with Cluster(tmp_path) as c:
        yield c


@pytest.fixture
def victim(cluster: Cluster) -> NodeProc:
    """A node with the default configuration (what a user gets from `vouchnet init`)."""
    return cluster.add("victim")


@pytest.fixture
def loopback_victim(cluster: Cluster) -> NodeProc:
    """The default node but for per-IP/per-subnet limits lifted: the many identities of an attack
    all dial from 127.0.0.1 and must reach the layer under test, not the address limits."""
    return add_loopback_victim(cluster)
