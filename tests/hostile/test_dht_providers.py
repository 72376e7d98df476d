"""Finding 5: sybils crowding a CID's DHT provider slots must not hide an honest mirror.

On main before libp2p_compat (s), py-libp2p kept the first 20 providers of a key and ignored
every later one: 40 sybils announcing a CID first meant the mirror that really holds it was
listed to no one, and a fetch that found providers through the DHT failed."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from overlay.lab.localnet import LocalnetError, run_cli, start_node
from tests.hostile.attacker import AttackContext, start_attacker
from tests.nodes import Cluster, NodeProc, wait_for

pytestmark = pytest.mark.network

SYBILS = 40


async def announce_as_provider(ctx: AttackContext) -> None:
    """Every sybil sends ADD_PROVIDER for the key, as py-libp2p's own provide() would."""
    import trio
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT

    key = bytes.fromhex(ctx.options["key"])
    sent = 0
    for host in ctx.hosts:
        dht = KadDHT(host, DHTMode.CLIENT)
        sent += bool(await dht.provider_store._send_add_provider(ctx.target_id, key))
    ctx.report("announced", sent)
    await trio.sleep_forever()  # the sybils stay up (and keep refusing content)


def test_sybils_cannot_crowd_a_trusted_mirror_out_of_the_dht(cluster: Cluster, loopback_victim: NodeProc, tmp_path: Path):
    victim = loopback_victim
    from overlay.node.daemon import dht_key
    from trust.manifest import parse_cid

    mirror = cluster.add("mirror", "--bootstrap", victim.addr)
    # The victim (the DHT server) gets first-hand evidence that the mirror serves good content.
    warm = tmp_path / "warm.bin"
    warm.write_bytes(os.urandom(300_000))
    warm_cid = mirror.cli_json("share", str(warm))["cid"]
    victim.cli_json("fetch", warm_cid, "-o", str(tmp_path / "warm.out"), "--from", mirror.addr, timeout=60)
    wait_for(lambda: (rows := victim.cli_json("trust", "show", mirror.peer_id)) and rows[0]["global"] > 0,
             "the victim to trust the mirror", timeout=60)

    # The content to find: shared while the mirror is down, so the sybils can announce it first.
    mirror.stop()
    target = tmp_path / "target.bin"
    target.write_bytes(os.urandom(400_000))
    cid = json.loads(run_cli("share", str(target), "--json", home=mirror.home, check=True).stdout)["cid"]
    key = dht_key(parse_cid(cid))

    with start_attacker(victim.addr, "tests.hostile.test_dht_providers:announce_as_provider", identities=SYBILS,
                        options={"key": key}, log_dir=tmp_path) as atk:
        assert wait_for(lambda: atk.stats().get("announced") or atk.done(), "sybil announcements",
                        timeout=120) == SYBILS, atk.log()
        back = start_node(mirror.home, "--bootstrap", victim.addr)
        cluster.nodes.append(back)
        # The mirror announces what it holds once its bootstrap dial to the victim is done.
        # A newcomer that knows only the victim finds the mirror through the DHT, not 20 sybils.
        fetcher = cluster.add("fetcher", "--bootstrap", victim.addr)
        out = tmp_path / "out.bin"

        tries: list[str] = []

        def fetched() -> dict | None:
            t0 = time.monotonic()
            proc = fetcher.cli("fetch", cid, "-o", str(out), "--json", check=False, timeout=120)
            tries.append(f"{time.monotonic() - t0:.1f} s: {proc.stderr.decode(errors='replace')[-300:]}")
            return json.loads(proc.stdout) if proc.returncode == 0 else None

        # Retried only until the mirror's announcement has landed (it is sent in the background).
        try:
            res = wait_for(fetched, "a fetch found through the DHT", timeout=120, poll=1.0)
        except LocalnetError as exc:
            seen = {p["peer_id"]: p for p in victim.cli_json("peers")}.get(back.peer_id)
            raise AssertionError(f"{exc}; tries: {tries[-2:]}; the victim's view of the mirror: {seen}; "
                                 f"trust: {victim.cli_json('trust', 'show', back.peer_id)}") from None
        assert res["cid"] == cid and out.read_bytes() == target.read_bytes()
        assert res["providers"][back.peer_id]["chunks"] > 0, res["providers"]
        assert victim.proc.poll() is None
