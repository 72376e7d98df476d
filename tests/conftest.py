import pytest

from overlay.lab.localnet import REPO, run_cli  # noqa: F401  (re-exported: tests import them from here)
from trust.identity import Identity


@pytest.fixture
def identity() -> Identity:
    return Identity.from_seed(bytes(range(32)))


@pytest.fixture
def other_identity() -> Identity:
    return Identity.from_seed(bytes(range(1, 33)))
