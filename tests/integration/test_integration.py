"""End-to-end tests with real vouchnet node processes on 127.0.0.1.

Every adversary mode of tests/adversary.py is run against a client that also has two honest
providers: the fetch must complete with exactly the published bytes, the adversary must end up
``misbehaved`` with the right observation kind, the honest providers must not, and nothing
unverified may reach the output path or the client's store. Further tests: resuming a fetch
after the client node was SIGKILLed, SIGTERM shutdown and restart, DHT provider discovery through
a bootstrap node that does not hold the content, and the control socket's permissions and
robustness.

Set-up shared across tests (module scope): a publisher P and an honest provider H that fetched
the content from P. Each adversary test starts its own adversary A (holding a clone of P's
content, same CID) and a fresh client C. All nodes use ``request_timeout = 2.0`` so a stall is
detected quickly; every process is stopped when its Cluster exits.

Why the content is 14 MiB (57 chunks, 8 batches) rather than ~3 MiB: a fetch starts several
workers per provider with ``start_soon`` and each worker takes a batch on its first step, but
trio runs a batch of new tasks in a randomly reversed order. With 2 batches (3 MiB) the
adversary's workers got no batch at all in about half the runs, so the chunk-lying modes went
unexercised; with at least 6 batches every provider's workers get one.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from overlay import store as store_module
from overlay.store import ContentStore
from tests.adversary import clone_content, forge_signature, foreign_manifest
from tests.conftest import REPO, run_cli
from tests.nodes import Cluster, NodeProc, init_home, start_node
from trust.errors import SignatureError
from trust.identity import Identity
from trust.manifest import open_manifest

pytestmark = pytest.mark.network

REQUEST_TIMEOUT = 2.0
CHUNK = 256 * 1024
CONTENT_SIZE = 14 * 1024 * 1024 + 4321   # 57 chunks: 8 batches of 8 (see the module docstring)
LARGE_SIZE = 40 * 1024 * 1024 + 999      # 161 chunks, for the resume test
LISTEN = "/ip4/127.0.0.1/tcp/0"


# -- helpers ---------------------------------------------------------------------------------

def prepare_home(home: Path, request_timeout: float = REQUEST_TIMEOUT) -> Path:
    """``vouchnet init`` a home and set [content] request_timeout in its config.toml."""
    init_home(home)
    cfg = home / "config.toml"
    text = cfg.read_text()
    assert "request_timeout = 10.0" in text
    cfg.write_text(text.replace("request_timeout = 10.0", f"request_timeout = {request_timeout}"))
    return home


def add_node(cluster: Cluster, name: str, *extra: str, home: Path | None = None) -> NodeProc:
    """Start an honest node (``vouchnet node run``) owned by ``cluster``."""
    home = home or prepare_home(cluster.root / name)
    node = start_node(home, *extra)
    cluster.nodes.append(node)
    return node


def add_adversary(cluster: Cluster, home: Path, mode: str, *extra: str) -> NodeProc:
    """Start ``python -m tests.adversary`` on an already prepared home, owned by ``cluster``."""
    args = ["--home", str(home), "--mode", mode, "--listen", LISTEN, *extra]
    node = start_node(home, module="tests.adversary", args=args)
    cluster.nodes.append(node)
    return node


def bootstrap_args(*nodes: NodeProc) -> list[str]:
    return [x for n in nodes for x in ("--bootstrap", n.addr)]


def from_args(*nodes: NodeProc) -> list[str]:
    return [x for n in nodes for x in ("--from", n.addr)]


def fetch(node: NodeProc, cid: str, out: Path, *providers: NodeProc, timeout: float = 30) -> dict:
    return node.cli_json("fetch", cid, "-o", str(out), *from_args(*providers), timeout=timeout)


def peers_by_id(node: NodeProc) -> dict[str, dict]:
    return {row["peer_id"]: row for row in node.cli_json("peers")}


def verify_ok(node: NodeProc, cid: str) -> None:
    proc = node.cli("verify", cid, "--json", check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"], report


def stored_chunks(home: Path, cid: str) -> int:
    """Chunks durably recorded for partial content ``cid`` in ``home``'s store (read directly)."""
    db = sqlite3.connect(home / "store" / "store.db", timeout=10)
    try:
        return db.execute("SELECT count(*) FROM chunks WHERE cid = ?", (cid,)).fetchone()[0]
    finally:
        db.close()


def evidence(home: Path, peer: str, kind: str) -> list[str]:
    """The evidence strings ``home``'s node recorded in its ledger against ``peer`` for ``kind``."""
    from trust.ledger import Ledger
    ledger = Ledger(home / "ledger.db", readonly=True)
    try:
        return [e.body["ev"] for e in ledger.entries() if e.kind == "observation"
                and e.body["peer"] == peer and e.body["kind"] == kind]
    finally:
        ledger.close()


def wait_connected(node: NodeProc, peers: int = 1, dht: int = 1, timeout: float = 10.0) -> dict:
    """Wait until ``node`` is connected to ``peers`` peers with ``dht`` of them in its DHT table.

    ``vouchnet node run`` prints its ready lines before its bootstrap dials have finished, so a
    test that relies on the DHT (not on --from) waits for them here.
    """
    deadline = time.monotonic() + timeout
    while True:
        st = node.cli_json("status")
        if st["connected_peers"] >= peers and st["dht_routing_table"] >= dht:
            return st
        assert time.monotonic() < deadline, f"{node.home.name} did not connect in time: {st}"
        time.sleep(0.1)


def assert_clean_output(out: Path, src: Path) -> None:
    """The output is exactly the source, and nothing else (no temp file) was left beside it."""
    assert out.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def assert_store_sealed(home: Path) -> None:
    """No partial file or share temp file is left in the store."""
    assert list((home / "store" / "partial").iterdir()) == []


@dataclass
class Net:
    root: Path
    cluster: Cluster
    p: NodeProc
    h: NodeProc
    src: Path
    cid: str
    chunks: int


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("net")
    src = root / "content.bin"
    src.write_bytes(os.urandom(CONTENT_SIZE))
    with Cluster(root) as cluster:
        p = add_node(cluster, "p")
        info = p.cli_json("share", str(src))
        assert info["chunks"] == -(-CONTENT_SIZE // CHUNK) and info["publisher"] == p.peer_id
        h = add_node(cluster, "h", *bootstrap_args(p))
        (root / "h-out").mkdir()
        res = fetch(h, info["cid"], root / "h-out" / "content.bin", p)
        assert res["already_had"] == 0 and res["providers"][p.peer_id]["chunks"] == info["chunks"]
        yield Net(root, cluster, p, h, src, info["cid"], info["chunks"])


# -- adversaries -----------------------------------------------------------------------------

ADVERSARIES = [
    ("corrupt", "chunk_invalid"),
    ("wrong_index", "chunk_invalid"),
    ("forged_manifest", "manifest_invalid"),
    ("foreign_manifest", "manifest_invalid"),
    ("oversized", "protocol_violation"),
    ("malformed", "protocol_violation"),
    ("stall", "timeout"),
]


def test_adversary_manifests_are_the_intended_forgeries(net: Net):
    """Over the network a forged or foreign manifest is already refused because it does not hash
    to the CID (the CID pins the signed bytes); here, without the CID, check that they are what
    they claim to be: a bad signature, and a valid signature by the wrong key."""
    store = ContentStore(net.p.home / "store")
    try:
        item = store.require(net.cid)
    finally:
        store.close()
    with pytest.raises(SignatureError, match="bad signature"):
        open_manifest(forge_signature(item.signed_manifest))
    other = Identity.generate()
    foreign = foreign_manifest(item.manifest, other)
    with pytest.raises(SignatureError, match=f"claims {net.p.peer_id} as its signer but was signed by {other.peer_id}"):
        open_manifest(foreign)


@pytest.mark.parametrize("mode,kind", ADVERSARIES, ids=[m for m, _ in ADVERSARIES])
def test_adversary_is_caught_and_fetch_completes(net: Net, tmp_path: Path, mode: str, kind: str):
    t0 = time.monotonic()
    with Cluster(tmp_path) as cluster:
        def start_adversary() -> NodeProc:
            a_home = prepare_home(tmp_path / "a")
            assert clone_content(net.p.home, a_home, net.cid) == net.chunks
            return add_adversary(cluster, a_home, mode)

        # Both processes start at once (each spends ~1 s importing libp2p); C then dials A
        # through its control socket, the same dial as a --bootstrap address.
        with ThreadPoolExecutor(2) as pool:
            a_job = pool.submit(start_adversary)
            c_job = pool.submit(add_node, cluster, "c", *bootstrap_args(net.p, net.h))
            a, c = a_job.result(), c_job.result()
        c.cli("connect", a.addr)
        out = tmp_path / "out" / "content.bin"
        out.parent.mkdir()

        # The adversary is first: it is asked for the manifest first and gets batches.
        res = fetch(c, net.cid, out, a, net.p, net.h)

        assert res["cid"] == net.cid and res["chunks"] == net.chunks and res["size"] == CONTENT_SIZE
        assert_clean_output(out, net.src)
        provs = res["providers"]
        if mode == "stall":  # stopped once the others had every chunk: a strike, maybe not yet dropped
            assert provs[a.peer_id]["strikes"] >= 1, provs[a.peer_id]
        else:
            assert provs[a.peer_id]["dropped"].startswith(f"{kind}:"), provs[a.peer_id]
        if mode != "stall":  # a staller's first chunk per batch is genuine and may be kept
            assert provs[a.peer_id]["chunks"] == 0, provs[a.peer_id]
        honest = {pid: s for pid, s in provs.items() if pid in (net.p.peer_id, net.h.peer_id)}
        assert honest and all(not s["dropped"] for s in honest.values()), provs
        assert sum(s["chunks"] for s in provs.values()) == net.chunks

        peers = peers_by_id(c)
        assert peers[a.peer_id]["misbehaved"], peers[a.peer_id]
        assert peers[a.peer_id]["observations"].get(kind, 0) >= 1, peers[a.peer_id]
        assert all(evidence(c.home, a.peer_id, kind)), "an observation without evidence"
        for honest_node in (net.p, net.h):
            row = peers.get(honest_node.peer_id)
            assert row is not None and not row["misbehaved"], row

        verify_ok(c, net.cid)
        assert_store_sealed(c.home)
        assert net.p.cli_json("status")["peer_id"] == net.p.peer_id
        assert a.proc.poll() is None and c.proc.poll() is None
    assert time.monotonic() - t0 < 30


def test_honest_nodes_keep_serving_after_attacks(net: Net, tmp_path: Path):
    for n in (net.p, net.h):
        st = n.cli_json("status")
        assert st["peer_id"] == n.peer_id and st["complete"] >= 1
        assert n.proc.poll() is None
    with Cluster(tmp_path) as cluster:
        d = add_node(cluster, "d", *bootstrap_args(net.p))
        out = tmp_path / "out" / "content.bin"
        out.parent.mkdir()
        res = fetch(d, net.cid, out, net.p)
        assert res["already_had"] == 0 and res["providers"][net.p.peer_id]["chunks"] >= 1
        assert_clean_output(out, net.src)
        verify_ok(d, net.cid)
        assert not any(r["misbehaved"] for r in d.cli_json("peers"))


def test_busy_provider_is_retried_not_failed(net: Net, tmp_path: Path):
    """A provider that serves one stream per peer answers BUSY to the client's other pipelined
    requests; the client backs off and asks it again, so a fetch from that provider alone
    completes, and BUSY counts against nobody."""
    with Cluster(tmp_path) as cluster:
        b_home = prepare_home(tmp_path / "b")
        cfg = b_home / "config.toml"
        cfg.write_text(cfg.read_text().replace("streams_per_peer = 4", "streams_per_peer = 1"))
        assert clone_content(net.p.home, b_home, net.cid) == net.chunks
        b = add_node(cluster, "b", home=b_home)
        c = add_node(cluster, "c")
        out = tmp_path / "out" / "content.bin"
        out.parent.mkdir()
        res = fetch(c, net.cid, out, b)
        assert res["providers"][b.peer_id] == {"chunks": net.chunks, "bytes": CONTENT_SIZE, "strikes": 0,
                                               "dropped": ""}, res
        assert_clean_output(out, net.src)
        verify_ok(c, net.cid)
        assert not peers_by_id(c)[b.peer_id]["misbehaved"]


def test_refused_provider_is_skipped_not_fatal(net: Net, tmp_path: Path):
    """C's local policy refuses M on every action (so the dial to M is refused) and H as a
    provider (choose_provider only); M holds the content too. `fetch --from M --from H --from P`
    skips both, reports each with its rule, and completes from P; `fetch --from M` alone fails
    with an error naming M and the rule. Unit tests: tests/overlay/node/test_fetch_ranking.py."""
    from overlay.node import control
    t0 = time.monotonic()
    with Cluster(tmp_path) as cluster:
        def start_m() -> NodeProc:
            m_home = prepare_home(tmp_path / "m")
            assert clone_content(net.p.home, m_home, net.cid) == net.chunks
            return add_node(cluster, "m", home=m_home)

        with ThreadPoolExecutor(2) as pool:
            m_job, c_job = pool.submit(start_m), pool.submit(add_node, cluster, "c")
            m, c = m_job.result(), c_job.result()
        (c.home / "policy.toml").write_text(f"""[policy]
default = "allow"

[[rule]]
type = "deny_peers"
name = "no-m"
peers = ["{m.peer_id}"]

[[rule]]
type = "deny_peers"
name = "skip-h"
actions = ["choose_provider"]
peers = ["{net.h.peer_id}"]
""")
        assert control.call(c.home, {"op": "policy-reload"})["ok"]
        out = tmp_path / "out" / "content.bin"
        out.parent.mkdir()

        # Only a refused provider is known: the fetch fails and says who was refused and by what.
        proc = c.cli("fetch", net.cid, "-o", str(out), "--json", *from_args(m), check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1, (proc.stdout, err)
        assert "refuses every provider" in err and f"{m.peer_id}: outbound_dial denied by rule no-m" in err, err
        assert not out.exists()

        res = fetch(c, net.cid, out, m, net.h, net.p)
        assert list(res["providers"]) == [net.p.peer_id] and res["providers"][net.p.peer_id]["chunks"] == net.chunks
        assert res["refused_by_policy"] == {
            m.peer_id: "outbound_dial denied by rule no-m (peer is on the deny list)",
            net.h.peer_id: "choose_provider denied by rule skip-h (peer is on the deny list)"}, res
        assert_clean_output(out, net.src)
        assert control.call(m.home, {"op": "status"})["connected_peers"] == 0  # never dialled
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("granted", [True, False], ids=["granted", "old-client"])
def test_answer_stream_needs_no_window_updates_and_sends_whole_frames(granted: bool):
    """overlay/net/libp2p_compat/yamux.py (j) on two real hosts in this process (TCP + Noise + Yamux): once
    the client has granted a stream its whole answer, the server writes all 4 MiB of it before
    the client reads a byte, without waiting for the window; the client sends no window update
    while reading; the server's FrameWriter pieces go out whole, one Yamux frame each, of
    exactly 4 Noise messages. A client that grants nothing (an older vouchnet) gets the same
    bytes, paced by its window updates (whole frames while its window has room for them, else
    the library's 64 KiB ones)."""
    import struct

    import trio
    from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH
    from libp2p.stream_muxer.yamux.yamux import HEADER_SIZE as YAMUX_HEADER
    from libp2p.stream_muxer.yamux.yamux import TYPE_DATA, TYPE_WINDOW_UPDATE

    from overlay.wire.framing import FrameReader, FrameWriter, read_frame, write_frame
    from overlay.net.host import parse_peer_multiaddr, running_host
    from overlay.net.libp2p_compat import WRITE_SIZE, whole_frames, window_for_response

    proto = "/vouchnet/test/answer/1.0.0"
    payloads = [os.urandom(CHUNK + 300) for _ in range(16)]
    answer = sum(4 + len(p) for p in payloads)
    written = trio.Event()
    server: dict = {}

    def record_frames(muxed_conn) -> list[tuple[int, int, int, int]]:
        """(type, flags, stream id, length) of every frame ``muxed_conn`` writes from now on."""
        frames: list[tuple[int, int, int, int]] = []
        write = muxed_conn._write_frame

        async def recording(data: bytes) -> None:
            frames.append(struct.unpack(">BBHII", bytes(data[:YAMUX_HEADER]))[1:])
            await write(data)

        muxed_conn._write_frame = recording
        return frames

    async def serve(stream) -> None:
        server["frames"] = record_frames(stream.muxed_stream.conn)
        server["id"] = stream.muxed_stream.stream_id
        await read_frame(stream, 8)
        out = FrameWriter(whole_frames(stream), 2 * CHUNK, WRITE_SIZE)
        for p in payloads:
            await out.write((p,))
        await out.flush()
        server["waits"] = stream.muxed_stream._zero_window_waits
        written.set()
        await stream.close()

    async def main() -> None:
        async with running_host(b"\x61" * 32, [LISTEN]) as s_host, running_host(b"\x62" * 32, [LISTEN]) as c_host:
            s_host.set_stream_handler(proto, serve)
            info = parse_peer_multiaddr(str(s_host.get_addrs()[0]))
            await c_host.connect(info)
            stream = await c_host.new_stream(info.peer_id, [proto])
            sent = record_frames(stream.muxed_stream.conn)
            if granted:
                await window_for_response(stream, answer)
            await write_frame(stream, answer.to_bytes(8, "big"))
            if granted:
                await written.wait()  # all of it sent before we read a byte
            reader = FrameReader(stream, 2 * CHUNK)
            assert [await reader.read() for _ in payloads] == payloads
            assert await reader.read() is None
            await stream.close()
            sid = stream.muxed_stream.stream_id
            updates = [length for typ, flags, i, length in sent if typ == TYPE_WINDOW_UPDATE and i == sid and not flags]
            if granted:
                assert len(updates) == 1 and updates[0] > 0  # the grant; nothing while reading
            else:
                assert len(updates) > 1

    async def bounded() -> None:
        with trio.fail_after(30):
            await main()

    trio.run(bounded)
    data = [length for typ, _, sid, length in server["frames"] if typ == TYPE_DATA and sid == server["id"]]
    assert sum(data) == answer
    if granted:
        assert server["waits"] == 0
        assert all(n == WRITE_SIZE for n in data[:-1]) and 0 < data[-1] <= WRITE_SIZE
        assert (WRITE_SIZE + YAMUX_HEADER) % MAX_PLAINTEXT_LENGTH == 0 and WRITE_SIZE > 64 * 1024


# -- resume ----------------------------------------------------------------------------------

def test_fetch_resumes_after_client_is_killed(net: Net, tmp_path: Path):
    """A provider that serves the first 96 of 161 chunks and then stalls keeps the client's fetch
    in flight at a known point; the client node is SIGKILLed once 64 chunks (one store flush) are
    durable, restarted on the same home, and fetches the rest from the honest publisher."""
    flush = store_module._FLUSH_EVERY  # chunks made durable together (64)
    partial = flush + flush // 2
    src = tmp_path / "large.bin"
    src.write_bytes(os.urandom(LARGE_SIZE))
    info = net.p.cli_json("share", str(src))
    cid, total = info["cid"], info["chunks"]
    assert total >= partial + 16
    with Cluster(tmp_path) as cluster:
        a_home = prepare_home(tmp_path / "a")
        clone_content(net.p.home, a_home, cid)
        a = add_adversary(cluster, a_home, "partial", "--partial", str(partial))
        c = add_node(cluster, "c", *bootstrap_args(a))
        out = tmp_path / "out" / "large.bin"
        out.parent.mkdir()
        cmd = [sys.executable, "-m", "overlay.cli", "--home", str(c.home), "fetch", cid, "-o", str(out),
               "--json", *from_args(a)]
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            deadline = time.monotonic() + 15
            have = 0
            while time.monotonic() < deadline:
                if (c.home / "store" / "store.db").exists():
                    have = stored_chunks(c.home, cid)
                    if have >= flush:
                        break
                assert client.poll() is None, client.communicate()
                time.sleep(0.02)
            assert have >= flush, f"only {have} chunks stored in time"
            c.proc.send_signal(signal.SIGKILL)
            c.proc.wait(5)
            stdout, stderr = client.communicate(timeout=10)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
        assert client.returncode != 0, stdout
        assert not out.exists()
        assert list(out.parent.iterdir()) == []

        c2 = add_node(cluster, "c", *bootstrap_args(net.p), home=c.home)  # same home, new process
        assert c2.peer_id == c.peer_id
        res = fetch(c2, cid, out, net.p)
        assert flush <= res["already_had"] <= partial < total, res
        assert res["providers"][net.p.peer_id]["chunks"] == total - res["already_had"]
        assert_clean_output(out, src)
        verify_ok(c2, cid)
        assert_store_sealed(c2.home)


# -- lifecycle -------------------------------------------------------------------------------

def test_sigterm_stops_quickly_and_restart_keeps_the_store(net: Net, tmp_path: Path):
    src = tmp_path / "small.bin"
    src.write_bytes(os.urandom(700_000))
    with Cluster(tmp_path) as cluster:
        s = add_node(cluster, "s", *bootstrap_args(net.p))
        cid = s.cli_json("share", str(src))["cid"]
        assert s.cli_json("status")["connected_peers"] >= 1
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        rc = s.proc.wait(5)
        elapsed = time.monotonic() - t0
        assert rc == 0, s.log()
        print(f"SIGTERM -> exit in {elapsed:.3f} s")
        assert elapsed < 2.0, f"SIGTERM took {elapsed:.2f} s"
        assert not (s.home / "node.sock").exists()

        s2 = add_node(cluster, "s", *bootstrap_args(net.p), home=s.home)
        assert s2.peer_id == s.peer_id
        st = s2.cli_json("status")
        assert st["complete"] == 1 and st["contents"] == 1
        verify_ok(s2, cid)
        # The restarted node serves what it stored before.
        out = tmp_path / "out" / "small.bin"
        out.parent.mkdir()
        res = fetch(net.h, cid, out, s2)
        assert res["providers"][s2.peer_id]["chunks"] == res["chunks"]
        assert_clean_output(out, src)


# -- discovery -------------------------------------------------------------------------------

def test_dht_discovery_through_a_bootstrap_node(tmp_path: Path):
    """C knows only B, which does not hold the content; P announced it through B."""
    src = tmp_path / "found.bin"
    src.write_bytes(os.urandom(1_300_000))
    with Cluster(tmp_path) as cluster:
        b = add_node(cluster, "b")
        p = add_node(cluster, "p", *bootstrap_args(b))
        wait_connected(p)  # else the announcement reaches nobody but P itself
        cid = p.cli_json("share", str(src))["cid"]
        c = add_node(cluster, "c", *bootstrap_args(b))
        wait_connected(c)
        out = tmp_path / "out" / "found.bin"
        out.parent.mkdir()
        res = c.cli_json("fetch", cid, "-o", str(out), timeout=30)  # no --from
        assert res["providers"].get(p.peer_id, {}).get("chunks") == res["chunks"], res
        assert_clean_output(out, src)
        verify_ok(c, cid)
        assert b.cli_json("status")["contents"] == 0


# -- control socket --------------------------------------------------------------------------

def _raw_control(sock_path: Path, data: bytes, shut: bool = False) -> list[dict]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    try:
        s.connect(str(sock_path))
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            more = s.recv(65536)
            if not more:
                break
            buf += more
    finally:
        s.close()
    return [json.loads(line) for line in buf.splitlines()]


def test_control_socket(net: Net, tmp_path: Path):
    sock = net.p.home / "node.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    for data, shut in [(b"{not json at all\n", False),
                       (b"\xff\xfe\x00garbage\x80\n", False),
                       (b'["op", "status"]\n', False),
                       (b'{"op": 5}\n', False),
                       (b'{"op": "no-such-op"}\n', False),
                       (b'{"op": "fetch", "cid": "not-a-cid"}\n', False),
                       (b'{"op": "status"', True),           # no newline, then EOF
                       (b"x" * (70 * 1024) + b"\n", False)]:  # above the 64 KiB request limit
        lines = _raw_control(sock, data, shut)
        assert len(lines) == 1 and lines[0]["ok"] is False and lines[0]["error"], (data[:40], lines)

    # Nested past the JSON decoder's recursion limit, inside the size limit: a one-line answer,
    # not "internal error" and a traceback in the node's log (issue 10, finding 9).
    (deep,) = _raw_control(sock, b"[" * 60_000 + b"\n")
    assert deep == {"ok": False, "error": "request is nested too deeply"}
    assert "RecursionError" not in net.p.log()

    assert net.p.proc.poll() is None
    st = net.p.cli_json("status")
    assert st["peer_id"] == net.p.peer_id
    assert st["gossip_intake"]["limits"]["strangers_total"] == 10_000  # per-issuer gossip caps (H4)
    assert set(st["gossip_intake"]["dropped"]) == {"subjects", "strangers", "total", "rate", "head_rate", "heads_kept"}

    idle = tmp_path / "idle"
    init_home(idle)
    proc = run_cli("status", "--json", home=idle)
    assert proc.returncode == 1
    assert "node run" in proc.stderr.decode()
