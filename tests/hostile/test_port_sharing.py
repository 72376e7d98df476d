"""Finding 8: a second listener on a port a node holds (row H8, libp2p_compat (n)).

On main, py-libp2p's TCP listener sets SO_REUSEPORT, so a second `vouchnet node run` on a port
a running node held started normally, and Linux spread incoming connections over the two
listeners; any same-uid process holding the port with SO_REUSEPORT could share it the same way.
A node must refuse such a port (exit 2, one clear line, nothing started), and the port of a
running node must be its own: nobody can join it later.
"""
from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Iterator

import pytest

from tests.nodes import START_TIMEOUT, Cluster, NodeProc, init_home, wait_for
from overlay.lab.localnet import spawn_node

pytestmark = pytest.mark.network


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_args(home: Path, listen: str) -> list[str]:
    return ["--home", str(home), "-v", "node", "run", "--listen", listen]


def home_state(home: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``home`` (but the log the test harness writes) with its size and mtime."""
    return {str(p.relative_to(home)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(home.rglob("*")) if p.is_file() and p.name != "node.log"}


def run_refused(cluster: Cluster, name: str, listen: str) -> tuple[NodeProc, str]:
    """Start `vouchnet node run --listen LISTEN` in a fresh home; it must exit 2 with nothing left."""
    home = init_home(cluster.root / name)
    before = home_state(home)
    node = spawn_node(home, args=node_args(home, listen))
    cluster.nodes.append(node)  # stopped at the end whatever happens
    # Exit, or print "control socket" (it started: the bug); no fixed sleep either way.
    wait_for(lambda: node.proc.poll() is not None or node.poll_ready() or b"control socket" in node._out,
             "the second node to exit or start", timeout=START_TIMEOUT)
    assert node.proc.poll() is not None, f"node started on a port already in use:\n{node._out.decode()}"
    assert node.proc.returncode == 2, node.log()
    errors = [line for line in node.log().splitlines() if line.startswith("error:")]
    assert errors == [f"error: cannot listen on {listen}: the address is in use by another process "
                      "(stop it, or choose another port with --listen)"], node.log()
    assert not (home / "node.sock").exists()
    assert home_state(home) == before  # no store, ledger or anything else created or changed
    return node, node.log()


def assert_cannot_join(port: int) -> None:
    """A same-uid SO_REUSEPORT socket cannot bind the port: the node's listener is exclusive."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        with pytest.raises(OSError) as exc:
            s.bind(("127.0.0.1", port))
            s.listen(1)
        assert exc.value.errno == errno.EADDRINUSE


def test_second_node_on_a_held_port_is_refused(cluster: Cluster, tmp_path: Path):
    port = free_port()
    listen = f"/ip4/127.0.0.1/tcp/{port}"
    first = cluster.add("first", args_fn=lambda home: node_args(home, listen))
    assert first.addr == f"{listen}/p2p/{first.peer_id}"

    run_refused(cluster, "second", listen)
    assert_cannot_join(port)

    # the first node still holds and serves its port
    assert first.proc.poll() is None, first.log()[-2000:]
    assert first.cli_json("status")["peer_id"] == first.peer_id
    src = tmp_path / "doc.bin"
    src.write_bytes(os.urandom(300_000))
    shared = first.cli_json("share", str(src))
    honest = cluster.add("honest")
    out = tmp_path / "out.bin"
    res = honest.cli_json("fetch", shared["cid"], "-o", str(out), "--from", first.addr, timeout=90)
    assert res["cid"] == shared["cid"] and out.read_bytes() == src.read_bytes()


@pytest.fixture(params=["reuseport", "plain"])
def held_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """A port held (listening) by a plain socket of this process, same uid as the node."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if request.param == "reuseport":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


def test_port_held_by_another_process_is_refused(cluster: Cluster, held_port: int):
    run_refused(cluster, "node", f"/ip4/127.0.0.1/tcp/{held_port}")


# -- the host's own bind, without the CLI's early probe (a port taken between probe and bind) ----

def listen_here(reuseport: bool) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


@pytest.mark.parametrize("reuseport", [True, False], ids=["reuseport", "plain"])
def test_host_refuses_a_held_port(reuseport: bool):
    import trio

    from overlay.net.host import running_host
    from overlay.net.listen import ListenError

    async def body() -> None:
        with trio.fail_after(15):
            async with running_host(b"\x08" * 32, [listen]):
                raise AssertionError("the host ran on a port another socket listens on")

    with listen_here(reuseport) as held:
        listen = f"/ip4/127.0.0.1/tcp/{held.getsockname()[1]}"
        with pytest.raises(ListenError) as exc:
            trio.run(body)
    assert str(exc.value) == (f"cannot listen on {listen}: the address is in use by another process "
                              "(stop it, or choose another port with --listen)")


def test_host_port_cannot_be_joined():
    import trio

    from overlay.net.host import running_host

    async def body() -> None:
        with trio.fail_after(15):
            async with running_host(b"\x08" * 32, ["/ip4/127.0.0.1/tcp/0"]) as host:
                port = int(host.get_addrs()[0].value_for_protocol("tcp"))
                assert_cannot_join(port)

    trio.run(body)


def test_node_that_cannot_listen_leaves_no_control_socket(tmp_path: Path):
    """The in-process node on a held port: ListenError out of run, no control socket, store closed."""
    import trio

    from overlay.config import load_config
    from overlay.home import Home
    from overlay.net.listen import ListenError
    from overlay.node.daemon import Node
    from trust import keyfile

    home = init_home(tmp_path / "node")
    h = Home(home)
    with listen_here(True) as held:
        listen = f"/ip4/127.0.0.1/tcp/{held.getsockname()[1]}"
        node = Node(h, keyfile.load_identity(h.key_file, None), load_config(h.config_file), listen=[listen])
        with pytest.raises(ListenError, match="in use by another process"):
            trio.run(node.run)
    assert not (home / "node.sock").exists()
    with pytest.raises(Exception):  # closed by run's finally
        node.store.db.execute("SELECT 1")
