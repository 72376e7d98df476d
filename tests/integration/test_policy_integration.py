"""Local policies on a real loopback network: changing a node's policy at run time changes whom
it serves, whom it fetches from, whose gossip it accepts and whom it lets connect.

Real node processes on 127.0.0.1: S (whose policy the test changes), C1, C2, and later D. The
test rewrites S's policy.toml and reloads it (`vouchnet policy reload`, or SIGHUP), and checks
each change over the network, the policy-decision entries naming the rules in S's ledger, a
clean `vouchnet ledger audit`, and that an invalid policy is rejected while the old one stays.
Bounded: the whole test must finish within BUDGET seconds (about 12 s here).
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.nodes import Cluster, NodeProc, wait_for
from tests.integration.test_integration import add_node, fetch, prepare_home
from trust.ledger import Ledger

pytestmark = pytest.mark.network

BUDGET = 40.0
SIZE = 3 * 256 * 1024 + 123  # 4 chunks


def home_for(root: Path, name: str) -> Path:
    home = prepare_home(root / name)
    cfg = home / "config.toml"
    cfg.write_text(cfg.read_text().replace("interval = 2.0", "interval = 0.5"))  # gossip every 0.5 s
    return home


def write_policy(node: NodeProc, text: str) -> str:
    (node.home / "policy.toml").write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def cluster_cli(home: Path, *args: str) -> str:
    return run_cli(*args, home=home, check=True).stdout.decode()


def ledger_bodies(node: NodeProc, kind: str) -> list[dict]:
    led = Ledger(node.home / "ledger.db", readonly=True)
    try:
        return [e.body for e in led.entries() if e.kind == kind]
    finally:
        led.close()


def gossip_from(node: NodeProc, issuer: str) -> int:
    """Attestations and tree heads by `issuer` that `node` took in."""
    led = Ledger(node.home / "ledger.db", readonly=True)
    try:
        atts = sum(1 for e in led.entries() if e.kind == "attestation-received" and e.body["att"]["iss"] == issuer)
        return atts + len(led.peer_heads(issuer))
    finally:
        led.close()


def decisions(node: NodeProc, rule: str, action: str) -> list[dict]:
    return [b for b in ledger_bodies(node, "policy-decision") if b["rule"] == rule and b["action"] == action]


def test_policy_changes_at_run_time(tmp_path: Path):
    t0 = time.monotonic()
    x_src, y_src, z_src = (tmp_path / n for n in ("x.bin", "y.bin", "z.bin"))
    for f in (x_src, y_src, z_src):
        f.write_bytes(os.urandom(SIZE))
    (tmp_path / "out").mkdir()
    with Cluster(tmp_path) as cluster:
        s = add_node(cluster, "S", home=home_for(tmp_path, "S"))
        with ThreadPoolExecutor(2) as pool:
            jobs = [pool.submit(add_node, cluster, n, "--bootstrap", s.addr, home=home_for(tmp_path, n))
                    for n in ("C1", "C2")]
            c1, c2 = (j.result() for j in jobs)
        x = s.cli_json("share", str(x_src))["cid"]
        y = c2.cli_json("share", str(y_src))["cid"]

        # 1. Whom S serves: C1 is denied at run time, C2 is still served.
        base = f"""
[policy]
default = "allow"

[[rule]]
type = "deny_peers"
name = "no-c1"
actions = ["serve_request"]
peers = ["{c1.peer_id}"]
"""
        digest1 = write_policy(s, base)
        res = json.loads(s.cli("policy", "reload", "--json").stdout)
        assert res["ok"] and res["active"]["digest"] == digest1, res
        proc = c1.cli("fetch", x, "-o", str(tmp_path / "out" / "c1-x.bin"), "--from", s.addr, "--json", check=False)
        err = proc.stderr.decode()
        assert proc.returncode == 1 and "denied" in err and "no-c1" in err, err
        assert not (tmp_path / "out" / "c1-x.bin").exists()
        got = fetch(c2, x, tmp_path / "out" / "c2-x.bin", s)
        assert got["providers"][s.peer_id]["chunks"] == got["chunks"]
        assert (tmp_path / "out" / "c2-x.bin").read_bytes() == x_src.read_bytes()

        # Meanwhile S takes in C2's gossip (C2 attests to S after that fetch).
        wait_for(lambda: gossip_from(s, c2.peer_id), "S to take in gossip from C2")

        # 2. Whom S fetches from and whose gossip it accepts: C2 is skipped as a provider and muted.
        fetch(c1, y, tmp_path / "out" / "c1-y.bin", c2)  # now C1 and C2 both provide Y
        digest2 = write_policy(s, base + f"""
[[rule]]
type = "deny_peers"
name = "skip-c2"
actions = ["choose_provider"]
peers = ["{c2.peer_id}"]

[[rule]]
type = "deny_peers"
name = "mute-c2"
actions = ["accept_attestation", "accept_head", "relay_gossip"]
peers = ["{c2.peer_id}"]
""")
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: s.cli_json("policy", "show")["digest"] == digest2, "SIGHUP to reload S's policy")
        taken = gossip_from(s, c2.peer_id)

        got = fetch(s, y, tmp_path / "out" / "s-y.bin", c2, c1)  # C2 offered first
        assert got["providers"][c1.peer_id]["chunks"] == got["chunks"], got
        assert c2.peer_id not in got["providers"], got
        assert (tmp_path / "out" / "s-y.bin").read_bytes() == y_src.read_bytes()

        # C2 fetches new content (its ledger and trust change, so it gossips a head and attestations).
        z = c1.cli_json("share", str(z_src))["cid"]
        fetch(c2, z, tmp_path / "out" / "c2-z.bin", c1)
        muted = wait_for(lambda: decisions(s, "mute-c2", "relay_gossip"), "S to refuse C2's gossip")
        assert all(b["peer"] == c2.peer_id and b["verdict"] == "deny" and b["policy"] == digest2 for b in muted)
        assert gossip_from(s, c2.peer_id) == taken  # nothing from C2 was taken in since the reload

        # 3. An invalid policy is rejected and the old one stays in force.
        write_policy(s, base + '\n[[rule]]\ntype = "rate_limit"\nrate = "fast"\n')
        proc = s.cli("policy", "reload", check=False)
        assert proc.returncode == 1, proc.stdout
        assert "policy.toml:13: error: rule[1].rate" in proc.stderr.decode() and "stays" in proc.stderr.decode()
        assert s.cli_json("policy", "show")["digest"] == digest2
        why = s.cli_json("policy", "explain", "--peer", c1.peer_id, "--action", "serve_request")
        assert why["outcome"]["verdict"] == "deny" and why["outcome"]["rule"] == "no-c1"
        stats = s.cli_json("policy", "stats")
        assert stats["by_rule"]["no-c1"]["deny"] >= 1 and stats["by_rule"]["skip-c2"]["deny"] >= 1
        assert stats["rejected_reloads"] == 1 and stats["reloads"] == 2

        # 4. Whom S lets in: a connection from a denied peer is closed as soon as it is set up.
        d_home = home_for(tmp_path, "D")
        d_id = json.loads(cluster_cli(d_home, "id", "--json"))["peer_id"]
        write_policy(s, base + f"""
[[rule]]
type = "deny_peers"
name = "keep-out"
actions = ["inbound_connection"]
peers = ["{d_id}"]
""")
        assert json.loads(s.cli("policy", "reload", "--json").stdout)["ok"]
        d = add_node(cluster, "D", "--bootstrap", s.addr, home=d_home)
        wait_for(lambda: decisions(s, "keep-out", "inbound_connection"), "S to refuse D's connection")
        wait_for(lambda: d.cli_json("status")["connected_peers"] == 0, "D's connection to S to be closed")
        assert d.peer_id not in {p["peer_id"] for p in s.cli_json("peers") if p["connected"]}

        # 5. The decisions are in S's ledger, named by rule, and the ledger audits clean.
        time.sleep(1.2)  # one flush interval
        shown = s.cli_json("ledger", "show", "-n", "100000")
        logged = {(e["body"]["rule"], e["body"]["action"]) for e in shown if e["kind"] == "policy-decision"}
        assert {("no-c1", "serve_request"), ("skip-c2", "choose_provider"), ("mute-c2", "relay_gossip"),
                ("keep-out", "inbound_connection")} <= logged
        audit = s.cli("ledger", "audit", "--json", check=False)
        assert audit.returncode == 0, audit.stdout.decode()[-2000:]
    elapsed = time.monotonic() - t0
    print(f"policy integration test: {elapsed:.1f} s")
    assert elapsed < BUDGET
