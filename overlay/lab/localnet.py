"""Real vouchnet node processes on 127.0.0.1: start them, talk to them, stop every one.

Shared by the integration tests (tests/nodes.py re-exports it) and `vouchnet sim --real`
(overlay/sim/realnet.py). Standard library only, so importing it does not import libp2p.
A node is ready when it has printed its ready lines (``overlay.node.daemon.write_ready_line``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess  # nosec B404 - runs this repository's own node and CLI modules
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

REPO = Path(__file__).resolve().parents[2]  # the checkout: overlay/lab/ is two below it
START_TIMEOUT = 20.0
LISTEN = "/ip4/127.0.0.1/tcp/0"

T = TypeVar("T")


class LocalnetError(RuntimeError):
    """A node did not start, or something waited for did not happen in time."""


def node_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: this checkout importable, no inherited home."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}
    env.pop("VOUCHNET_HOME", None)
    return env


def run_cli(*args: str, home: Path | None = None, check: bool = False, timeout: float = 60,
            env: dict[str, str] | None = None, input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run ``vouchnet [--home HOME] ARGS`` (this checkout's) and capture its output."""
    cmd = [sys.executable, "-m", "overlay.cli"]
    if home is not None:
        cmd += ["--home", str(home)]
    proc = subprocess.run(cmd + list(args), capture_output=True, timeout=timeout, env=node_env(env),  # nosec B603
                          input=input, cwd=REPO)
    if check and proc.returncode != 0:
        raise LocalnetError(f"vouchnet {' '.join(args)} failed ({proc.returncode}): {proc.stderr.decode()}")
    return proc


@dataclass
class NodeProc:
    home: Path
    proc: subprocess.Popen
    peer_id: str = ""
    addrs: list[str] = field(default_factory=list)
    log_path: Path | None = None
    _out: bytes = b""

    @property
    def addr(self) -> str:
        return self.addrs[0]

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        return run_cli(*args, home=self.home, check=check, timeout=timeout)

    def cli_json(self, *args: str, timeout: float = 60) -> Any:
        return json.loads(self.cli(*args, "--json", timeout=timeout).stdout)

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 5.0) -> int:
        self.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def poll_ready(self) -> bool:
        """Read what the process printed so far; True once its ready lines are complete."""
        assert self.proc.stdout is not None  # nosec B101 - spawn_node always pipes stdout
        self._out += self.proc.stdout.read() or b""
        for line in self._out.decode(errors="replace").splitlines():
            if line.startswith("vouchnet node "):
                self.peer_id = line.split()[2]
            elif line.startswith("listening on "):
                a = line.split()[2]
                if a not in self.addrs:
                    self.addrs.append(a)
            elif line.startswith("control socket") and self.peer_id and self.addrs:
                return True
        return False

    def start_failure(self) -> LocalnetError:
        return LocalnetError(f"node in {self.home} did not start:\n{self._out.decode(errors='replace')}\n{self.log()}")


def spawn_node(home: Path, *extra: str, module: str = "overlay.cli", args: list[str] | None = None) -> NodeProc:
    """Start a node process (``vouchnet node run`` by default) without waiting for it."""
    log_path = home / "node.log"
    if args is None:
        args = ["--home", str(home), "-v", "node", "run", "--listen", LISTEN, *extra]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE,  # nosec B603
                                stderr=log, env=node_env(), cwd=REPO)
    assert proc.stdout is not None  # nosec B101 - stdout=PIPE
    os.set_blocking(proc.stdout.fileno(), False)
    return NodeProc(home, proc, log_path=log_path)


def wait_ready(nodes: Iterable[NodeProc], timeout: float = START_TIMEOUT) -> None:
    """Wait until every node has printed its ready lines; stop them all if one does not."""
    nodes = list(nodes)
    pending = list(nodes)
    deadline = time.monotonic() + timeout
    while pending:
        pending = [n for n in pending if not n.poll_ready()]
        failed = next((n for n in pending if n.proc.poll() is not None), None)
        if failed is None and pending and time.monotonic() > deadline:
            failed = pending[0]
        if failed is not None:
            stop_all(nodes)
            raise failed.start_failure()
        if pending:
            time.sleep(0.05)


def start_node(home: Path, *extra: str, module: str = "overlay.cli", args: list[str] | None = None) -> NodeProc:
    """Run a node process and wait until it prints its peer ID and addresses."""
    node = spawn_node(home, *extra, module=module, args=args)
    wait_ready([node])
    return node


def stop_all(nodes: Iterable[NodeProc], timeout: float = 5.0) -> None:
    """SIGTERM every node at once, then wait; whatever is still running after ``timeout`` is killed."""
    nodes = list(nodes)
    for n in nodes:
        n.terminate()
    deadline = time.monotonic() + timeout
    for n in nodes:
        n.stop(max(0.1, deadline - time.monotonic()))


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 10.0, poll: float = 0.2) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(poll)
    raise LocalnetError(f"timed out after {timeout} s waiting for {what}; last: {last!r}")


def clone_content(src_home: Path, dst_home: Path, cid: str) -> int:
    """Copy complete content ``cid`` from ``src_home``'s store into ``dst_home``'s; returns chunks.

    Goes through the public store API: ``begin`` with the publisher's signed manifest (checked
    against the CID), ``put_chunk`` for every chunk with its proof (verified before writing),
    ``finish`` (root re-checked). Safe while a node runs on ``src_home`` (SQLite WAL readers).
    This is how the adversaries of the tests, the demo and ``sim --real`` hold a publisher's CID.
    """
    from overlay.store import ContentStore

    src = ContentStore(Path(src_home) / "store")
    dst = ContentStore(Path(dst_home) / "store")
    try:
        item = src.require(cid)
        if not item.complete:
            raise ValueError(f"{cid} is not complete in {src_home}")
        dst.begin(cid, item.signed_manifest)
        for index in dst.missing_chunks(cid):
            data, proof = src.read_chunk(cid, index)
            dst.put_chunk(cid, index, data, proof)
        dst.finish(cid)
        return item.manifest.chunk_count
    finally:
        src.close()
        dst.close()


def init_home(home: Path, config_extra: str = "") -> Path:
    run_cli("init", home=home, check=True)
    if config_extra:
        with open(home / "config.toml", "a") as f:
            f.write("\n" + config_extra)
    return home


class Cluster:
    """Owns node processes; stops every one of them on exit, whatever happened."""

    def __init__(self, root: Path):
        self.root = root
        self.nodes: list[NodeProc] = []

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        stop_all(self.nodes)

    def add(self, name: str, *extra: str, config_extra: str = "", module: str = "overlay.cli",
            args_fn: Callable[[Path], list[str]] | None = None) -> NodeProc:
        home = init_home(self.root / name, config_extra)
        args = args_fn(home) if args_fn else None
        node = start_node(home, *extra, module=module, args=args)
        self.nodes.append(node)
        return node
