"""Operator features on real node processes: Prometheus metrics on 127.0.0.1, JSON logs, progress."""
import json
import os
import socket
import urllib.request

import pytest

from tests.nodes import Cluster, start_node
from tests.integration.test_integration import add_node, fetch, prepare_home

pytestmark = pytest.mark.network


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"metric {name} not exported")


def test_metrics_endpoint_and_json_logs(tmp_path):
    src = tmp_path / "f.bin"
    src.write_bytes(os.urandom(3 * 256 * 1024))
    with Cluster(tmp_path) as cluster:
        p = add_node(cluster, "P")
        home = prepare_home(tmp_path / "M")
        port = free_port()
        cfg = home / "config.toml"
        cfg.write_text(cfg.read_text().replace("enabled = false", "enabled = true").replace("port = 9464", f"port = {port}"))
        args = ["--home", str(home), "-v", "--log-json", "node", "run", "--listen", "/ip4/127.0.0.1/tcp/0"]
        m = start_node(home, args=args)
        cluster.nodes.append(m)
        cid = p.cli_json("share", str(src))["cid"]
        fetch(m, cid, tmp_path / "out.bin", p)
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()  # nosec B310
        assert metric(body, "vouchnet_bytes_fetched_total") == src.stat().st_size
        assert metric(body, "vouchnet_fetch_seconds_count") == 1
        assert "vouchnet_verification_failures_total" in body and "vouchnet_request_seconds_bucket" in body
        # bound to loopback only: nothing answers on another local address
        with socket.socket() as s:
            s.settimeout(1)
            other = socket.gethostbyname(socket.gethostname())
            if not other.startswith("127."):
                assert s.connect_ex((other, port)) != 0
        m.stop()
        lines = [ln for ln in m.log().splitlines() if ln.startswith("{")]
        assert lines, m.log()[-2000:]
        docs = [json.loads(ln) for ln in lines]
        assert all({"ts", "level", "logger", "msg"} <= d.keys() for d in docs)
        assert any(d["level"] == "info" for d in docs)
        key = (home / "identity.key").read_text()
        seed = json.loads(key)["seed"]
        assert seed not in m.log()  # secrets never reach logs


def multicast_works() -> str | None:
    """None if a multicast datagram sent here comes back to a group member; else why not."""
    import struct

    group, rx, tx = "239.255.77.77", socket.socket(socket.AF_INET, socket.SOCK_DGRAM), None
    try:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        rx.bind(("", 0))
        rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton("0.0.0.0")))
        rx.settimeout(2)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        tx.sendto(b"vouchnet-probe", (group, rx.getsockname()[1]))
        return None if rx.recv(64) == b"vouchnet-probe" else "a foreign datagram came back"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        rx.close()
        if tx is not None:
            tx.close()


def test_mdns_is_opt_in_and_finds_local_peers(tmp_path):
    # mDNS needs multicast; where the machine has none, say so rather than time out or pass.
    if (why := multicast_works()) is not None:
        print(f"multicast probe failed: {why}")
        pytest.skip(f"multicast does not work on this machine ({why}), so mDNS cannot")
    with Cluster(tmp_path) as cluster:
        homes = []
        for name in ("A", "B"):
            home = prepare_home(tmp_path / name)
            cfg = home / "config.toml"
            cfg.write_text(cfg.read_text().replace("mdns = false", "mdns = true"))
            homes.append(home)
        a = add_node(cluster, "A", home=homes[0])
        b = add_node(cluster, "B", home=homes[1])
        from tests.nodes import wait_for
        wait_for(lambda: a.peer_id in {r["peer_id"] for r in b.cli_json("peers") if r["connected"]},
                 "mDNS to bring A and B together", timeout=20)
        # without mdns (the default) a third node sees nobody
        c = add_node(cluster, "C")
        assert c.cli_json("status")["connected_peers"] == 0
