"""The node side of local policies, without a network: PolicyService with a real (temporary)
ledger and a fake reputation. Decisions and their contexts, enforcement helpers, the decision
log in the ledger (aggregated, bounded under a flood, audit-clean), reload semantics, anchors,
the control ops, the gossip gates of ReputationService, the config key and the policy CLI."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
import trio.testing

from overlay.wire import protocol
from overlay.config import parse_config
from overlay.services.policy import (DECISION_KIND, ENV_VAR, LOADED_KIND, MAX_ENTRIES_PER_FLUSH, MAX_THROTTLE,
                                    PolicyDenied, PolicyService, resolve_policy_path)
from policy import Action, Verdict, default_policy
from tests.conftest import run_cli
from trust.errors import ConfigError, VouchnetError
from trust.identity import Identity
from trust.ledger import Ledger

PEERS = [Identity.from_seed(bytes([i]) * 32).peer_id for i in range(1, 9)]
ME, A, B, C, D, E, F, G = PEERS
NOW = 1_800_000_000.0


@dataclass
class FakeState:
    counts: dict = field(default_factory=dict)
    evidence: list = field(default_factory=list)
    equivocators: set = field(default_factory=set)


class FakeRep:
    """The parts of trust.reputation.Reputation that PolicyService reads."""

    def __init__(self) -> None:
        self.peer_id = ME
        self.state = FakeState()
        self.trust: dict[str, tuple[float, float]] = {}
        self.anchors: list[str] = []
        self.last_snapshot = None

    def trust_of(self, peer: str) -> tuple[float, float]:
        return self.trust.get(peer, (0.0, 0.0))


@pytest.fixture
def ledger(tmp_path, identity):
    led = Ledger(tmp_path / "ledger.db", identity)
    yield led
    led.close()


@pytest.fixture
def rep() -> FakeRep:
    return FakeRep()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def service(tmp_path: Path, text: str | None, rep=None, ledger=None, **kw) -> PolicyService:
    path = tmp_path / "policy.toml"
    if text is not None:
        write(path, text)
    return PolicyService(tmp_path, path if text is not None else None, rep=rep, ledger=ledger, **kw)


def entries(ledger: Ledger, kind: str = DECISION_KIND) -> list[dict]:
    return [e.body for e in ledger.entries() if e.kind == kind]


DENY_A = f"""
[policy]
default = "allow"

[[rule]]
type = "deny_peers"
name = "no-a"
peers = ["{A}"]
"""

RATE_2 = """
[policy]
default = "allow"

[[rule]]
type = "rate_limit"
rate = 2.0
"""


# -- loading ------------------------------------------------------------------------------------

def test_no_file_runs_the_default_policy_and_logs_denials(tmp_path, rep, ledger):
    rep.state.equivocators.add(B)
    svc = service(tmp_path, None, rep, ledger)
    assert svc.policy.digest == default_policy().digest and svc.source == "<default policy>"
    assert svc.decide(Action.SERVE_REQUEST, A, now=NOW).verdict is Verdict.ALLOW
    for _ in range(3):
        d = svc.decide(Action.SERVE_REQUEST, B, now=NOW)
        assert d.verdict is Verdict.DENY and d.rule == "deny_equivocators"
    # a publisher with a proven equivocation is refused too
    assert svc.decide(Action.ACCEPT_CONTENT, A, publisher=B, now=NOW).verdict is Verdict.DENY
    assert entries(ledger) == []  # nothing before the flush
    assert svc.flush() == 2
    logged = entries(ledger)
    serve = next(b for b in logged if b["action"] == "serve_request")
    assert serve == {"peer": B, "action": "serve_request", "verdict": "deny", "rule": "deny_equivocators",
                     "reason": serve["reason"], "policy": svc.policy.digest, "at": int(NOW * 1000),
                     "last": int(NOW * 1000), "count": 3}
    assert "equivocation" in serve["reason"]
    assert all(not isinstance(v, float) for b in logged for v in b.values())  # canonical CBOR: no floats
    assert [b["policy"] for b in entries(ledger, LOADED_KIND)] == [svc.policy.digest]


def test_an_explicit_file_must_exist_and_be_valid(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        PolicyService(tmp_path, tmp_path / "missing.toml")
    bad = write(tmp_path / "bad.toml", '[policy]\ndefault = "allow"\n\n[[rule]]\ntype = "min_trust"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml:4: error: rule\[0\]"):
        PolicyService(tmp_path, bad)


def test_policy_path_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_policy_path(tmp_path) == (tmp_path / "policy.toml", False)
    assert resolve_policy_path(tmp_path, "rules/p.toml") == (tmp_path / "rules/p.toml", True)
    assert resolve_policy_path(tmp_path, "/etc/p.toml") == (Path("/etc/p.toml"), True)
    monkeypatch.setenv(ENV_VAR, "/srv/override.toml")
    assert resolve_policy_path(tmp_path, "rules/p.toml") == (Path("/srv/override.toml"), True)
    assert parse_config('[policy]\nfile = "p.toml"\n').policy_file == "p.toml"
    assert parse_config("").policy_file == ""
    with pytest.raises(ConfigError, match="policy.file must be a str"):
        parse_config("[policy]\nfile = 3\n")
    with pytest.raises(ConfigError, match="unknown key policy.path"):
        parse_config('[policy]\npath = "x"\n')


# -- the context ----------------------------------------------------------------------------------

def test_context_is_built_from_the_reputation_state(tmp_path, rep):
    rep.trust = {A: (0.25, 0.5), B: (0.0, 0.125), C: (0.0, 0.75)}
    rep.state.counts = {A: {"served": 3, "chunk_verified": 4}}
    rep.state.evidence = [SimpleNamespace(peer=A, kind="served", count=3, at=NOW - 50),
                          SimpleNamespace(peer=A, kind="chunk_verified", count=4, at=NOW - 100)]
    rep.state.equivocators = {C}
    rep.last_snapshot = SimpleNamespace(at_ms=1, global_={A: 500_000, B: 125_000, C: 750_000, ME: 900_000})
    svc = service(tmp_path, None, rep)
    ctx = svc.context(Action.ACCEPT_CONTENT, A, now=NOW, publisher=C, content_size=7, addr="10.0.0.1")
    assert (ctx.local_trust, ctx.global_trust, ctx.rank) == (0.25, 0.5, 2)  # C first, self not ranked
    assert ctx.interactions == 7 and ctx.first_seen == NOW - 100
    assert ctx.publisher_trust == 0.75 and ctx.proven_equivocation  # the publisher equivocated
    assert ctx.peer_addr == "10.0.0.1" and ctx.content_size == 7 and ctx.now == NOW
    # evidence that arrives later is picked up; an unknown peer has the least trusting values
    rep.state.evidence.append(SimpleNamespace(peer=B, kind="served", count=1, at=NOW - 1))
    assert svc.context(Action.SERVE_REQUEST, B, now=NOW).first_seen == NOW - 1
    unknown = svc.context(Action.SERVE_REQUEST, D, now=NOW)
    assert (unknown.local_trust, unknown.global_trust, unknown.rank, unknown.first_seen, unknown.interactions) == \
        (0.0, 0.0, None, None, 0)
    # requests_recent counts decisions per (action, peer); explain-style reads do not count
    for _ in range(4):
        svc.context(Action.RELAY_GOSSIP, E, now=NOW)
    assert svc.context(Action.RELAY_GOSSIP, E, now=NOW, record=False).requests_recent == 4
    assert svc.context(Action.SERVE_REQUEST, E, now=NOW, record=False).requests_recent == 0


# -- enforcement ----------------------------------------------------------------------------------

def test_limits_are_enforced_with_token_buckets_and_logged(tmp_path, rep, ledger):
    svc = service(tmp_path, RATE_2, rep, ledger)
    results = [svc.admit(Action.SERVE_REQUEST, A, now=NOW)[0] for _ in range(5)]
    assert results == [True, True, False, False, False]
    assert svc.admit(Action.SERVE_REQUEST, A, now=NOW + 1.0)[0]  # refilled at 2/s
    assert svc.admit(Action.SERVE_REQUEST, B, now=NOW)[0]         # per peer
    svc.flush()
    a = next(b for b in entries(ledger) if b["peer"] == A)
    assert a["verdict"] == "limit" and a["rule"] == "rate_limit" and a["rate_milli"] == 2000
    assert a["count"] == 6 and a["refused"] == 3
    assert svc.stats()["by_rule"]["rate_limit"] == {"limit": 7, "refused": 3}


def test_bandwidth_limit_counts_bytes(tmp_path, rep):
    svc = service(tmp_path, '[policy]\ndefault = "allow"\n[[rule]]\ntype = "rate_limit"\nbandwidth = 1000.0\n', rep)
    assert svc.admit(Action.SERVE_REQUEST, A, nbytes=600, now=NOW)[0]
    assert not svc.admit(Action.SERVE_REQUEST, A, nbytes=600, now=NOW)[0]
    assert svc.admit(Action.SERVE_REQUEST, A, nbytes=600, now=NOW + 0.5)[0]


class FakeStore:
    def __init__(self, manifest):
        self.manifest = manifest

    def lookup(self, cid):
        return (self.manifest, True)


def test_serve_refusal_answers_denied_or_busy(tmp_path, rep):
    m = SimpleNamespace(size=3 * 1024, chunk_count=3, chunk_length=lambda i: 1024)
    store = FakeStore(m)
    req = protocol.GetChunks(bytes(32), 0, 3)

    def refusal(svc, peer, max_wait=0.0):
        return trio.run(svc.serve_refusal, peer, None, req, store, max_wait)

    svc = service(tmp_path, DENY_A.replace('name = "no-a"', 'name = "no-a"\nactions = ["serve_request"]'), rep)
    code, msg = refusal(svc, A)
    assert code == protocol.ErrorCode.DENIED and "denied by policy rule no-a" in msg
    assert refusal(svc, B) is None
    svc = service(tmp_path, RATE_2, rep)
    assert [refusal(svc, B) for _ in range(2)] == [None, None]
    code, msg = refusal(svc, B)
    assert code == protocol.ErrorCode.BUSY and "rate_limit" in msg
    assert svc.stats()["by_rule"]["rate_limit"] == {"limit": 3, "refused": 1}


RATE_10 = RATE_2.replace("rate = 2.0", "rate = 10.0")


async def _burst(svc: PolicyService, req, store, n: int, max_wait: float) -> tuple[list, float]:
    """n requests from A at once; their refusals (None: served) and how long the last one took."""
    out: list = []
    t0 = trio.current_time()

    async def one() -> None:
        out.append(await svc.serve_refusal(A, None, req, store, max_wait))

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return out, trio.current_time() - t0


def test_serving_over_a_limit_waits_for_tokens_before_answering_busy(tmp_path, rep):
    """A client pipelining 12 requests against 10 requests/s (burst 10) is slowed down, not refused,
    when the wait fits in max_wait (and MAX_THROTTLE); what does not fit is answered BUSY."""
    store = FakeStore(SimpleNamespace(size=1024, chunk_count=1, chunk_length=lambda i: 1024))
    req = protocol.GetChunks(bytes(32), 0, 1)

    async def main() -> None:
        svc = service(tmp_path, RATE_10, rep, clock=trio.current_time)
        results, took = await _burst(svc, req, store, 12, 0.25)
        assert results == [None] * 12
        assert 0.15 < took <= 0.25  # the 11th and 12th waited 0.1 s and 0.2 s
        await trio.sleep(2.0)  # refill
        results, _ = await _burst(svc, req, store, 12, 0.15)
        assert results.count(None) == 11 and sum(1 for r in results if r and r[0] == protocol.ErrorCode.BUSY) == 1

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_serving_waits_at_most_max_throttle_whatever_the_caller_allows(tmp_path, rep):
    """The node allows half its request timeout (5 s); a request over a LIMIT still waits at most
    MAX_THROTTLE for its tokens and is then answered BUSY (the client backs off and asks again),
    so it does not hold the peer's and the node's streams for seconds."""
    store = FakeStore(SimpleNamespace(size=1024, chunk_count=1, chunk_length=lambda i: 1024))
    req = protocol.GetChunks(bytes(32), 0, 1)

    async def main() -> None:
        svc = service(tmp_path, RATE_2, rep, clock=trio.current_time)
        assert (await _burst(svc, req, store, 2, 5.0))[0] == [None, None]  # the burst of 2
        t0 = trio.current_time()
        code, msg = await svc.serve_refusal(A, None, req, store, 5.0)  # its token is 0.5 s away
        assert code == protocol.ErrorCode.BUSY and "rate_limit" in msg
        assert trio.current_time() - t0 <= MAX_THROTTLE <= 0.25

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_fetching_client_gets_the_limit_without_pinning_server_streams(tmp_path, rep):
    """fetch.py's provider loop (3 requests in flight, BUSY back-off from 50 ms doubling to 2 s,
    given up after MAX_BUSY in a row) against 1 request/s for 60 s: it gets ~the limit, is never
    near giving up, and the server holds under 2 of its streams on average (~3 with a 2 s wait)."""
    from overlay.node.fetch import BUSY_BACKOFF, BUSY_BACKOFF_MAX, MAX_BUSY, STREAMS_PER_PROVIDER
    store = FakeStore(SimpleNamespace(size=1 << 22, chunk_count=16, chunk_length=lambda i: 1 << 18))
    req = protocol.GetChunks(bytes(32), 0, 16)
    duration = 60.0
    st = SimpleNamespace(busy=0, most_busy=0, served=0, held=0.0)

    async def worker(svc: PolicyService) -> None:
        while trio.current_time() < duration:
            await trio.sleep(0.01)  # half a round trip
            t0 = trio.current_time()
            refused = await svc.serve_refusal(A, None, req, store, 5.0)
            st.held += trio.current_time() - t0
            await trio.sleep(0.01)
            if refused is None:
                st.served, st.busy = st.served + 1, 0
                await trio.sleep(0.05)  # the batch arrives
            else:
                st.busy += 1
                st.most_busy = max(st.most_busy, st.busy)
                await trio.sleep(min(BUSY_BACKOFF * 2 ** (st.busy - 1), BUSY_BACKOFF_MAX))

    async def main() -> None:
        svc = service(tmp_path, RATE_2.replace("rate = 2.0", "rate = 1.0"), rep, clock=trio.current_time)
        async with trio.open_nursery() as nursery:
            for _ in range(STREAMS_PER_PROVIDER):
                nursery.start_soon(worker, svc)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert st.served / duration >= 0.9
    assert st.most_busy <= MAX_BUSY - 3
    assert st.held / duration < 2.0


def test_providers_dials_and_content(tmp_path, rep):
    svc = service(tmp_path, f"""
[policy]
default = "allow"

[[rule]]
type = "deny_peers"
name = "bad-providers"
actions = ["choose_provider", "outbound_dial"]
peers = ["{A}", "{B}"]

[[rule]]
type = "allow_peers"
actions = ["choose_provider"]
peers = ["{D}"]

[[rule]]
type = "rate_limit"
actions = ["choose_provider"]
rate = 5.0

[[rule]]
type = "max_content_size"
actions = ["accept_content"]
max_bytes = 1000
""", rep)
    # denied providers are dropped; allowed ones come before limited ones, each in the given order
    assert svc.choose_providers([A, C, B, D]) == [D, C]
    with pytest.raises(PolicyDenied, match="refuses every provider.*bad-providers"):
        svc.choose_providers([A, B])
    assert svc.choose_providers([]) == []
    with pytest.raises(PolicyDenied, match=f"refuses to dial {A}.*bad-providers"):
        svc.check_dial(A)
    svc.check_dial(C)
    svc.check_content(C, SimpleNamespace(publisher=E, size=1000))
    with pytest.raises(PolicyDenied, match=f"publisher {E}.*max_content_size") as info:
        svc.check_content(C, SimpleNamespace(publisher=E, size=1001))
    assert info.value.decision.rule == "max_content_size"


# -- the decision log -----------------------------------------------------------------------------

def test_a_flood_of_denials_adds_a_bounded_number_of_entries(tmp_path, rep, ledger):
    svc = service(tmp_path, '[policy]\ndefault = "deny"\n', rep, ledger)
    for _ in range(5000):  # one peer hammering
        svc.decide(Action.SERVE_REQUEST, A, now=NOW)
    assert svc.flush() == 1
    (one,) = entries(ledger)
    assert one["count"] == 5000 and one["rule"] == "default"
    # thousands of fresh peer IDs in one window: at most MAX_ENTRIES_PER_FLUSH + one folded entry
    sybils = [Identity.from_seed(i.to_bytes(32, "big")).peer_id for i in range(100, 400)]
    for p in sybils:
        for _ in range(3):
            svc.decide(Action.INBOUND_CONNECTION, p, now=NOW)
    written = svc.flush()
    assert written == MAX_ENTRIES_PER_FLUSH + 1
    logged = entries(ledger)[1:]
    folded = [b for b in logged if b["peer"] == "*"]
    assert len(folded) == 1 and folded[0]["peers"] == len(sybils) - MAX_ENTRIES_PER_FLUSH
    assert sum(b["count"] for b in logged) == 3 * len(sybils)
    assert svc.stats()["ledger"] == {"entries": 1 + written, "decisions": 5000 + 3 * len(sybils),
                                     "folded": folded[0]["count"], "write_errors": 0, "pending": 0}
    # the ledger with these entries still audits clean
    report = ledger.audit(workers=1)
    assert report.ok, report.problems


def test_a_reload_between_decisions_logs_them_under_their_own_policy(tmp_path, rep, ledger):
    svc = service(tmp_path, '[policy]\ndefault = "deny"\n', rep, ledger)
    first = svc.policy.digest
    svc.decide(Action.SERVE_REQUEST, A, now=NOW)
    write(tmp_path / "policy.toml", '[policy]\ndefault = "deny"\n# changed\n')
    assert svc.reload()["ok"]
    svc.decide(Action.SERVE_REQUEST, A, now=NOW)
    svc.flush()
    assert [b["policy"] for b in entries(ledger)] == [first, svc.policy.digest] and first != svc.policy.digest


# -- reload and anchors ---------------------------------------------------------------------------

def test_reload_swaps_only_a_valid_policy(tmp_path, rep, ledger):
    svc = service(tmp_path, DENY_A, rep, ledger)
    old = svc.policy
    assert svc.decide(Action.SERVE_REQUEST, A, now=NOW).rule == "no-a"
    write(tmp_path / "policy.toml", DENY_A + '\n[[rule]]\ntype = "rate_limit"\nrate = -1\nbogus = 2\n')
    res = svc.reload()
    assert not res["ok"] and svc.policy is old
    assert {e["line"] for e in res["errors"]} == {12, 13} and all(e["severity"] == "error" for e in res["errors"])
    assert any("rate" in e["path"] for e in res["errors"]) and res["active"]["digest"] == old.digest
    assert svc.decide(Action.SERVE_REQUEST, A, now=NOW).rule == "no-a"  # still in force
    (tmp_path / "policy.toml").unlink()  # a vanished explicit file is an error too, not the default policy
    assert not svc.reload()["ok"] and svc.policy is old
    write(tmp_path / "policy.toml", DENY_A.replace(A, B))
    res = svc.reload()
    assert res["ok"] and res["changed"] and res["previous"] == old.digest
    assert svc.decide(Action.SERVE_REQUEST, A, now=NOW).verdict is Verdict.ALLOW
    assert svc.decide(Action.SERVE_REQUEST, B, now=NOW).rule == "no-a"
    st = svc.stats()
    assert st["reloads"] == 1 and st["rejected_reloads"] == 2 and st["last_reload_errors"] == []
    assert len(entries(ledger, LOADED_KIND)) == 2


def test_the_implicit_policy_file_may_appear_but_not_vanish(tmp_path, rep):
    svc = PolicyService(tmp_path, rep=rep)  # <home>/policy.toml, absent: the default policy
    assert svc.source == "<default policy>" and svc.reload()["ok"]
    write(tmp_path / "policy.toml", DENY_A)
    assert svc.reload()["ok"] and svc.decide(Action.SERVE_REQUEST, A, now=NOW).rule == "no-a"
    (tmp_path / "policy.toml").unlink()  # gone while in force: not silently replaced by the open default
    res = svc.reload()
    assert not res["ok"] and "does not exist" in res["errors"][0]["text"]
    assert svc.decide(Action.SERVE_REQUEST, A, now=NOW).rule == "no-a"


def test_policy_anchors_feed_the_reputation(tmp_path, rep):
    rep.anchors = [G]
    calls = []
    svc = service(tmp_path, f'[policy]\ndefault = "allow"\n[[rule]]\ntype = "anchors"\npeers = ["{A}", "{B}"]\n',
                  rep, on_anchors=lambda: calls.append(1))
    assert rep.anchors == sorted([A, B, G]) and calls == [1]
    write(tmp_path / "policy.toml", '[policy]\ndefault = "allow"\n')
    assert svc.reload()["ok"]
    assert rep.anchors == [G] and calls == [1, 1]
    assert svc.reload()["ok"] and calls == [1, 1]  # unchanged anchors: no recomputation asked


# -- inspection -----------------------------------------------------------------------------------

def test_explain_is_a_dry_run(tmp_path, rep, ledger):
    svc = service(tmp_path, DENY_A + '\n[[rule]]\ntype = "rate_limit"\nrate = 3.0\n', rep, ledger)
    before = svc.stats()
    out = svc.explain(Action.SERVE_REQUEST, A, content_size=10)
    assert out["outcome"] == {"verdict": "deny", "rule": "no-a", "reason": "peer is on the deny list"}
    assert [s["rule"] for s in out["steps"]] == ["no-a", "rate_limit"]
    assert out["steps"][1]["decision"]["verdict"] == "limit" and out["steps"][1]["decision"]["rate"] == 3.0
    assert out["context"]["action"] == "serve_request" and out["context"]["content_size"] == 10
    json.dumps(out)
    assert svc.stats() == before and svc.flush() == 0
    show = svc.show()
    assert [r["name"] for r in show["rule_list"]] == ["no-a", "rate_limit"]
    assert show["rule_list"][0]["deny_list"] and show["rule_list"][0]["options"] == {"peers": [A]}
    assert show["chains"]["serve_request"] == {"rules": ["no-a", "rate_limit"], "default": "allow"}
    json.dumps(show)


def test_control_ops(tmp_path, rep, ledger):
    svc = service(tmp_path, DENY_A, rep, ledger)
    ops = svc.control_handlers()
    assert set(ops) == {"policy-show", "policy-explain", "policy-reload", "policy-stats"}

    async def call(op, **req):
        return await ops[op]({"op": op, **req}, None)

    async def main():
        out = await call("policy-explain", peer=A, action="serve_request", size=5)
        assert out["outcome"]["rule"] == "no-a"
        for bad in ({"peer": A, "action": "serve"}, {"peer": "nope", "action": "serve_request"},
                    {"peer": A, "action": "serve_request", "size": -1},
                    {"peer": A, "action": "accept_content", "publisher": "x"}):
            with pytest.raises(VouchnetError):
                await call("policy-explain", **bad)
        write(tmp_path / "policy.toml", "[policy\n")
        res = await call("policy-reload")
        assert not res["ok"] and "TOML syntax error" in res["errors"][0]["problem"]
        assert (await call("policy-show"))["digest"] == svc.policy.digest
        assert (await call("policy-stats"))["rejected_reloads"] == 1
        return True

    assert trio.run(main)


# -- gossip gates in ReputationService ------------------------------------------------------------

def test_reputation_service_asks_the_policy_about_gossip(tmp_path, identity, other_identity):
    from overlay.services.reputation import ReputationService
    from trust.attestation import evidence_digest, open_attestation, sign_attestation
    rs = ReputationService(tmp_path, identity)
    try:
        issuer = other_identity.peer_id
        env = sign_attestation(other_identity, A, 0.5, 1, int(time.time()), evidence_digest([]))
        att = open_attestation(env)
        assert rs.accept_origin(issuer)
        write(tmp_path / "policy.toml", f'[policy]\ndefault = "allow"\n[[rule]]\ntype = "deny_peers"\n'
                                        f'name = "mute"\npeers = ["{issuer}"]\n')
        rs.policy = PolicyService(tmp_path, rep=rs.rep, ledger=rs.ledger)
        assert not rs.accept_origin(issuer) and rs.accept_origin(A)
        rs._on_attestation(att, env, issuer)
        assert (issuer, A) not in rs.rep.state.received and rs.stats["attestations_in"] == 0
        write(tmp_path / "policy.toml", '[policy]\ndefault = "allow"\n')
        assert rs.policy.reload()["ok"]
        rs._on_attestation(att, env, issuer)
        assert (issuer, A) in rs.rep.state.received
        rs.policy.flush()
        logged = {(b["action"], b["rule"]) for b in entries(rs.ledger)}
        assert logged == {("relay_gossip", "mute"), ("accept_attestation", "mute")}
        assert rs.ledger.audit(workers=1).ok
    finally:
        rs.close()


def test_the_gossip_gate_asks_the_policy_once_per_record(tmp_path, identity, other_identity):
    """With gossip running, accept_attestation / accept_head are asked in the validator
    (accept_record) and not again by the handlers, so a LIMIT's tokens and the decision counts
    are taken once per message; equivocation proofs are never asked."""
    from overlay.net.gossip import TOPIC_ATTESTATIONS, TOPIC_EQUIVOCATIONS, TOPIC_HEADS
    from overlay.services.reputation import ReputationService
    from trust.attestation import (Attestation, check_equivocation, evidence_digest, open_attestation,
                                   open_tree_head, sign_attestation, sign_tree_head)
    rs = ReputationService(tmp_path, identity)
    try:
        issuer = other_identity.peer_id
        write(tmp_path / "policy.toml", '[policy]\ndefault = "allow"\n\n[[rule]]\ntype = "rate_limit"\n'
                                        'actions = ["accept_attestation", "accept_head"]\nrate = 1.0\n')
        rs.policy = PolicyService(tmp_path, rep=rs.rep, ledger=rs.ledger)
        rs._gated = True  # as ReputationService.run wires it
        envs = [sign_attestation(other_identity, A, 0.5, seq, int(time.time()), evidence_digest([]))
                for seq in (1, 2)]
        atts = [open_attestation(e) for e in envs]
        assert rs.accept_record(TOPIC_ATTESTATIONS, atts[0], issuer)  # the burst of 1
        rs._on_attestation(atts[0], envs[0], issuer)
        assert rs.stats["attestations_in"] == 1
        assert not rs.accept_record(TOPIC_ATTESTATIONS, atts[1], issuer)  # over 1/s: refused at the gate
        assert rs.policy.stats()["by_action"]["accept_attestation"] == {"limit": 2, "refused": 1}
        head_env = sign_tree_head(other_identity, 1, bytes(32), int(time.time()), 1)
        assert rs.accept_record(TOPIC_HEADS, open_tree_head(head_env), issuer)
        rs._on_head(open_tree_head(head_env), head_env, issuer)
        assert rs.stats["heads_in"] == 1 and rs.policy.stats()["by_action"]["accept_head"] == {"limit": 1}
        eq = check_equivocation(*(sign_attestation(other_identity, B, v, 9, 1_700_000_000, evidence_digest([]))
                                  for v in (0.1, 0.9)), Attestation.TAG)
        decisions = rs.policy.decisions
        assert rs.accept_record(TOPIC_EQUIVOCATIONS, eq, issuer) and rs.policy.decisions == decisions
    finally:
        rs.close()


# -- the CLI (no node running) --------------------------------------------------------------------

def test_cli_validate(tmp_path):
    good = write(tmp_path / "good.toml", RATE_2)
    proc = run_cli("policy", "validate", str(good))
    assert proc.returncode == 0 and "valid: 1 rule" in proc.stdout.decode()
    warn = write(tmp_path / "warn.toml", '[[rule]]\ntype = "allow"\nactions = ["serve_request"]\n')
    proc = run_cli("policy", "validate", str(warn))
    assert proc.returncode == 0 and "warning" in proc.stdout.decode()
    bad = write(tmp_path / "bad.toml", f'[policy]\ndefault = "allow"\n\n[[rule]]\ntype = "deny_peers"\n'
                                       f'peers = ["{A}", "12D3KooWnope"]\nmatch = "everyone"\n')
    proc = run_cli("policy", "validate", str(bad))
    out = proc.stdout.decode()
    assert proc.returncode == 1, out
    assert f"{bad}:6: error: rule[0].peers[1]:" in out and f"{bad}:7: error: rule[0].match:" in out
    assert "(expected" in out and "INVALID: 2 errors" in out
    data = json.loads(run_cli("policy", "validate", str(bad), "--json").stdout)
    assert not data["valid"] and [e["line"] for e in data["errors"]] == [6, 7]
    assert run_cli("policy", "validate", str(tmp_path / "none.toml")).returncode == 2
    for cmd in ("validate", "show", "explain", "reload", "stats"):
        assert "Example" in run_cli("policy", cmd, "--help", check=True).stdout.decode(), cmd


def test_cli_show_and_explain_offline_use_the_file_and_the_ledger(tmp_path):
    from trust import keyfile
    from trust.observations import Kind, Observation
    from trust.reputation import Reputation
    home = tmp_path / "home"
    run_cli("init", home=home, check=True)
    me = keyfile.load_identity(home / "identity.key", None)
    led = Ledger(home / "ledger.db", me)
    rep = Reputation(led, me)
    rep.record(Observation(A, Kind.CHUNK_VERIFIED, count=5, nbytes=5000))
    rep.compute()
    led.close()
    policy = write(tmp_path / "p.toml", '[policy]\ndefault = "allow"\n[[rule]]\ntype = "min_trust"\n'
                                        'actions = ["serve_request"]\nmin_local = 0.5\n')
    shown = json.loads(run_cli("--policy", str(policy), "policy", "show", "--json", home=home, check=True).stdout)
    assert shown["source"] == str(policy) and shown["from"].startswith("file")
    out = json.loads(run_cli("--policy", str(policy), "policy", "explain", "--peer", A, "--action", "serve_request",
                             "--json", home=home, check=True).stdout)
    assert out["context"]["interactions"] == 5 and out["context"]["local_trust"] == 1.0
    assert out["outcome"]["verdict"] == "allow"
    out = json.loads(run_cli("--policy", str(policy), "policy", "explain", "--peer", B, "--action", "serve_request",
                             "--json", home=home, check=True).stdout)
    assert out["outcome"]["verdict"] == "deny" and out["outcome"]["rule"] == "min_trust"
    # the [policy] file key, relative to the home folder
    with open(home / "config.toml", "a") as f:
        f.write('\n[policy]\nfile = "mine.toml"\n')
    write(home / "mine.toml", RATE_2)
    shown = json.loads(run_cli("policy", "show", "--json", home=home, check=True).stdout)
    assert shown["source"] == str(home / "mine.toml")
    proc = run_cli("policy", "reload", home=home)
    assert proc.returncode == 1 and "no node is running" in proc.stderr.decode()
