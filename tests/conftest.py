import os
import subprocess
import sys
from pathlib import Path

import pytest

from trust.identity import Identity

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def identity() -> Identity:
    return Identity.from_seed(bytes(range(32)))


@pytest.fixture
def other_identity() -> Identity:
    return Identity.from_seed(bytes(range(1, 33)))


def run_cli(*args: str, home: Path | None = None, check: bool = False, timeout: float = 60, env=None,
            input: bytes | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "overlay.cli"]
    if home is not None:
        cmd += ["--home", str(home)]
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("VOUCHNET_HOME", None)
    proc = subprocess.run(cmd + list(args), capture_output=True, timeout=timeout, env=full_env, input=input,
                          cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"vouchnet {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc
