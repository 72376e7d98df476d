"""Hostile peers for the attack tests: real py-libp2p hosts, in a process of their own.

An attack is an ``async def attack(ctx: AttackContext) -> None`` defined in any test module. It
runs in an attacker process (``python -m tests.hostile.attacker``) started by
:func:`start_attacker`, with ``ctx.hosts`` already listening on 127.0.0.1 and connected to the
target node. The attacker prints ``attacker ready`` once the hosts are connected and then runs the
attack until it returns or the test stops the process; ``ctx.report(key, value)`` prints
``attacker stat KEY VALUE`` lines the test reads back with :meth:`AttackerProc.stats`.

The hosts use vouchnet's own stack (``overlay.net.host.build_host``: TCP + Noise + Yamux) so they
look like any peer to the target; each has a fresh random identity unless seeds are given.
Nothing in ``overlay`` imports this module.

Example::

    async def never_read(ctx):
        stream = await ctx.open(ctx.hosts[0], "/vouchnet/content/1.0.0")
        await stream.write(request_bytes)
        await trio.sleep_forever()

    with start_attacker(node.addr, "tests.hostile.test_serving:never_read", identities=4) as atk:
        ...  # the node is under attack here
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess  # nosec B404 - runs this repository's own attacker module
import sys
import time
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

from overlay.lab.localnet import LocalnetError, node_env

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0


@dataclass
class AttackContext:
    """What an attack function gets: its hosts, the target and the test's options."""

    hosts: list[Any]
    target: Any  # libp2p PeerInfo of the node under attack
    target_addr: str
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def target_id(self) -> Any:
        return self.target.peer_id

    async def open(self, host: Any, protocol: str) -> Any:
        """A new stream from ``host`` to the target on ``protocol`` (libp2p negotiation included)."""
        from libp2p.custom_types import TProtocol

        return await host.new_stream(self.target.peer_id, [TProtocol(protocol)])

    def report(self, key: str, value: Any) -> None:
        print(f"attacker stat {key} {json.dumps(value)}", flush=True)


Attack = Callable[[AttackContext], Awaitable[None]]


def load_attack(spec: str) -> Attack:
    """``"package.module:function"`` -> the attack function."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"attack {spec!r} must be 'module:function'")
    fn = getattr(importlib.import_module(module), name)
    if not callable(fn):
        raise ValueError(f"{spec} is not callable")
    return fn


async def run_attack(target_addr: str, attack: Attack, identities: int, options: dict[str, Any],
                     connect: bool = True) -> None:
    """Start ``identities`` hosts, connect each to the target, print the ready line, attack."""
    import trio

    from overlay.net.host import parse_peer_multiaddr, running_host

    target = parse_peer_multiaddr(target_addr)
    async with AsyncExitStack() as stack:
        hosts = []
        for _ in range(identities):
            hosts.append(await stack.enter_async_context(running_host(os.urandom(32), ["/ip4/127.0.0.1/tcp/0"])))
        if connect:
            async with trio.open_nursery() as nursery:
                for h in hosts:
                    nursery.start_soon(_connect, h, target)
        print(f"attacker ready {len(hosts)}", flush=True)
        await attack(AttackContext(hosts, target, target_addr, options))
        print("attacker done", flush=True)


async def _connect(host: Any, target: Any) -> None:
    import trio

    try:
        with trio.fail_after(20):
            await host.connect(target)
    except Exception as exc:  # a refused connection is part of some attacks; the attack decides
        print(f"attacker stat connect_failed {json.dumps(str(exc)[:200])}", flush=True)


# -- the test side ------------------------------------------------------------------------------

@dataclass
class AttackerProc:
    proc: subprocess.Popen
    log_path: Path
    _out: str = ""

    def _read(self) -> str:
        assert self.proc.stdout is not None  # nosec B101 - always piped
        chunk = self.proc.stdout.read()
        if chunk:
            self._out += chunk.decode(errors="replace")
        return self._out

    def stats(self) -> dict[str, Any]:
        """The latest value of every ``attacker stat`` line printed so far."""
        out: dict[str, Any] = {}
        for line in self._read().splitlines():
            if line.startswith("attacker stat "):
                _, _, key, value = line.split(" ", 3)
                out[key] = json.loads(value)
        return out

    def done(self) -> bool:
        return "attacker done" in self._read() or self.proc.poll() is not None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def spawn_attacker(target_addr: str, attack: str, *, identities: int = 1, options: dict[str, Any] | None = None,
                   log_dir: Path | None = None, connect: bool = True) -> AttackerProc:
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_path = log_dir / f"attacker-{os.getpid()}-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "tests.hostile.attacker", "--target", target_addr, "--attack", attack,
           "--identities", str(identities), "--options", json.dumps(options or {})]
    if not connect:
        cmd.append("--no-connect")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, env=node_env(), cwd=REPO)  # nosec B603
    assert proc.stdout is not None  # nosec B101 - stdout=PIPE
    os.set_blocking(proc.stdout.fileno(), False)
    return AttackerProc(proc, log_path)


@contextmanager
def start_attacker(target_addr: str, attack: str, *, identities: int = 1, options: dict[str, Any] | None = None,
                   log_dir: Path | None = None, connect: bool = True,
                   timeout: float = READY_TIMEOUT) -> Iterator[AttackerProc]:
    """Run an attacker process until the block ends (then kill it); wait for its ready line."""
    atk = spawn_attacker(target_addr, attack, identities=identities, options=options, log_dir=log_dir,
                         connect=connect)
    try:
        deadline = time.monotonic() + timeout
        while "attacker ready" not in atk._read():
            if atk.proc.poll() is not None or time.monotonic() > deadline:
                raise LocalnetError(f"attacker {attack} did not get ready:\n{atk._out}\n{atk.log()}")
            time.sleep(0.05)
        yield atk
    finally:
        atk.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.hostile.attacker", description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True, help="full multiaddr of the node under attack")
    ap.add_argument("--attack", required=True, help="module:function of the attack")
    ap.add_argument("--identities", type=int, default=1)
    ap.add_argument("--options", default="{}", help="JSON object handed to the attack as ctx.options")
    ap.add_argument("--no-connect", action="store_true", help="do not connect the hosts first")
    args = ap.parse_args(argv)
    import logging

    import trio

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    trio.run(run_attack, args.target, load_attack(args.attack), args.identities, json.loads(args.options),
             not args.no_connect)


if __name__ == "__main__":
    main()
