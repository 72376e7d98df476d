"""What the running node answers on its control socket (see overlay/node/control.py, docs/control.md)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import trio

from overlay.node.fetch import Fetch, dial_named, order_providers, refusal
from overlay.node.paging import clip, page, page_request
from overlay.services.policy import PolicyDenied
from policy import Action
from trust.errors import VouchnetError
from trust.manifest import parse_cid

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Per-row bounds of list answers (with overlay/node/paging.py's MAX_LIMIT rows they fit one line).
MAX_ADDRS_SHOWN = 8  # addresses shown per peer; `addrs_total` says how many the node has
MAX_KINDS = 32
MAX_LIST_ROWS = 500  # `explain`: attestations about the peer, and evidence entries
UNRANKED = 10**9


def handlers(node: Any) -> dict[str, Callable[[dict[str, Any], Send], Awaitable[Any]]]:
    async def status(req: dict[str, Any], send: Send) -> Any:
        items = node.store.list()
        return {"peer_id": node.peer_id, "addrs": node.addrs(), "uptime_s": round(time.time() - node.started, 1),
                "connected_peers": len(node.connected_peers()), "contents": len(items),
                "complete": sum(1 for i in items if i.complete),
                "dht_routing_table": node.dht.get_routing_table_size() if node.dht else 0,
                "trust_snapshot_age_s": None if (age := node.reputation.snapshot_age()) is None else round(age, 2),
                "connections": node.connection_gate.snapshot(),  # [limits]: limits, use, refusals
                "streams": node.stream_gate.snapshot(),
                "gossip_intake": node.reputation.intake.snapshot()}  # per-issuer caps: use, limits, drops

    async def peers(req: dict[str, Any], send: Send) -> Any:
        pr = page_request(req)  # paged: whatever peers send, the answer fits one control line
        connected = set(node.connected_peers())
        rep = node.reputation
        summaries = {s.peer: s for s in rep.rep.summary()}
        chosen, nxt = page(sorted(connected | set(summaries)), pr)
        out = []
        for peer in chosen:
            s = summaries.get(peer)
            local, glob = rep.rep.trust_of(peer)
            out.append({**peer_addrs(node.host, peer), "peer_id": clip(peer), "connected": peer in connected,
                        "observations": bounded_counts(s.counts) if s else {},
                        "misbehaved": bool(s and s.misbehaved),
                        "local_trust": local, "global_trust": glob, "distrusted": rep.distrusted(peer)})
        return {"peers": out, "next": nxt}

    async def connect(req: dict[str, Any], send: Send) -> Any:
        return {"peer_id": await node.connect(str(req["addr"]))}

    async def fetch(req: dict[str, Any], send: Send) -> Any:
        cid = str(req["cid"])
        parse_cid(cid)
        output = req.get("output")
        explicit = [str(a) for a in req.get("providers", [])][:32]
        phases: dict[str, float] = {}  # seconds per step, in the result: where a slow fetch spent its time
        t = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal t
            now = time.perf_counter()
            phases[name] = round(now - t, 3)
            t = now

        named, refused = await dial_named(node, explicit)  # refused by the local policy: skipped, not fatal
        lap("dial_named")
        found = await node.find_providers(cid)
        lap("dht_lookup")
        reachable: set[str] = set()

        async def dial(info: Any) -> None:
            pid = str(info.peer_id)
            if pid not in node.connected_peers():
                try:
                    from overlay.net.libp2p_compat import connect_fresh
                    node.policy.check_dial(pid, info)  # outbound_dial applies to DHT-found providers too
                    with trio.fail_after(5):
                        await connect_fresh(node.host, info)
                except PolicyDenied as exc:
                    refused.setdefault(pid, refusal(Action.OUTBOUND_DIAL, exc.decision))
                    return
                except Exception:  # nosec B110 - an unreachable provider is simply skipped
                    return
            reachable.add(pid)

        # In parallel: stale provider records (peers that left) are normal, and each dead
        # address costs ~0.7 s of libp2p dial retries; one after the other they added up.
        async with trio.open_nursery() as nursery:
            for info in found:
                nursery.start_soon(dial, info)
        lap("dial_found")
        # A peer the policy refused to dial is not used over a connection it opened either.
        announced = [p for p in (str(info.peer_id) for info in found) if p in reachable and p not in refused]
        connected = [p for p in node.connected_peers() if p not in refused]
        ordered, skipped = order_providers(named, announced, connected, node.peer_id, node.reputation.rank)

        async def progress(done: int, total: int) -> None:
            await send({"event": "progress", "done": done, "total": total})

        result = await Fetch(node, cid, ordered, progress, refused=refused, holders={*named, *announced}).run()
        lap("transfer")
        if output:
            out = Path(output)
            if not out.is_absolute():
                raise VouchnetError("output path must be absolute when sent to the node")
            node.store.export(cid, out, overwrite=bool(req.get("force")))
        lap("export")
        node.provide_soon(cid)  # now a provider too; the answer does not wait for the DHT
        return {**result.to_json(), "output": output, "skipped_distrusted": skipped, "phases": phases}

    async def share(req: dict[str, Any], send: Send) -> Any:
        path = Path(str(req["path"]))
        if not path.is_absolute():
            raise VouchnetError("path must be absolute when sent to the node")

        def work() -> Any:
            from overlay.store import ContentStore
            store = ContentStore(node.home.store_dir)
            try:
                return store.add_file(path, node.identity, name=req.get("name"),
                                      media_type=req.get("media_type") or "application/octet-stream",
                                      chunk_size=node.config.chunk_size)
            finally:
                store.close()

        item = await trio.to_thread.run_sync(work)
        await node.provide(item.cid)
        m = item.manifest
        return {"cid": item.cid, "name": m.name, "size": m.size, "chunks": m.chunk_count, "chunk_size": m.chunk_size,
                "root": m.root.hex(), "media_type": m.media_type, "publisher": m.publisher}

    async def trust(req: dict[str, Any], send: Send) -> Any:
        return trust_page(node.reputation, req)

    async def explain(req: dict[str, Any], send: Send) -> Any:
        return explain_bounded(node.reputation, str(req["peer"]))

    async def rate(req: dict[str, Any], send: Send) -> Any:
        return rate_content(node.store, node.reputation, str(req["cid"]), str(req["verdict"]),
                            str(req.get("reason") or ""))

    async def stop(req: dict[str, Any], send: Send) -> Any:
        node.stop()
        return {"stopping": True}

    return {"status": status, "peers": peers, "connect": connect, "fetch": fetch, "share": share, "stop": stop,
            "trust": trust, "explain": explain, "rate": rate,
            **node.policy.control_handlers()}  # policy-show, policy-explain, policy-reload, policy-stats


def rate_content(store: Any, reputation: Any, cid: str, verdict: str, reason: str) -> dict[str, Any]:
    """Record the user's verdict on fetched content against its publisher and its providers."""
    parse_cid(cid)
    item = store.get(cid)
    if item is None:
        raise VouchnetError(f"content {cid} is not in this store; only content you fetched can be rated")
    rep = reputation.rep if hasattr(reputation, "rep") else reputation
    providers = sorted({e.body["peer"] for e in rep.ledger.entries()
                        if e.kind == "observation" and e.body["cid"] == cid and e.body["kind"] == "chunk_verified"})
    publisher = item.manifest.publisher
    if publisher == rep.peer_id and not providers:
        raise VouchnetError("this is your own content: there is nobody to rate")
    idx = reputation.rate(cid, verdict, publisher, providers, reason)
    return {"cid": cid, "verdict": verdict, "publisher": publisher, "providers": providers, "ledger_index": idx}


def trust_page(service: Any, req: dict[str, Any]) -> dict[str, Any]:
    """One page of :func:`trust_table` in its order (rank, then peer ID); the cursor is the row's key."""
    pr = page_request(req)
    peer = req.get("peer")
    rows = {trust_key(r): r for r in trust_table(service, str(peer) if peer else None)}
    chosen, nxt = page(sorted(rows), pr)
    return {"rows": [{**rows[k], "peer_id": clip(rows[k]["peer_id"]), "evidence": bounded_counts(rows[k]["evidence"])}
                     for k in chosen], "next": nxt}


def trust_key(row: dict[str, Any]) -> str:
    # Fixed width, so string order is the table's order; unranked peers last, as in the table.
    return f"{row['rank'] or UNRANKED:010d}:{row['peer_id']}"


def explain_bounded(service: Any, peer: str) -> dict[str, Any]:
    """`explain`, with the attestations about the peer (one per issuer: sybils add rows) capped."""
    out = service.rep.explain(peer)
    atts = out["attestations_about"]
    out["attestations_about_total"] = len(atts)
    out["attestations_about"] = atts[:MAX_LIST_ROWS]
    out["evidence"] = out["evidence"][-MAX_LIST_ROWS:]
    return out


def peer_addrs(host: Any, peer: str) -> dict[str, Any]:
    """At most MAX_ADDRS_SHOWN of the peer's addresses, each clipped, and how many there are."""
    try:
        from libp2p.peer.id import ID
        addrs = list(host.get_peerstore().addrs(ID.from_base58(peer)))
    except Exception:  # nosec B110 - a peer known only from observations has no addresses
        addrs = []
    return {"addrs": [clip(a) for a in addrs[:MAX_ADDRS_SHOWN]], "addrs_total": len(addrs)}


def bounded_counts(counts: dict[str, Any]) -> dict[str, Any]:
    """A counts-by-kind dict with at most MAX_KINDS kinds, names clipped (kinds are ours; belt and braces)."""
    return {clip(k, 64): v for k, v in list(sorted(counts.items()))[:MAX_KINDS]}


def trust_table(service: Any, peer: str | None = None) -> list[dict[str, Any]]:
    rows = service.rep.table()
    for r in rows:
        r["distrusted"] = service.distrusted(r["peer_id"])
        r["fault_reports"] = round(service.risk(r["peer_id"]), 6)
    return [r for r in rows if r["peer_id"] == peer] if peer else rows
