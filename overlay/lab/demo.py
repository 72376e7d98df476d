"""`make demo`: a small local network on the embedded default, narrated step by step.

Four real node processes on 127.0.0.1 (TCP + Noise + Yamux, Kademlia, GossipSub, SQLite):
alice publishes, bob mirrors, mallory serves corrupted chunks (the test-only adversary from
tests/adversary.py: no `vouchnet` flag or config can make a node lie), and carol fetches from
all three. Carol catches mallory chunk by chunk, the evidence travels as signed attestations,
and every honest node distrusts mallory. It ends with the trust table, a passing ledger audit,
and an audit that catches a tampered copy of a ledger. Everything lives in ./demo-out.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

console = Console(width=110)
OUT = Path("demo-out").resolve()
REPO = Path(__file__).resolve().parents[2]  # the checkout: overlay/lab/ is two below it
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "110"}


def step(title: str) -> None:
    console.rule(f"[bold]{title}")


def vouchnet(home: Path, *args: str, check: bool = True, show: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "overlay.cli", "--home", str(home), *args]
    if show:
        console.print(f"[bold cyan]$ vouchnet --home {home.name} {' '.join(args)}[/]")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=120)
    if show and proc.stdout.strip():
        console.print(proc.stdout.rstrip(), highlight=False, markup=False)
    if show and proc.stderr.strip():
        console.print(proc.stderr.rstrip(), style="dim", highlight=False, markup=False)
    if check and proc.returncode != 0:
        console.print(f"[red]command failed with exit status {proc.returncode}[/]")
        raise SystemExit(1)
    return proc


class Node:
    def __init__(self, name: str, module: str = "overlay.cli", extra: list[str] | None = None):
        self.name, self.home = name, OUT / name
        self.module, self.extra = module, extra or []
        self.proc: subprocess.Popen | None = None
        self.addr = self.peer_id = ""

    def init(self) -> None:
        vouchnet(self.home, "init", show=False)
        cfg = self.home / "config.toml"
        cfg.write_text(cfg.read_text().replace("request_timeout = 10.0", "request_timeout = 3.0")
                       .replace("interval = 2.0", "interval = 0.5"))

    def start(self, *bootstrap: "Node") -> None:
        boot = [x for b in bootstrap for x in ("--bootstrap", b.addr)]
        if self.module == "overlay.cli":
            args = ["--home", str(self.home), "node", "run", "--listen", "/ip4/127.0.0.1/tcp/0", *boot]
        else:
            args = ["--home", str(self.home), *self.extra, "--listen", "/ip4/127.0.0.1/tcp/0", *boot]
        log = open(self.home / "node.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", self.module, *args], stdout=subprocess.PIPE,
                                     stderr=log, env=ENV, text=True)
        deadline = time.monotonic() + 30
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("vouchnet node "):
                self.peer_id = line.split()[2]
            elif line.startswith("listening on ") and not self.addr:
                self.addr = line.split()[2]
            elif line.startswith("control socket"):
                console.print(f"  {self.name:8} {self.peer_id}  {self.addr.split('/p2p/')[0]}")
                return
        raise SystemExit(f"{self.name} did not start; see {self.home / 'node.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    alice, bob, carol = Node("alice"), Node("bob"), Node("carol")
    mallory = Node("mallory", module="tests.adversary", extra=["--mode", "corrupt"])
    nodes = [alice, bob, mallory, carol]
    try:
        step("1. Identities: Ed25519 keys, mode 0600; the peer ID is the libp2p peer ID")
        for n in nodes:
            n.init()
        vouchnet(alice.home, "id")

        step("2. Start alice and bob (Noise-only libp2p hosts on 127.0.0.1)")
        alice.start()
        bob.start(alice)

        step("3. Alice shares a 6 MiB file: chunked, Merkle-hashed, manifest signed, announced on the DHT")
        data = OUT / "dataset.bin"
        data.write_bytes(os.urandom(6 * 1024 * 1024 + 4321))
        cid = json.loads(vouchnet(alice.home, "share", str(data), "--json").stdout)["cid"]
        vouchnet(bob.home, "fetch", cid, "-o", str(OUT / "bob.bin"), "--from", alice.addr)

        step("4. Mallory holds the same content but serves corrupted chunks; carol joins")
        from overlay.lab.localnet import clone_content
        clone_content(alice.home, mallory.home, cid)
        mallory.start(alice, bob)
        carol.start(alice, bob, mallory)

        step("5. Carol fetches from all three, mallory first: every chunk is proven before it is written")
        out = OUT / "carol.bin"
        res = json.loads(vouchnet(carol.home, "fetch", cid, "-o", str(out), "--from", mallory.addr,
                                  "--from", alice.addr, "--from", bob.addr, "--json", show=False).stdout)
        console.print(f"[bold cyan]$ vouchnet --home carol fetch {cid[:16]}… -o carol.bin --from mallory "
                      f"--from alice --from bob[/]")
        names = {n.peer_id: n.name for n in nodes}
        for peer, st in res["providers"].items():
            tag = f"[red]DROPPED: {st['dropped'][:90]}[/]" if st["dropped"] else "[green]ok[/]"
            console.print(f"  {names.get(peer, peer):8} {st['chunks']:3} chunks  {tag}")
        same = out.read_bytes() == data.read_bytes()
        console.print(f"  output identical to alice's file: {'[green]yes[/]' if same else '[red]NO[/]'}")
        if not same:
            raise SystemExit(1)
        vouchnet(carol.home, "verify", str(out))

        step("6. Carol's signed attestation spreads over gossip: bob and alice distrust mallory too")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            caught = [n for n in (alice, bob, carol)
                      if any(r["peer_id"] == mallory.peer_id and r["distrusted"]
                             for r in json.loads(vouchnet(n.home, "peers", "--json", show=False).stdout))]
            if len(caught) == 3:
                break
            time.sleep(0.5)
        console.print(f"  mallory distrusted by: {', '.join(n.name for n in caught)}")
        vouchnet(bob.home, "trust", "show")
        vouchnet(bob.home, "trust", "explain", mallory.peer_id)

        step("7. A later fetch never asks mallory, though it is offered first")
        r2 = json.loads(vouchnet(carol.home, "fetch", cid, "-o", str(OUT / "carol2.bin"), "--from", mallory.addr,
                                 "--from", alice.addr, "--json", show=False).stdout)
        console.print(f"  skipped as distrusted: {[names.get(p, p) for p in r2['skipped_distrusted']]}")

        step("8. Audit the reputation ledger")
        for n in (alice, bob, carol):
            n.stop()
        mallory.stop()
        vouchnet(carol.home, "ledger", "tail", "-n", "8")
        vouchnet(carol.home, "ledger", "audit")

        step("9. Tamper with a copy of carol's ledger: the audit names the entry")
        copy = OUT / "tampered"
        copy.mkdir()
        shutil.copy(carol.home / "identity.key", copy / "identity.key")
        os.chmod(copy / "identity.key", 0o600)
        db = sqlite3.connect(carol.home / "ledger.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        shutil.copy(carol.home / "ledger.db", copy / "ledger.db")
        db = sqlite3.connect(copy / "ledger.db")
        idx, body = db.execute("SELECT idx, body FROM entries WHERE kind = 'observation' ORDER BY idx LIMIT 1").fetchone()
        db.execute("UPDATE entries SET body = ? WHERE idx = ?", (body.replace(b"chunk_invalid", b"chunk_verified")
                                                                    if b"chunk_invalid" in body else body[:-1] + bytes([body[-1] ^ 1]), idx))
        db.commit()
        db.close()
        console.print(f"  rewrote entry {idx} of the copy with sqlite3")
        proc = vouchnet(copy, "ledger", "audit", check=False)
        if proc.returncode != 1:
            console.print("[red]the audit did not catch the tampering[/]")
            raise SystemExit(1)
        console.print("[green]audit exit status 1: tampering caught[/]")
        console.rule("[bold green]demo complete")
    finally:
        for n in nodes:
            n.stop()


if __name__ == "__main__":
    main()
