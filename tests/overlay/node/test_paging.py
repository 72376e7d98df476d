"""Paged list answers on the control socket: pages, cursors, per-row bounds, the line limit."""
from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio

from overlay.node import control
from overlay.node.operations import MAX_ADDRS_SHOWN, handlers, trust_page
from overlay.node.paging import DEFAULT_LIMIT, MAX_FIELD_CHARS, MAX_LIMIT, PageRequest, clip, follow, page, page_request
from trust.errors import VouchnetError

KEYS = [f"k{i:03d}" for i in range(10)]


def test_pages_follow_the_cursor_to_the_end():
    first, nxt = page(KEYS, PageRequest(4))
    assert first == KEYS[:4] and nxt == "k003"
    second, nxt = page(KEYS, PageRequest(4, nxt))
    assert second == KEYS[4:8] and nxt == "k007"
    last, nxt = page(KEYS, PageRequest(4, nxt))
    assert last == KEYS[8:] and nxt is None
    assert page(KEYS, PageRequest(5, "k004")) == (KEYS[5:], None)  # exactly the rest: no empty page after
    assert page(KEYS, PageRequest(4, "zzz")) == ([], None)


def test_a_row_removed_between_pages_moves_no_other_row():
    _, nxt = page(KEYS, PageRequest(3))
    fewer = [k for k in KEYS if k != "k001"]
    assert page(fewer, PageRequest(3, nxt))[0] == ["k003", "k004", "k005"]
    assert page(fewer, PageRequest(3, "k0015"))[0] == ["k002", "k003", "k004"]  # a cursor that is no key


@pytest.mark.parametrize("req", [{"limit": 0}, {"limit": MAX_LIMIT + 1}, {"limit": "5"}, {"limit": True},
                                 {"limit": 1.5}, {"after": 5}, {"after": "x" * 5000}])
def test_bad_page_requests_are_refused(req):
    with pytest.raises(VouchnetError):
        page_request(req)


def test_page_request_defaults():
    assert page_request({}) == PageRequest(DEFAULT_LIMIT, None)
    assert page_request({"limit": None, "after": ""}) == PageRequest(DEFAULT_LIMIT, None)


def test_follow_collects_every_page_and_stops_a_cursor_that_does_not_advance():
    def fetch(after):
        rows, nxt = page(KEYS, PageRequest(3, after))
        return {"rows": rows, "next": nxt}

    assert follow(fetch, "rows") == KEYS
    assert follow(fetch, "rows", "k006") == KEYS[7:]
    with pytest.raises(VouchnetError, match="did not advance"):
        follow(lambda after: {"rows": [1], "next": "same"}, "rows", "same")


def test_clip():
    assert clip("short") == "short"
    assert len(clip("x" * 1000)) == MAX_FIELD_CHARS and clip("x" * 1000).endswith("…")


# -- the peers op, sans-IO: a node whose peers announced the worst they could -----------------

def _peer_ids(n: int) -> list[str]:
    from libp2p.crypto.ed25519 import create_new_key_pair
    from libp2p.peer.id import ID

    return sorted(str(ID.from_pubkey(create_new_key_pair(os.urandom(32)).public_key)) for _ in range(n))


def _fake_node(peers: list[str], addrs_per_peer: int = 1000):
    worst = "\x01" * 2000  # each character is 6 bytes in JSON (\u0001)
    store = SimpleNamespace(addrs=lambda pid: [f"/unix/{worst}{i}" for i in range(addrs_per_peer)])
    summaries = [SimpleNamespace(peer=p, counts={f"kind{k}": k for k in range(100)}, misbehaved=False)
                 for p in peers]
    rep = SimpleNamespace(summary=lambda: summaries, trust_of=lambda p: (0.5, 0.25))
    reputation = SimpleNamespace(rep=rep, distrusted=lambda p: False)
    policy = SimpleNamespace(control_handlers=lambda: {})
    return SimpleNamespace(connected_peers=lambda: peers[: len(peers) // 2], reputation=reputation, policy=policy,
                           host=SimpleNamespace(get_peerstore=lambda: store))


def _ask(handler, req):
    async def send(ev):
        raise AssertionError("no events expected")

    return trio.run(handler, req, send)


def test_peers_answer_is_paged_and_bounded_whatever_peers_announced():
    peers = _peer_ids(MAX_LIMIT + 20)
    peers_op = handlers(_fake_node(peers))["peers"]
    full = _ask(peers_op, {"limit": MAX_LIMIT})
    assert [r["peer_id"] for r in full["peers"]] == peers[:MAX_LIMIT] and full["next"] == peers[MAX_LIMIT - 1]
    line = json.dumps({"ok": True, "result": full})
    assert len(line) + 1 < control.MAX_RESPONSE_LINE  # the largest page of the largest rows fits
    row = full["peers"][0]
    assert row["addrs_total"] == 1000 and len(row["addrs"]) == MAX_ADDRS_SHOWN
    assert all(len(a) <= MAX_FIELD_CHARS for a in row["addrs"])
    rest = _ask(peers_op, {"limit": MAX_LIMIT, "after": full["next"]})
    assert [r["peer_id"] for r in rest["peers"]] == peers[MAX_LIMIT:] and rest["next"] is None
    assert len(_ask(peers_op, {})["peers"]) == DEFAULT_LIMIT


def _trust_service(n: int):
    rows = [{"peer_id": f"p{i:04d}", "local": 0.0, "global": 0.0, "rank": (i + 1 if i % 3 else None),
             "attestations": 0, "equivocated": False, "evidence": {}} for i in range(n)]
    rep = SimpleNamespace(table=lambda: [dict(r) for r in rows])
    return SimpleNamespace(rep=rep, distrusted=lambda p: False, risk=lambda p: 0.0)


def test_trust_pages_keep_the_rank_order():
    service = _trust_service(25)
    expected = [r["peer_id"] for r in sorted(service.rep.table(), key=lambda r: (r["rank"] or 10**9, r["peer_id"]))]
    got = follow(lambda after: trust_page(service, {"limit": 7, "after": after}), "rows")
    assert [r["peer_id"] for r in got] == expected  # ranked first, by rank; unranked last
    one = trust_page(service, {"peer": "p0004"})
    assert [r["peer_id"] for r in one["rows"]] == ["p0004"] and one["next"] is None


# -- the control socket: no line past the limit, and the client says why -------------------

def _serve_and_call(tmp_path: Path, result, req: dict):
    sock = tmp_path / "c.sock"
    out: dict = {}

    async def main() -> None:
        async def handler(r, send):
            return result(r) if callable(result) else result

        async with trio.open_nursery() as nursery:
            await nursery.start(control.serve_control, sock, {"list": handler})
            try:
                out["value"] = await trio.to_thread.run_sync(lambda: control.call(tmp_path, {"op": "list", **req}))
            except Exception as exc:  # noqa: BLE001 - handed to the test
                out["error"] = exc
            nursery.cancel_scope.cancel()

    control.SOCKET_NAME, saved = "c.sock", control.SOCKET_NAME
    try:
        trio.run(main)
    finally:
        control.SOCKET_NAME = saved
    return out


def test_an_answer_past_the_line_limit_becomes_a_one_line_error(tmp_path):
    out = _serve_and_call(tmp_path, {"rows": ["x" * 1024] * 5000}, {})
    assert isinstance(out.get("error"), control.ControlError) and "larger than" in str(out["error"])


def test_call_pages_follows_next(tmp_path):
    def answer(req):
        rows, nxt = page(KEYS, page_request({"limit": 3, "after": req.get("after")}))
        return {"rows": rows, "next": nxt}

    sock = tmp_path / "c.sock"

    async def main() -> list:
        async with trio.open_nursery() as nursery:
            async def handler(r, send):
                return answer(r)

            await nursery.start(control.serve_control, sock, {"list": handler})
            rows = await trio.to_thread.run_sync(lambda: control.call_pages(tmp_path, {"op": "list"}, "rows"))
            nursery.cancel_scope.cancel()
            return rows

    control.SOCKET_NAME, saved = "c.sock", control.SOCKET_NAME
    try:
        assert trio.run(main) == KEYS
    finally:
        control.SOCKET_NAME = saved
