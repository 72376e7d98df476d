"""Start real vouchnet node processes on 127.0.0.1 for integration tests, and clean them up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import REPO, run_cli

START_TIMEOUT = 20.0


@dataclass
class NodeProc:
    home: Path
    proc: subprocess.Popen
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    log_path: Path | None = None

    @property
    def addr(self) -> str:
        return self.addrs[0]

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_cli(*args, home=self.home, check=check, timeout=timeout)

    def cli_json(self, *args: str, timeout: float = 60):
        return json.loads(self.cli(*args, "--json", timeout=timeout).stdout)

    def stop(self, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def wait_for(predicate, what: str, timeout: float = 10.0, poll: float = 0.2):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def init_home(home: Path, config_extra: str = "") -> Path:
    run_cli("init", home=home, check=True)
    if config_extra:
        with open(home / "config.toml", "a") as f:
            f.write("\n" + config_extra)
    return home


def start_node(home: Path, *extra: str, module: str = "overlay.cli", args: list[str] | None = None) -> NodeProc:
    """Run a node process and wait until it prints its peer ID and addresses."""
    log_path = home / "node.log"
    out = open(log_path, "wb")
    if args is None:
        args = ["--home", str(home), "-v", "node", "run", "--listen", "/ip4/127.0.0.1/tcp/0", *extra]
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=out,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    node = NodeProc(home, proc, log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read() or b""
        buf += chunk
        for line in buf.decode(errors="replace").splitlines():
            if line.startswith("vouchnet node "):
                node.peer_id = line.split()[2]
            elif line.startswith("listening on "):
                a = line.split()[2]
                if a not in node.addrs:
                    node.addrs.append(a)
            elif line.startswith("control socket"):
                if node.peer_id and node.addrs:
                    return node
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    node.stop()
    raise AssertionError(f"node in {home} did not start:\n{buf.decode(errors='replace')}\n{node.log()}")


class Cluster:
    """Owns node processes; stops every one of them on exit, whatever happened."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes: list[NodeProc] = []

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        for n in self.nodes:
            n.stop()

    def add(self, name: str, *extra: str, config_extra: str = "", module: str = "overlay.cli",
            args_fn=None) -> NodeProc:
        home = init_home(self.root / name, config_extra)
        args = args_fn(home) if args_fn else None
        node = start_node(home, *extra, module=module, args=args)
        self.nodes.append(node)
        return node
