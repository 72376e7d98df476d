"""Policy plugins: loading (entry points, module:Class), the fail-closed guard, and the example plugin."""
from __future__ import annotations

import itertools
import math
import sys
import textwrap
import time
from pathlib import Path

import pytest

from policy import (ENTRY_POINT_GROUP, Action, Context, Decision, GuardedRule, PluginError, Policy, RuleConfigError, Verdict, available_plugins, resolve_plugin, validate)
from policy.rules import AllowAll, DenyPeers
from trust.peerid import peer_id_from_public_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGINS = REPO / "examples" / "plugins"
A, B = (peer_id_from_public_key(bytes([i]) * 32) for i in (1, 2))
ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT
NOW = 1_700_000_000.0  # Tuesday 2023-11-14 22:13:20 UTC
_counter = itertools.count()


def ctx(**kw) -> Context:
    return Context(**{"peer_id": A, "action": Action.SERVE_REQUEST, "now": NOW, **kw})


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    """Write a plugin module into a fresh folder on sys.path; returns its (unique) module name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"vn_test_plugin_{next(_counter)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name
    yield write
    for mod in [m for m in sys.modules if m.startswith("vn_test_plugin_")]:
        del sys.modules[mod]


PLUGIN = """
from policy import Action, Decision, Verdict

class Echo:
    name = "echo"
    applies_to = frozenset({Action.SERVE_REQUEST, Action.RELAY_GOSSIP})

    def __init__(self, answer):
        self.answer = answer

    @classmethod
    def from_config(cls, options):
        return cls(options.get("answer", "allow"))

    def evaluate(self, ctx):
        if self.answer == "none":
            return None
        return Decision(Verdict(self.answer), "echo says\\nso", "impostor",
                        rate=1.0 if self.answer == "limit" else None)
"""


class Plugin:
    """A plugin object for programmatic policies; `fn` decides."""

    def __init__(self, fn, name="plug", actions=frozenset(Action), deny_list=False):
        self.fn, self.name, self.applies_to, self.deny_list = fn, name, actions, deny_list
        self.calls = 0

    def evaluate(self, c):
        self.calls += 1
        return self.fn(c)


# -- loading ------------------------------------------------------------------------------------


def test_module_class_plugin_from_a_policy_file(plugin_module):
    mod = plugin_module(PLUGIN)
    text = f'''[policy]
default = "deny"

[[rule]]
type = "plugin"
plugin = "{mod}:Echo"
actions = ["serve_request"]
budget_ms = 50
answer = "allow"
'''
    policy, errs = validate(text, "p.toml")
    assert errs == []
    (rule,) = policy.rules
    assert isinstance(rule, GuardedRule) and rule.name == "echo" and rule.budget == 0.05
    assert rule.applies_to == {Action.SERVE_REQUEST}  # narrowed by the file
    d = policy.decide(ctx())
    # The engine stamps its own rule name and keeps the reason on one printable line.
    assert (d.verdict, d.rule, d.reason) == (ALLOW, "echo", "echo says?so")
    assert policy.decide(ctx(action=Action.RELAY_GOSSIP)).rule == "default"


def test_plugin_configuration_errors_have_lines(plugin_module):
    mod = plugin_module(PLUGIN + """
from policy import Problem, RuleConfigError

class Strict(Echo):
    @classmethod
    def from_config(cls, options):
        raise RuleConfigError([Problem(("answer",), "not an answer", '"allow" or "deny"')])

class Broken(Echo):
    @classmethod
    def from_config(cls, options):
        raise ValueError("cannot work like this")

class NotARule:
    @classmethod
    def from_config(cls, options):
        return 42
    def evaluate(self, ctx):
        return None

class BadActions(Echo):
    applies_to = "serve_request"
""")
    text = f'''[policy]
default = "deny"

[[rule]]
type = "plugin"
plugin = "{mod}:Strict"
answer = "perhaps"

[[rule]]
type = "plugin"
plugin = "{mod}:Broken"

[[rule]]
type = "plugin"
plugin = "{mod}:Echo"
actions = ["accept_head"]

[[rule]]
type = "plugin"
plugin = "{mod}:NotARule"

[[rule]]
type = "plugin"
plugin = "{mod}:BadActions"

[[rule]]
type = "plugin"
plugin = "{mod}:Missing"

[[rule]]
type = "plugin"
plugin = "no_such_entry_point"

[[rule]]
type = "plugin"
plugin = "{mod}:Echo"
budget_ms = 0
'''
    policy, errs = validate(text)
    assert policy is None
    got = [(e.line, e.path, e.problem) for e in errs]
    assert got[0][:2] == (7, "rule[0].answer")
    assert got[1][:2] == (9, "rule[1]") and "cannot work like this" in got[1][2]
    assert got[2][:2] == (16, "rule[2].actions") and "does not handle accept_head" in got[2][2]
    assert got[3][:2] == (20, "rule[3].plugin") and "no evaluate" in got[3][2]
    assert got[4][:2] == (24, "rule[4].plugin") and "applies_to" in got[4][2]
    assert got[5][:2] == (28, "rule[5].plugin") and "has no attribute 'Missing'" in got[5][2]
    assert got[6][:2] == (32, "rule[6].plugin") and "no plugin named 'no_such_entry_point'" in got[6][2]
    assert got[7][:2] == (37, "rule[7].budget_ms")
    assert len(got) == 8


def test_resolve_rejects_bad_references():
    for ref in ("os:system", "json:JSONDecoder", "not a ref", "a:b:c", "../x:Y", 42):
        with pytest.raises(PluginError):
            resolve_plugin(ref)  # type: ignore[arg-type]


def test_entry_point_plugin(tmp_path, monkeypatch):
    dist = tmp_path / "vouchnet_example_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vouchnet-example-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nbusiness_hours = business_hours:BusinessHours\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    assert available_plugins()["business_hours"] == "business_hours:BusinessHours"
    policy, errs = validate('[policy]\ndefault = "allow"\n[[rule]]\ntype = "plugin"\nplugin = "business_hours"\n'
                            'outside = "deny"\n')
    assert errs == []
    saturday_noon = 1_700_308_800.0  # Sat 2023-11-18 12:00 UTC
    d = policy.decide(ctx(now=saturday_noon))
    assert (d.verdict, d.rule) == (DENY, "business_hours")
    _, errs = validate('[policy]\ndefault = "allow"\n[[rule]]\ntype = "plugin"\nplugin = "business_hourz"\n')
    assert "installed: business_hours" in errs[0].problem


# -- the guard: plugins fail closed -------------------------------------------------------------


def test_a_raising_plugin_denies_and_the_engine_does_not_raise():
    def boom(c):
        raise ZeroDivisionError("division by zero in plugin")
    p = Policy([Plugin(boom)], default="allow")
    d = p.decide(ctx())
    assert d.verdict is DENY and d.rule == "plug"
    assert "raised ZeroDivisionError: division by zero in plugin" in d.reason

    def leave(c):
        raise SystemExit(1)
    assert Policy([Plugin(leave)], default="allow").decide(ctx()).verdict is DENY

    def interrupt(c):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):  # the operator's Ctrl-C is not swallowed
        Policy([Plugin(interrupt)]).decide(ctx())


def test_a_slow_plugin_denies():
    def slow(c):
        time.sleep(0.03)
        return Decision(ALLOW, "eventually", "slow")
    p = Policy([Plugin(slow)], default="allow", plugin_budget=0.005)
    d = p.decide(ctx())
    assert d.verdict is DENY and "exceeded its time budget" in d.reason and "> 5 ms" in d.reason


def test_budget_is_measured_with_the_injected_clock():
    ticks = iter([0.0, 0.004, 1.0, 1.0061])
    p = Policy([Plugin(lambda c: Decision(ALLOW, "ok", "x"))], default="deny", plugin_budget=0.005,
               clock=lambda: next(ticks))
    assert p.decide(ctx()).verdict is ALLOW  # 4 ms: within budget
    assert p.decide(ctx()).verdict is DENY  # 6.1 ms: over


class Weird(Decision):
    pass


GARBAGE = [
    "allow",
    {"verdict": "allow"},
    True,
    Weird(ALLOW, "subclass", "x"),
    Decision(LIMIT, "nan rate", "x", rate=math.nan),
    Decision(LIMIT, "negative bandwidth", "x", bandwidth=-5.0),
    Decision(LIMIT, "infinite rate", "x", rate=math.inf),
]


@pytest.mark.parametrize("answer", GARBAGE, ids=lambda a: type(a).__name__ + ":" + str(a)[:20])
def test_garbage_answers_deny(answer):
    p = Policy([Plugin(lambda c: answer)], default="allow")
    d = p.decide(ctx())
    assert d.verdict is DENY and d.rule == "plug", d


def test_forged_decision_fields_deny():
    forged = Decision(ALLOW, "ok", "x")
    object.__setattr__(forged, "verdict", "allow")  # bypasses __post_init__
    assert Policy([Plugin(lambda c: forged)], default="allow").decide(ctx()).verdict is DENY
    forged = Decision(ALLOW, "ok", "x")
    object.__setattr__(forged, "reason", b"bytes")
    assert Policy([Plugin(lambda c: forged)], default="allow").decide(ctx()).verdict is DENY


def test_a_deny_list_plugin_may_only_deny():
    liar = Plugin(lambda c: Decision(ALLOW, "let me in", "x"), deny_list=True)
    p = Policy([AllowAll(actions=list(Action)), liar], default="allow")
    d = p.decide(ctx())
    assert d.verdict is DENY and "deny-list rule but returned allow" in d.reason
    blocker = Plugin(lambda c: Decision(DENY, "blocked", "x") if c.peer_id == B else None, deny_list=True)
    p = Policy([AllowAll(actions=list(Action)), blocker], default="allow")
    assert p.decide(ctx(peer_id=B)).verdict is DENY and blocker.calls == 1
    assert p.decide(ctx()).verdict is ALLOW


def test_plugin_limits_are_cleaned_and_combined():
    plug = Plugin(lambda c: Decision(LIMIT, "slow down", "whatever", rate=3, bandwidth=100))
    p = Policy([plug], default="allow")
    d = p.decide(ctx())
    assert (d.verdict, d.rate, d.bandwidth, d.rule) == (LIMIT, 3.0, 100.0, "plug")
    assert type(d.rate) is float


def test_breaker_switches_a_failing_plugin_off_then_retries():
    state = {"fail": True}

    def flaky(c):
        if state["fail"]:
            raise RuntimeError("backend down")
        return Decision(ALLOW, "fine", "x")
    plug = Plugin(flaky)
    p = Policy([plug], default="allow", plugin_trip_after=3, plugin_trip_seconds=60)
    for _ in range(3):
        assert p.decide(ctx()).verdict is DENY
    assert plug.calls == 3
    d = p.decide(ctx(now=NOW + 30))
    assert d.verdict is DENY and "disabled after 3 consecutive failures" in d.reason and "backend down" in d.reason
    assert plug.calls == 3  # not called while switched off
    state["fail"] = False
    assert p.decide(ctx(now=NOW + 61)).verdict is ALLOW
    assert plug.calls == 4 and p.rules[0].failures == 0


def test_plugin_anchors_and_hostile_anchor_lists():
    class Anch(Plugin):
        def anchor_peers(self):
            return [B, 7, A]

    class Bad(Plugin):
        def anchor_peers(self):
            raise RuntimeError("no")
    p = Policy([Anch(lambda c: None, name="a"), Bad(lambda c: None, name="b")])
    assert p.anchor_peers() == (B, A)


def test_subclasses_of_built_in_rules_are_guarded_too():
    from policy.rules import RateLimit

    class Sneaky(RateLimit):
        def evaluate(self, c):
            time.sleep(0.02)
            return Decision(ALLOW, "ok", self.name)
    p = Policy([Sneaky(rate=1.0), RateLimit(name="real", rate=1.0)], default="allow")
    assert isinstance(p.rules[0], GuardedRule) and not isinstance(p.rules[1], GuardedRule)
    assert "time budget" in p.decide(ctx()).reason


def test_deny_list_beats_plugin_allow_and_explain_shows_plugins():
    plug = Plugin(lambda c: Decision(ALLOW, "yes", "x"))
    p = Policy([plug, DenyPeers(peers=[A])], default="allow")
    assert p.decide(ctx()).rule == "deny_peers"
    assert [(n, d.verdict) for n, d in p.explain(ctx())] == [("deny_peers", DENY), ("plug", ALLOW)]


# -- the example plugin -------------------------------------------------------------------------


@pytest.fixture
def business_hours(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGINS))
    import business_hours as mod
    return mod.BusinessHours


TUESDAY_10 = 1_699_956_000.0  # Tue 2023-11-14 10:00 UTC
TUESDAY_20 = TUESDAY_10 + 10 * 3600
SATURDAY_10 = TUESDAY_10 + 4 * 86400


def test_business_hours_plugin(business_hours):
    r = business_hours.from_config({})
    assert r.evaluate(ctx(now=TUESDAY_10)) is None
    d = r.evaluate(ctx(now=TUESDAY_20))
    assert (d.verdict, d.rate) == (LIMIT, 1.0)
    assert r.evaluate(ctx(now=SATURDAY_10)).verdict is LIMIT
    assert r.evaluate(ctx(now=TUESDAY_10 - 2 * 3600 - 1)).verdict is LIMIT  # 07:59:59
    assert r.evaluate(ctx(now=TUESDAY_10 - 2 * 3600)) is None  # 08:00
    strict = business_hours.from_config({"outside": "deny", "exempt_global": 0.01, "utc_offset_hours": -10})
    assert strict.evaluate(ctx(now=TUESDAY_20)) is None  # 10:00 local
    assert strict.evaluate(ctx(now=TUESDAY_10)).verdict is DENY  # 00:00 local
    assert strict.evaluate(ctx(now=TUESDAY_10, global_trust=0.02)) is None  # trusted: hours do not matter
    weekend = business_hours.from_config({"weekdays": [5, 6]})
    assert weekend.evaluate(ctx(now=SATURDAY_10)) is None


def test_business_hours_options_are_validated(business_hours):
    with pytest.raises(RuleConfigError) as info:
        business_hours.from_config({"start_hour": 25, "weekdays": [1, 9], "outside": "maybe", "color": "red",
                                    "rate": 0})
    assert {p.path for p in info.value.problems} == {("start_hour",), ("weekdays", 1), ("outside",), ("color",),
                                                     ("rate",)}
    with pytest.raises(RuleConfigError, match="after start_hour"):
        business_hours.from_config({"start_hour": 18, "end_hour": 8})


def test_business_hours_in_a_policy_file_and_fast(business_hours):
    text = '''[policy]
default = "allow"

[[rule]]
type = "plugin"
plugin = "business_hours:BusinessHours"
weekdays = [0, 1, 2, 3, 4, 9]
'''
    policy, errs = validate(text)
    assert [(e.line, e.path) for e in errs] == [(7, "rule[0].weekdays[5]")]
    policy, errs = validate(text.replace(", 9]", "]"))
    assert errs == [] and policy.decide(ctx(now=TUESDAY_20)).verdict is LIMIT
    assert policy.decide(ctx(now=TUESDAY_10)).verdict is ALLOW
    rule = business_hours.from_config({})
    t0 = time.perf_counter()
    for i in range(1000):
        rule.evaluate(ctx(now=TUESDAY_10 + i * 60))
    assert (time.perf_counter() - t0) / 1000 < 0.005 / 10  # a tenth of the default budget, with room to spare
