"""Policy engine: every built-in rule, the evaluation order, fail-closed errors, rate tracking."""
from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import (Action, Context, Decision, Policy, RateTracker, RuleConfigError, TokenBuckets, Verdict,
                    combine_limits)
from policy.rules import (AllowAddrs, AllowAll, AllowPeers, Anchors, BuiltinRule, DenyAddrs, DenyAll,
                          DenyEquivocators, DenyPeers, MaxContentSize, MinTrust, NewcomerQuarantine, PublisherTrust,
                          RateLimit)
from trust.errors import ConfigError
from trust.peerid import peer_id_from_public_key

REPO = Path(__file__).resolve().parents[2]
PEERS = [peer_id_from_public_key(bytes([i]) * 32) for i in range(1, 9)]
A, B, C, D = PEERS[:4]
ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT
NOW = 1_700_000_000.0
SERVE = Action.SERVE_REQUEST


def ctx(**kw) -> Context:
    base = dict(peer_id=A, action=SERVE, now=NOW)
    base.update(kw)
    return Context(**base)


def counting(name: str, answer: Decision | None, actions=frozenset(Action)):
    """A trusted (built-in) rule that records it was evaluated and returns a fixed answer."""
    class _R(BuiltinRule):
        type = "counting"

        def _setup(self, v):
            self.calls = 0

        def evaluate(self, c):
            self.calls += 1
            return answer
    r = _R(name=name)
    r.applies_to = frozenset(actions)
    return r


# -- data types ---------------------------------------------------------------------------------


def test_decision_is_validated():
    with pytest.raises(ValueError):
        Decision(LIMIT, "no numbers", "r")
    with pytest.raises(ValueError):
        Decision(ALLOW, "rate on an allow", "r", rate=1.0)
    with pytest.raises(TypeError):
        Decision("allow", "a string is not a Verdict", "r")  # type: ignore[arg-type]
    d = Decision(LIMIT, "ok", "r", bandwidth=1000.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.rate = 3.0  # type: ignore[misc]


def test_context_is_frozen_and_needs_now():
    with pytest.raises(TypeError):
        Context(A, SERVE)  # type: ignore[call-arg]
    c = ctx()
    assert c.local_trust == 0.0 and c.interactions == 0 and c.first_seen is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.local_trust = 1.0  # type: ignore[misc]


def test_policy_does_not_import_overlay():
    for path in (REPO / "policy").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                assert not n.split(".")[0] == "overlay", f"{path.name} imports {n}"


# -- rules --------------------------------------------------------------------------------------


def test_min_trust_any_all_rank_and_reason():
    r = MinTrust(actions=["serve_request"], min_local=0.1, min_global=0.01)
    assert r.evaluate(ctx(local_trust=0.2)) is None  # abstains on pass by default
    assert r.evaluate(ctx(global_trust=0.01)) is None
    d = r.evaluate(ctx(local_trust=0.05, global_trust=0.001))
    assert d.verdict is DENY and d.rule == "min_trust"
    assert "local trust 0.05 (min 0.1)" in d.reason and "global trust 0.001 (min 0.01)" in d.reason
    all_ = MinTrust(actions=["serve_request"], min_local=0.1, min_global=0.01, match="all", on_pass="allow")
    assert all_.evaluate(ctx(local_trust=0.2)).verdict is DENY
    assert all_.evaluate(ctx(local_trust=0.2, global_trust=0.02)).verdict is ALLOW
    assert all_.terminal == {SERVE}
    rank = MinTrust(actions=["serve_request"], max_rank=10)
    assert rank.evaluate(ctx(rank=10)) is None
    assert rank.evaluate(ctx(rank=11)).verdict is DENY
    assert rank.evaluate(ctx(rank=None)).verdict is DENY
    assert rank.evaluate(ctx(rank=0)).verdict is DENY  # a garbage rank does not pass


def test_min_trust_nan_fails_closed_and_skips_newcomers():
    r = MinTrust(actions=["serve_request"], min_local=0.1)
    assert r.evaluate(ctx(local_trust=math.nan)).verdict is DENY
    r = MinTrust(actions=["serve_request"], min_local=0.1, min_interactions=5, on_pass="allow")
    assert r.evaluate(ctx(interactions=4)) is None
    assert r.evaluate(ctx(interactions=5)).verdict is DENY
    assert r.terminal == frozenset()  # it abstains for newcomers, so it is not a catch-all


def test_min_trust_options_are_validated():
    with pytest.raises(RuleConfigError, match="at least one of"):
        MinTrust(actions=["serve_request"])
    with pytest.raises(RuleConfigError, match="actions"):
        MinTrust(min_local=0.1)  # actions are required for min_trust
    with pytest.raises(RuleConfigError) as info:
        MinTrust(actions=["serve_request"], min_local=1.5, min_global="high", match="most", bogus=1)
    paths = {p.path[0] for p in info.value.problems}
    assert paths == {"min_local", "min_global", "match", "bogus"}
    with pytest.raises(RuleConfigError):
        MinTrust(actions=["serve_request"], min_local=True)  # a bool is not a number
    with pytest.raises(RuleConfigError):
        MinTrust(actions=["serve_request"], min_local=math.nan)


def test_allow_and_deny_peers_match_peer_or_publisher():
    allow = AllowPeers(peers=[A])
    assert allow.evaluate(ctx()).verdict is ALLOW
    assert allow.evaluate(ctx(peer_id=B, publisher=A)) is None  # default match = peer
    by_pub = AllowPeers(peers=[A], match="publisher")
    assert by_pub.evaluate(ctx(peer_id=B, publisher=A)).verdict is ALLOW
    assert by_pub.evaluate(ctx()) is None
    deny = DenyPeers(peers=[C])
    assert deny.deny_list
    assert deny.evaluate(ctx(peer_id=C)).verdict is DENY
    assert deny.evaluate(ctx(peer_id=B, publisher=C)).verdict is DENY  # default match = any
    assert deny.evaluate(ctx(peer_id=B, publisher=D)) is None
    with pytest.raises(RuleConfigError, match="not a peer ID"):
        DenyPeers(peers=["12D3KooWshort"])
    with pytest.raises(RuleConfigError, match="listed twice"):
        DenyPeers(peers=[A, A])


def test_addr_rules_v4_v6_mapped_and_garbage():
    deny = DenyAddrs(ranges=["10.0.0.0/8", "2001:db8::/32"])
    assert deny.evaluate(ctx(peer_addr="10.0.0.0")).verdict is DENY
    assert deny.evaluate(ctx(peer_addr="10.255.255.255")).verdict is DENY
    assert deny.evaluate(ctx(peer_addr="11.0.0.0")) is None
    assert deny.evaluate(ctx(peer_addr="9.255.255.255")) is None
    assert deny.evaluate(ctx(peer_addr="2001:db8::1")).verdict is DENY
    assert deny.evaluate(ctx(peer_addr="2001:db9::1")) is None
    assert deny.evaluate(ctx(peer_addr="::ffff:10.1.2.3")).verdict is DENY  # no bypass via mapped IPv6
    assert deny.evaluate(ctx(peer_addr=None)) is None
    bad = deny.evaluate(ctx(peer_addr="not-an-ip"))
    assert bad.verdict is DENY and "does not parse" in bad.reason
    allow = AllowAddrs(ranges=["192.168.0.0/16"])
    assert allow.evaluate(ctx(peer_addr="192.168.3.4")).verdict is ALLOW
    assert allow.evaluate(ctx(peer_addr="::ffff:192.168.3.4")).verdict is ALLOW
    assert allow.evaluate(ctx(peer_addr="192.169.0.1")) is None
    assert allow.evaluate(ctx(peer_addr="garbage")) is None
    assert allow.evaluate(ctx(peer_addr=None)) is None
    with pytest.raises(RuleConfigError, match="did you mean 192.168.1.0/24"):
        AllowAddrs(ranges=["192.168.1.1/24"])
    with pytest.raises(RuleConfigError, match="overlaps"):
        AllowAddrs(ranges=["10.0.0.0/8", "10.2.0.0/16"])
    with pytest.raises(RuleConfigError, match="IPv4-mapped"):
        DenyAddrs(ranges=["::ffff:10.0.0.0/104"])


def test_anchors_allow_and_feed_personalisation():
    r = Anchors(peers=[B, A])
    assert r.evaluate(ctx()).verdict is ALLOW
    assert r.evaluate(ctx(peer_id=C)) is None
    p = Policy([r, Anchors(name="more", peers=[C, A])])
    assert p.anchor_peers() == (B, A, C)


def test_newcomer_quarantine():
    r = NewcomerQuarantine(min_interactions=20, min_age=3600, rate=2.0, exempt_global=0.01)
    assert r.applies_to == {Action.SERVE_REQUEST, Action.RELAY_GOSSIP}
    old = NOW - 7200
    assert r.evaluate(ctx(interactions=20, first_seen=old)) is None
    few = r.evaluate(ctx(interactions=19, first_seen=old))
    assert few.verdict is LIMIT and few.rate == 2.0 and few.bandwidth is None
    assert r.evaluate(ctx(interactions=500, first_seen=NOW - 10)).verdict is LIMIT  # too young
    assert r.evaluate(ctx(interactions=500, first_seen=None)).verdict is LIMIT  # never seen: young
    assert r.evaluate(ctx(interactions=0, global_trust=0.01)) is None  # vouched for: served normally
    assert r.evaluate(ctx(interactions=0, local_trust=0.9)).verdict is LIMIT  # no exempt_local set
    assert NewcomerQuarantine(rate=1.0, exempt_local=0.5).evaluate(ctx(local_trust=0.5)) is None
    with pytest.raises(RuleConfigError, match="rate, bandwidth"):
        NewcomerQuarantine()
    with pytest.raises(RuleConfigError):
        NewcomerQuarantine(rate=0)


def test_rate_limit():
    r = RateLimit(rate=10.0, bandwidth=1e6, hard_cap=50.0)
    d = r.evaluate(ctx(requests_recent=3))
    assert d.verdict is LIMIT and (d.rate, d.bandwidth) == (10.0, 1e6)
    assert r.evaluate(ctx(requests_recent=50)).verdict is LIMIT
    over = r.evaluate(ctx(requests_recent=50.5))
    assert over.verdict is DENY and "hard cap" in over.reason
    assert r.evaluate(ctx(requests_recent=math.nan)).verdict is DENY
    assert RateLimit(hard_cap=5).evaluate(ctx(requests_recent=1)) is None
    with pytest.raises(RuleConfigError, match="below rate"):
        RateLimit(rate=10, hard_cap=5)


def test_max_content_size():
    r = MaxContentSize(max_bytes=1000)
    assert r.applies_to == {Action.ACCEPT_CONTENT}
    c = dict(action=Action.ACCEPT_CONTENT)
    assert r.evaluate(ctx(content_size=None, **c)) is None
    assert r.evaluate(ctx(content_size=1000, **c)) is None
    assert r.evaluate(ctx(content_size=1001, **c)).verdict is DENY
    with pytest.raises(RuleConfigError, match="cannot decide inbound_connection"):
        MaxContentSize(max_bytes=1, actions=["inbound_connection"])


def test_publisher_trust():
    r = PublisherTrust(min_trust=0.01)
    c = dict(action=Action.ACCEPT_CONTENT)
    assert r.evaluate(ctx(publisher=B, publisher_trust=0.02, **c)) is None
    low = r.evaluate(ctx(publisher=B, publisher_trust=0.001, **c))
    assert low.verdict is DENY and "0.001" in low.reason
    assert r.evaluate(ctx(publisher=None, **c)).verdict is DENY
    assert r.evaluate(ctx(publisher=B, publisher_trust=None, **c)).verdict is DENY
    assert PublisherTrust(min_trust=0.01, on_pass="allow").evaluate(ctx(publisher=B, publisher_trust=0.5, **c)).verdict is ALLOW
    with pytest.raises(RuleConfigError, match="cannot decide serve_request"):
        PublisherTrust(min_trust=0.01, actions=["serve_request"])


def test_deny_equivocators_and_catch_alls():
    r = DenyEquivocators()
    assert r.deny_list and r.applies_to == frozenset(Action)
    assert r.evaluate(ctx(proven_equivocation=True)).verdict is DENY
    assert r.evaluate(ctx()) is None
    assert AllowAll(actions=["relay_gossip"]).evaluate(ctx()).verdict is ALLOW
    d = DenyAll(actions=["serve_request"], reason="maintenance").evaluate(ctx())
    assert (d.verdict, d.reason) == (DENY, "maintenance")
    with pytest.raises(RuleConfigError, match="actions"):
        AllowAll()
    with pytest.raises(RuleConfigError, match="empty"):
        DenyAll(actions=[])


def test_rule_names_are_validated():
    with pytest.raises(RuleConfigError, match="bad rule name"):
        DenyEquivocators(name="has space")
    assert DenyEquivocators(name="eq-1").name == "eq-1"


# -- evaluation order ---------------------------------------------------------------------------


def test_first_deny_wins_and_first_allow_ends():
    later = counting("later", Decision(DENY, "x", "later"))
    p = Policy([AllowPeers(peers=[A]), later], default="deny")
    assert p.decide(ctx()).verdict is ALLOW
    assert later.calls == 0  # evaluation ended at the allow
    p = Policy([DenyAll(actions=["serve_request"]), AllowPeers(peers=[A], name="ap")])
    assert p.decide(ctx()).rule == "deny"


def test_limits_are_remembered_and_the_most_restrictive_wins():
    rl = RateLimit(rate=50.0)
    nq = NewcomerQuarantine(rate=2.0)
    bw = RateLimit(name="bw", bandwidth=1000.0)
    p = Policy([rl, nq, bw, AllowAll(actions=["serve_request"])])
    d = p.decide(ctx())
    assert d.verdict is LIMIT and d.rate == 2.0 and d.bandwidth == 1000.0
    assert d.rule == "newcomer_quarantine+bw"
    # A limit with an allowing default is the answer; with a denying default it is not a permission.
    assert Policy([rl], default="allow").decide(ctx()) == rl.evaluate(ctx())
    assert Policy([rl], default="deny").decide(ctx()).verdict is DENY
    # A deny after a limit still denies.
    assert Policy([rl, DenyAll(actions=["serve_request"])], default="allow").decide(ctx()).verdict is DENY


def test_combine_limits_keeps_the_tighter_decision():
    a = Decision(LIMIT, "a", "a", rate=5.0)
    b = Decision(LIMIT, "b", "b", rate=3.0)
    assert combine_limits(a, b) is b and combine_limits(b, a) is b
    c = Decision(LIMIT, "c", "c", bandwidth=10.0)
    m = combine_limits(a, c)
    assert (m.rate, m.bandwidth, m.rule) == (5.0, 10.0, "a+c")


def test_deny_lists_run_first_wherever_they_are():
    first = counting("allow-first", Decision(ALLOW, "ok", "allow-first"))
    p = Policy([first, DenyPeers(peers=[A])], default="allow")
    d = p.decide(ctx())
    assert d.verdict is DENY and d.rule == "deny_peers"
    assert first.calls == 0
    assert [name for name, _ in p.explain(ctx())] == ["deny_peers", "allow-first"]


def test_defaults_per_action_and_non_applicable_rules():
    p = Policy([DenyAll(actions=["relay_gossip"])], default="deny", defaults={"choose_provider": "allow"})
    assert p.decide(ctx()).verdict is DENY
    d = p.decide(ctx(action=Action.CHOOSE_PROVIDER))
    assert (d.verdict, d.rule) == (ALLOW, "default")
    assert p.default_for("choose_provider") is ALLOW
    assert p.rules_for(Action.SERVE_REQUEST) == ()


def test_policy_constructor_rejects_misuse():
    with pytest.raises(ConfigError, match="unique"):
        Policy([DenyEquivocators(), DenyEquivocators()])
    with pytest.raises(ConfigError):
        Policy([], default="limit")
    with pytest.raises(ConfigError):
        Policy([], default="maybe")
    with pytest.raises(ConfigError, match="unknown action"):
        Policy([], defaults={"teleport": "allow"})
    with pytest.raises(ConfigError, match="evaluate"):
        Policy([type("NoEval", (), {"name": "x", "applies_to": frozenset(Action)})()])


def test_explain_shows_every_rule_even_after_the_outcome():
    p = Policy([RateLimit(rate=5.0), AllowPeers(peers=[A]), DenyAll(actions=["serve_request"]),
                DenyEquivocators()], default="deny")
    outcome, steps = p.dry_run(ctx())
    assert [n for n, _ in steps] == ["deny_equivocators", "rate_limit", "allow_peers", "deny"]
    assert steps[0][1] is None
    assert steps[1][1].verdict is LIMIT and steps[2][1].verdict is ALLOW and steps[3][1].verdict is DENY
    assert outcome == p.decide(ctx())
    assert outcome.verdict is LIMIT and outcome.rate == 5.0
    assert p.explain(ctx()) == steps


def test_engine_never_raises():
    boom = counting("boom", None)

    def explode(c):
        raise RuntimeError("kaput")
    boom.evaluate = explode  # type: ignore[method-assign]
    p = Policy([boom], default="allow")
    d = p.decide(ctx())
    assert d.verdict is DENY and "kaput" in d.reason and d.rule == "boom"
    assert p.explain(ctx())[0][1].verdict is DENY
    assert p.decide("not a context").verdict is DENY  # type: ignore[arg-type]
    assert "unknown action" in p.decide(ctx(action="teleport")).reason  # type: ignore[arg-type]
    assert p.dry_run(None)[0].verdict is DENY  # type: ignore[arg-type]
    assert p.decide(ctx(action=["unhashable"])).verdict is DENY  # type: ignore[arg-type]
    # A context full of wrong types denies instead of raising.
    weird = Policy([MinTrust(actions=["serve_request"], min_local=0.1)], default="allow")
    assert weird.decide(ctx(local_trust="lots")).verdict is DENY  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------------

ADDR = "203.0.113.9"


def _allowers(i: int) -> list:
    """Rules that each allow (or limit) the context built in the property below."""
    return [
        AllowAll(name=f"allow-{i}", actions=list(Action)),
        AllowPeers(name=f"allow-peers-{i}", peers=[A, B]),
        AllowPeers(name=f"allow-pub-{i}", peers=[C], match="publisher"),
        AllowAddrs(name=f"allow-addrs-{i}", ranges=["203.0.113.0/24"]),
        Anchors(name=f"anchors-{i}", peers=[A]),
        MinTrust(name=f"min-trust-{i}", actions=list(Action), min_local=0.0, on_pass="allow"),
        PublisherTrust(name=f"pub-{i}", min_trust=0.0, on_pass="allow",
                       actions=["accept_content", "accept_attestation", "accept_head"]),
        RateLimit(name=f"rate-{i}", rate=3.0, actions=list(Action)),
        NewcomerQuarantine(name=f"quarantine-{i}", rate=1.0, actions=list(Action)),
    ]


def _deniers(i: int) -> list:
    return [
        DenyPeers(name=f"deny-peers-{i}", peers=[A]),
        DenyPeers(name=f"deny-pub-{i}", peers=[C], match="publisher"),
        DenyAddrs(name=f"deny-addrs-{i}", ranges=["203.0.113.0/28"]),
        DenyEquivocators(name=f"deny-eq-{i}"),
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), action=st.sampled_from(list(Action)), default=st.sampled_from(["allow", "deny"]))
def test_a_matching_deny_list_always_wins(data, action, default):
    allowers = data.draw(st.lists(st.sampled_from(range(9)), max_size=8))
    deniers = data.draw(st.lists(st.sampled_from(range(4)), min_size=1, max_size=3))
    rules = [_allowers(n)[k] for n, k in enumerate(allowers)] + [_deniers(n)[k] for n, k in enumerate(deniers)]
    order = data.draw(st.permutations(rules))
    c = Context(A, action, local_trust=0.5, global_trust=0.5, peer_addr=ADDR, publisher=C, publisher_trust=0.5,
                proven_equivocation=True, now=NOW)
    p = Policy(order, default=default)
    d = p.decide(c)
    assert d.verdict is DENY
    assert d.rule.startswith("deny-")
    outcome, _ = p.dry_run(c)
    assert outcome == d


def _random_rule(draw, i: int):
    kind = draw(st.integers(0, 12))
    acts = draw(st.lists(st.sampled_from(list(Action)), min_size=1, max_size=3, unique=True))
    peers = draw(st.lists(st.sampled_from(PEERS[:4]), min_size=1, max_size=2, unique=True))
    name = f"r{i}"
    if kind == 0:
        return AllowPeers(name=name, peers=peers, actions=acts)
    if kind == 1:
        return DenyPeers(name=name, peers=peers, actions=acts, match=draw(st.sampled_from(["peer", "any"])))
    if kind == 2:
        return MinTrust(name=name, actions=acts, min_global=draw(st.sampled_from([0.0, 0.1, 0.5])),
                        on_pass=draw(st.sampled_from(["abstain", "allow"])))
    if kind == 3:
        return RateLimit(name=name, actions=acts, rate=draw(st.sampled_from([1.0, 5.0])),
                         hard_cap=draw(st.sampled_from([10.0, 100.0])))
    if kind == 4:
        return NewcomerQuarantine(name=name, actions=acts, bandwidth=draw(st.sampled_from([100.0, 1e6])))
    if kind == 5:
        return AllowAll(name=name, actions=acts)
    if kind == 6:
        return DenyAll(name=name, actions=acts)
    if kind == 7:
        return DenyEquivocators(name=name, actions=acts)
    if kind == 8:
        return AllowAddrs(name=name, actions=acts, ranges=["10.0.0.0/8"])
    if kind == 9:
        return DenyAddrs(name=name, actions=acts, ranges=["10.1.0.0/16"])
    if kind == 10:
        return Anchors(name=name, actions=acts, peers=peers)
    if kind == 11:
        return MaxContentSize(name=name, max_bytes=100)
    return PublisherTrust(name=name, min_trust=0.1)


@st.composite
def chains(draw):
    n = draw(st.integers(0, 8))
    return [_random_rule(draw, i) for i in range(n)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=chains(), action=st.sampled_from(list(Action)), default=st.sampled_from(["allow", "deny"]),
       peer=st.sampled_from(PEERS[:5]), gt=st.sampled_from([0.0, 0.2, 0.9]), eq=st.booleans(),
       addr=st.sampled_from([None, "10.1.2.3", "10.2.0.1", "8.8.8.8"]), rr=st.sampled_from([0.0, 50.0]))
def test_explain_agrees_with_decide_and_the_semantics(rules, action, default, peer, gt, eq, addr, rr):
    p = Policy(rules, default=default)
    c = Context(peer, action, global_trust=gt, peer_addr=addr, proven_equivocation=eq, requests_recent=rr,
                content_size=500, publisher=B, publisher_trust=gt, now=NOW)
    d = p.decide(c)
    outcome, steps = p.dry_run(c)
    assert outcome == d
    # Reference semantics, written independently of the engine.
    applicable = [r for r in rules if action in r.applies_to]
    answers = {r.name: r.evaluate(c) for r in applicable}
    for r in applicable:
        if r.deny_list and answers[r.name] is not None:
            assert d.verdict is DENY
    deny_hits = [r for r in applicable if r.deny_list and answers[r.name] is not None]
    if deny_hits:
        assert d == answers[deny_hits[0].name]
        return
    limit = None
    for r in applicable:
        a = answers[r.name]
        if r.deny_list or a is None:
            continue
        if a.verdict is DENY:
            assert d == a
            return
        if a.verdict is ALLOW:
            assert d == (limit or a)
            return
        limit = a if limit is None else combine_limits(limit, a)
    if limit is not None and default == "allow":
        assert d == limit
    else:
        assert d.rule == "default" and d.verdict.value == default


# -- rate tracking ------------------------------------------------------------------------------


def test_rate_tracker_measures_a_steady_rate():
    t = RateTracker(window=1.0)
    now = 1000.0
    for _ in range(50):  # 10 per second for 5 seconds
        now += 0.1
        r = t.hit("p", now)
    assert 9.0 <= r <= 11.0
    assert 9.0 <= t.rate("p", now) <= 11.0
    assert t.rate("p", now + 1.5) < r  # decays once requests stop
    assert t.rate("p", now + 2.5) == 0.0
    assert t.rate("unknown", now) == 0.0


def test_rate_tracker_bytes_clock_skew_and_eviction():
    t = RateTracker(window=2.0, max_keys=2)
    assert t.hit("a", 10.0, amount=4000) == 2000.0
    assert t.hit("a", 9.0) > 0  # clock went backwards: counted, nothing reset
    t.hit("b", 10.0)
    t.hit("a", 10.1)  # a is now the most recently used
    t.hit("c", 10.2)  # evicts b, the least recently used
    assert len(t) == 2 and t.rate("b", 10.2) == 0.0 and t.rate("a", 10.2) > 0
    assert t.prune(100.0) == 2 and len(t) == 0
    for bad in (math.nan, math.inf, "now"):
        with pytest.raises(ValueError):
            t.hit("a", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        t.hit("a", 1.0, amount=-1)
    with pytest.raises(ValueError):
        RateTracker(window=0)


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.floats(0.0, 1.5), min_size=1, max_size=60), window=st.sampled_from([0.5, 1.0, 3.0]))
def test_rate_tracker_stays_within_the_window_bounds(gaps, window):
    """The estimate lies between the count in the current slot and the count in the last two slots."""
    t = RateTracker(window=window)
    now = 5000.0
    times = []
    for g in gaps:
        now += g
        times.append(now)
        est = t.hit("p", now)
        slot_start = math.floor(now / window) * window
        inside = sum(1 for x in times if x >= slot_start)
        two = sum(1 for x in times if x >= slot_start - window)
        assert inside / window - 1e-9 <= est <= two / window + 1e-9


def test_token_buckets():
    b = TokenBuckets(max_keys=10)
    assert all(b.take("p", 0.0, rate=2.0, burst=3) for _ in range(3))
    assert not b.take("p", 0.0, rate=2.0, burst=3)
    assert b.take("p", 0.5, rate=2.0, burst=3)  # one token back after 0.5 s
    assert not b.take("p", 0.4, rate=2.0, burst=3)  # time going backwards refills nothing
    assert b.take("q", 0.0, rate=1e6, amount=500_000)  # bandwidth: bytes as tokens
    with pytest.raises(ValueError):
        b.take("p", 1.0, rate=0)
