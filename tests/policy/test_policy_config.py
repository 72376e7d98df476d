"""Policy files: every error reported with its line, fuzzed input never crashes the validator,
and the shipped example policies validate and behave as their comments say."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy import (DEFAULT_POLICY, Action, Context, Decision, Policy, Verdict, default_policy, load_policy,
                    parse_policy, validate)
from policy.rules import BUILTIN_RULES, COMMON_FIELDS
from trust.errors import ConfigError
from trust.peerid import peer_id_from_public_key

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "policies"
PEERS = [peer_id_from_public_key(bytes([i]) * 32) for i in range(1, 9)]
A, B, C, D, E = PEERS[:5]
ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT
NOW = 1_700_000_000.0


def problems(text: str) -> list[tuple[int | None, str, str, str]]:
    policy, errs = validate(text, "t.toml")
    return [(e.line, e.path, e.problem, e.severity) for e in errs]


def only_errors(text: str):
    return [p for p in problems(text) if p[3] == "error"]


def line_of(text: str, needle: str, nth: int = 0) -> int:
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return hits[nth]


# -- a valid file -------------------------------------------------------------------------------


def test_valid_file_builds_a_policy():
    text = f"""
[policy]
default = "deny"
plugin_budget_ms = 2.5

[policy.defaults]
choose_provider = "allow"

[[rule]]
type = "min_trust"
actions = ["serve_request"]
min_global = 0.01
on_pass = "allow"

[[rule]]
type = "deny_peers"
peers = ["{A}"]
"""
    policy, errs = validate(text, "ok.toml")
    assert errs == []
    assert isinstance(policy, Policy) and policy.source == "ok.toml" and len(policy.digest) == 64
    assert [r.name for r in policy.rules] == ["min_trust", "deny_peers"]
    assert policy.default_for("choose_provider") is ALLOW and policy.default_for("serve_request") is DENY
    c = Context(B, Action.SERVE_REQUEST, global_trust=0.02, now=NOW)
    assert policy.decide(c).verdict is ALLOW
    assert policy.decide(Context(A, Action.SERVE_REQUEST, global_trust=0.02, now=NOW)).verdict is DENY
    assert parse_policy(text.encode()).decide(c).verdict is ALLOW


# -- every kind of error, with its line ---------------------------------------------------------


BAD = f"""\
[policy]
default = "maybe"
defualt = "allow"

[policy.defaults]
teleport = "allow"

[[rule]]
type = "frobnicate"

[[rule]]
type = "min_trust"
actions = ["serve_request", "dance"]
min_globl = 0.01
min_local = "high"

[[rule]]
type = "deny_peers"
peers = [
    "{A}",
    "12D3KooWtypo",
    "{A}",
]

[[rule]]
type = "allow_addrs"
actions = ["inbound_connection"]
ranges = ["10.0.0.0/8", "192.168.1.1/24", "10.2.0.0/16"]

[[rule]]
type = "allow"
actions = ["serve_request"]

[[rule]]
type = "rate_limit"
actions = ["serve_request"]
rate = 5.0

[[rule]]
type = "max_content_size"
actions = []
max_bytes = 10
"""


def test_every_error_is_reported_with_line_path_and_expectation():
    _, errs = validate(BAD, "bad.toml")
    got = {(e.line, e.path): e for e in errs}
    expect = {
        (2, "policy.default"): '"allow" or "deny"',
        (3, "policy.defualt"): "one of: default, defaults",
        (6, "policy.defaults.teleport"): "one of inbound_connection",
        (9, "rule[0].type"): "one of: min_trust",
        (13, "rule[1].actions[1]"): "actions from",
        (14, "rule[1].min_globl"): "one of: name, actions, min_local",
        (15, "rule[1].min_local"): "a number from 0 to 1",
        (21, "rule[2].peers[1]"): "peer IDs",
        (22, "rule[2].peers[2]"): "each peer once",
        (28, "rule[3].ranges[1]"): "CIDR ranges",
        (34, "rule[5]"): "before the catch-all",
        (41, "rule[6].actions"): "at least one action",
    }
    for key, expected in expect.items():
        assert key in got, f"missing {key}; got {sorted(got)}"
        assert expected in got[key].expected, (key, got[key])
        assert got[key].severity == "error"
    assert "unknown rule type 'frobnicate'" in got[(9, "rule[0].type")].problem
    assert "12 characters" in got[(21, "rule[2].peers[1]")].problem
    assert "did you mean 192.168.1.0/24" in got[(28, "rule[3].ranges[1]")].problem
    assert "unreachable: rule allow always decides serve_request" in got[(34, "rule[5]")].problem
    # Overlap within one rule is found even though another range of the same rule is invalid.
    assert any(e.path == "rule[3].ranges[2]" and "overlaps 10.0.0.0/8" in e.problem for e in errs)
    s = str(got[(21, "rule[2].peers[1]")])
    assert s.startswith("bad.toml:21: error: rule[2].peers[1]: ") and "(expected " in s
    assert [e.line for e in errs] == sorted(e.line for e in errs)


def test_syntax_error_has_its_line():
    text = '[policy]\ndefault = "allow"\n\n[[rule]]\ntype = deny_equivocators\n'
    (err,) = problems(text)
    assert err[0] == 5 and "TOML syntax error" in err[2]


def test_overlaps_between_allow_and_deny_lists():
    text = f"""
[policy]
default = "deny"

[[rule]]
type = "allow_addrs"
ranges = ["10.0.0.0/8", "2001:db8::/32"]

[[rule]]
type = "deny_addrs"
ranges = ["192.168.0.0/16",
          "10.9.0.0/16"]

[[rule]]
type = "deny_addrs"
name = "other-actions"
actions = ["relay_gossip"]
ranges = ["2001:db8:1::/48"]

[[rule]]
type = "allow_peers"
actions = ["serve_request"]
peers = ["{A}", "{B}"]

[[rule]]
type = "deny_peers"
peers = ["{C}", "{B}"]
"""
    errs = only_errors(text)
    paths = {(line, path) for line, path, _, _ in errs}
    assert (line_of(text, '"10.9.0.0/16"'), "rule[1].ranges[1]") in paths
    assert (line_of(text, 'peers = ["12D3', 1), "rule[4].peers[1]") in paths
    # 2001:db8:1::/48 overlaps the allowed 2001:db8::/32 and both rules cover relay_gossip.
    assert any(path == "rule[2].ranges[0]" for _, path, _, _ in errs)
    assert len(errs) == 3
    # Overlap across rules that share no action is fine.
    text2 = text.replace('type = "allow_addrs"\n', 'type = "allow_addrs"\nactions = ["inbound_connection"]\n')
    text2 = text2.replace('type = "deny_addrs"\nranges', 'type = "deny_addrs"\nactions = ["outbound_dial"]\nranges')
    assert len(only_errors(text2)) == 1  # only the peer overlap is left
    # A publisher-only deny list and a peer allow list never look at the same ID.
    deny_list = f'peers = ["{C}", "{B}"]'
    text3 = text2.replace(deny_list, deny_list + '\nmatch = "publisher"')
    assert only_errors(text3) == []


def test_reachability():
    base = '[policy]\ndefault = "deny"\n'
    # Deny lists after a catch-all are still reachable: they run first.
    ok = base + ('[[rule]]\ntype = "allow"\nactions = ["serve_request"]\n'
                 f'[[rule]]\ntype = "deny_peers"\npeers = ["{A}"]\n')
    assert only_errors(ok) == []
    # A min_trust that allows on pass decides everything: what follows it is dead.
    dead = base + ('[[rule]]\ntype = "min_trust"\nactions = ["serve_request"]\nmin_global = 0.1\non_pass = "allow"\n'
                   '[[rule]]\ntype = "rate_limit"\nrate = 1.0\n')
    ((line, path, problem, _),) = only_errors(dead)
    assert (line, path) == (8, "rule[1]") and "min_trust" in problem
    # Partly dead: a warning, the policy is still accepted.
    partly = base + ('[[rule]]\ntype = "deny"\nactions = ["relay_gossip"]\n'
                     '[[rule]]\ntype = "rate_limit"\nactions = ["serve_request", "relay_gossip"]\nrate = 1.0\n')
    policy, errs = validate(partly)
    assert policy is not None
    assert [(e.severity, e.path) for e in errs] == [("warning", "rule[1].actions")]


def test_names_are_unique_and_generated():
    text = ('[policy]\ndefault = "allow"\n'
            '[[rule]]\ntype = "rate_limit"\nrate = 1.0\n'
            '[[rule]]\ntype = "rate_limit"\nname = "rate_limit#2"\nrate = 2.0\n'
            '[[rule]]\ntype = "rate_limit"\nrate = 3.0\n'
            '[[rule]]\ntype = "deny_equivocators"\nname = "x"\n'
            '[[rule]]\ntype = "deny_equivocators"\nname = "x"\n')
    errs = only_errors(text)
    assert [(line, path) for line, path, _, _ in errs] == [(18, "rule[4].name")]
    policy, _ = validate(text.rsplit("[[rule]]", 1)[0])
    assert [r.name for r in policy.rules] == ["rate_limit", "rate_limit#2", "rate_limit#3", "x"]
    assert "bad rule name" in only_errors('[policy]\ndefault="allow"\n[[rule]]\ntype="deny_equivocators"\nname="a b"\n')[0][2]


def test_structure_errors():
    errs = only_errors('[policy]\ndefault = "allow"\n[rule]\ntype = "allow"\n')
    assert errs[0][1] == "rule" and errs[0][0] == 3
    errs = only_errors('[policy]\ndefault = "allow"\n\n[polcy]\nx = 1\n')
    assert (errs[0][0], errs[0][1]) == (4, "polcy")
    errs = only_errors('policy = 3\n')
    assert errs[0][1] == "policy"
    errs = only_errors('[policy]\ndefault = "allow"\n[[rule]]\nname = "no-type"\n')
    assert errs[0][:2] == (3, "rule[0]") and "missing key type" in errs[0][2]
    errs = only_errors('[policy]\ndefault = "allow"\n[[rule]]\ntype = "deny_equivocators"\nbudget_ms = 3\n')
    assert errs[0][:2] == (5, "rule[0].budget_ms")
    errs = only_errors('[policy]\nplugin_budget_ms = 0\nplugin_trip_after = 1.5\n'
                       'plugin_trip_seconds = -1\ndefault = "allow"\n')
    assert [e[:2] for e in errs] == [(2, "policy.plugin_budget_ms"), (3, "policy.plugin_trip_after"),
                                     (4, "policy.plugin_trip_seconds")]


def test_types_are_strict():
    tmpl = '[policy]\ndefault = "allow"\n[[rule]]\ntype = "rate_limit"\nrate = {}\n'
    for bad in ("true", '"5"', "inf", "nan", "-1.0", "0", "[1]", "{ a = 1 }", "1979-05-27"):
        errs = only_errors(tmpl.format(bad))
        assert [(e[0], e[1]) for e in errs] == [(5, "rule[0].rate")], bad
    assert only_errors(tmpl.format("5")) == []  # an integer is a fine number


def test_missing_default_is_a_warning():
    policy, errs = validate('[[rule]]\ntype = "deny_equivocators"\n')
    assert policy is not None and policy.default is DENY
    assert [e.severity for e in errs] == ["warning"]
    policy, errs = validate('[policy]\nplugin_budget_ms = 1\n')
    assert policy is not None and [e.severity for e in errs] == ["warning"]
    policy, errs = validate(f'[policy]\ndefault = "allow"\n[[rule]]\ntype = "deny_peers"\npeers = []\n')
    assert policy is not None and [(e.severity, e.line, e.path) for e in errs] == [("warning", 5, "rule[0].peers")]


def test_line_scanner_handles_multiline_strings_quoted_and_dotted_keys():
    text = f'''[policy]
default = "deny"

[[rule]]
type = "deny"
actions = ["relay_gossip"]
reason = """no gossip:
[[rule]]
type = "not a rule header"
"""

[[rule]]
"type" = "allow_peers"
'peers' = ["{A}",
           "bogus"]
'''
    errs = only_errors(text)
    # The reason is refused (a newline is not printable); the fake header inside it is not counted.
    assert [(e[0], e[1]) for e in errs] == [(7, "rule[0].reason"), (15, "rule[1].peers[1]")]
    assert only_errors(text.replace('reason = """no gossip:\n[[rule]]\ntype = "not a rule header"\n"""',
                                    'reason = "x"')) == [(12, "rule[1].peers[1]", errs[1][2], "error")]


def test_inline_rule_array_still_reports():
    errs = only_errors('rule = [{ type = "rate_limit", rate = -1 }]\n[policy]\ndefault = "allow"\n')
    assert [(e[0], e[1]) for e in errs] == [(1, "rule[0].rate")]
    # Written under [policy], it is policy.rule: an unknown key there.
    errs = only_errors('[policy]\ndefault = "allow"\nrule = [{ type = "rate_limit", rate = -1 }]\n')
    assert [(e[0], e[1]) for e in errs] == [(3, "policy.rule")]


def test_files_bytes_and_sizes(tmp_path):
    with pytest.raises(ConfigError, match=r"t\.toml:2: error: policy\.default"):
        parse_policy('[policy]\ndefault = 1\n', "t.toml")
    f = tmp_path / "p.toml"
    f.write_text('[policy]\ndefault = "allow"\n')
    assert load_policy(f).default is ALLOW
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy(tmp_path / "missing.toml")
    assert "not UTF-8" in problems(b"\xff\xfe")[0][2]
    assert "larger than" in problems("#" * (300 * 1024))[0][2]
    assert "a policy is text" in problems(None)[0][2]  # type: ignore[arg-type]
    assert "too deeply" in problems("x = " + "[" * 5000 + "]" * 5000)[0][2]


# -- fuzzing: the validator never raises --------------------------------------------------------


def _check_total(text):
    policy, errs = validate(text, "fuzz")
    assert isinstance(errs, list)
    assert not any("internal error" in e.problem for e in errs), [str(e) for e in errs]
    if policy is not None:
        c = Context(A, Action.SERVE_REQUEST, peer_addr="10.0.0.1", content_size=5, publisher=B,
                    publisher_trust=0.1, now=NOW)
        for action in Action:
            assert isinstance(policy.decide(Context(A, action, now=NOW)), Decision)
        assert isinstance(policy.decide(c), Decision)
    return policy, errs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_fuzz_random_text(text):
    _check_total(text)


EXAMPLE_TEXTS = [p.read_text() for p in sorted(EXAMPLES.glob("*.toml"))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), base=st.sampled_from(EXAMPLE_TEXTS))
def test_fuzz_mutated_valid_configs(data, base):
    text = base
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["delete", "insert", "replace-value", "dup-line", "swap-token"]))
        pos = data.draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:pos] + text[pos + data.draw(st.integers(1, 40)):]
        elif op == "insert":
            text = text[:pos] + data.draw(st.text(alphabet='[]{}"\'=.,#\n 0123456789abcdefx-:/', max_size=12)) + text[pos:]
        elif op == "replace-value":
            lines = text.splitlines()
            idx = [i for i, ln in enumerate(lines) if "=" in ln]
            if idx:
                i = data.draw(st.sampled_from(idx))
                value = data.draw(st.sampled_from(['-1', '1e400', 'nan', 'true', '"x"', '[]', '[1, "a"]', '{}',
                                                   '"serve_request"', '["teleport"]', '0.5', '"10.0.0.0/8"',
                                                   '["::/0", "0.0.0.0/0"]', f'["{A}", "{A}"]', '"plugin"',
                                                   '1979-05-27T07:32:00Z', '"allow"', '18446744073709551616']))
                lines[i] = lines[i].split("=", 1)[0] + "= " + value
                text = "\n".join(lines)
        elif op == "dup-line":
            lines = text.splitlines()
            if lines:
                i = data.draw(st.integers(0, len(lines) - 1))
                lines.insert(data.draw(st.integers(0, len(lines))), lines[i])
                text = "\n".join(lines)
        else:
            text = re.sub(r"\b(allow|deny|serve_request|anchors|min_trust|rate_limit|actions|peers)\b",
                          lambda m: data.draw(st.sampled_from(["allow", "deny", "limit", "serve_request", "x",
                                                               "anchors", "min_trust", "peers", "actions"])),
                          text, count=2)
    _check_total(text)


_KEYS = sorted({k for cls in BUILTIN_RULES.values() for k in cls.fields} | set(COMMON_FIELDS)
               | {"type", "plugin", "budget_ms", "bogus"})
_SCALARS = st.one_of(
    st.integers(-3, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
    st.sampled_from([a.value for a in Action] + list(BUILTIN_RULES) + [A, B, "10.0.0.0/8", "10.0.0.0/16", "::/0",
                    "300.1.1.1/8", "any", "all", "allow", "abstain", "publisher", "12D3KooW", ""]),
    st.text(max_size=10))
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=4))


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


@st.composite
def toml_docs(draw):
    out = []
    if draw(st.booleans()):
        out.append("[policy]")
        for key in draw(st.lists(st.sampled_from(["default", "plugin_budget_ms", "plugin_trip_after",
                                                  "plugin_trip_seconds", "other"]), unique=True, max_size=4)):
            out.append(f"{key} = {_toml_value(draw(_VALUES))}")
        if draw(st.booleans()):
            out.append("[policy.defaults]")
            for key in draw(st.lists(st.sampled_from([a.value for a in Action] + ["x"]), unique=True, max_size=3)):
                out.append(f"{key} = {_toml_value(draw(st.sampled_from(['allow', 'deny', 'limit', 1])))}")
    for _ in range(draw(st.integers(0, 5))):
        out.append("[[rule]]")
        out.append(f"type = {_toml_value(draw(st.sampled_from(list(BUILTIN_RULES) + ['plugin', 'nope'])))}")
        for key in draw(st.lists(st.sampled_from([k for k in _KEYS if k != "type"]), unique=True, max_size=5)):
            out.append(f"{key} = {_toml_value(draw(_VALUES))}")
    return "\n".join(out) + "\n"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(toml_docs())
def test_fuzz_structured_documents(text):
    _check_total(text)


# -- the shipped example policies ---------------------------------------------------------------


def load_example(name: str) -> Policy:
    policy, errs = validate((EXAMPLES / name).read_text(), name)
    assert errs == [], [str(e) for e in errs]
    return policy


def c(action: str, peer: str = E, **kw) -> Context:
    return Context(peer, Action(action), now=NOW, **kw)


def test_examples_all_validate_cleanly():
    assert {p.name for p in EXAMPLES.glob("*.toml")} >= {"open.toml", "cautious.toml", "allowlist-only.toml"}
    for p in EXAMPLES.glob("*.toml"):
        load_example(p.name)


def test_open_example_behaves_as_documented():
    p = load_example("open.toml")
    for action in Action:  # everything allowed ...
        assert p.decide(c(action.value)).verdict in (ALLOW, LIMIT)
        # ... except proven equivocators, everywhere
        assert p.decide(c(action.value, proven_equivocation=True)).verdict is DENY
    d = p.decide(c("serve_request", requests_recent=10))
    assert (d.verdict, d.rate) == (LIMIT, 100.0)
    assert p.decide(c("serve_request", requests_recent=501)).verdict is DENY
    assert p.decide(c("relay_gossip", requests_recent=10_000)).verdict is ALLOW
    # The built-in default policy is open.toml without the rate limit.
    dp = default_policy()
    assert "deny_equivocators" in DEFAULT_POLICY
    for action in Action:
        assert dp.decide(c(action.value)).verdict is ALLOW
        assert dp.decide(c(action.value, proven_equivocation=True)).verdict is DENY


CAUTIOUS_ANCHORS = [A, B]  # the two example anchor IDs in cautious.toml


def test_cautious_example_behaves_as_documented():
    p = load_example("cautious.toml")
    assert p.anchor_peers() == tuple(CAUTIOUS_ANCHORS)
    established = dict(interactions=100, first_seen=NOW - 10 * 86400)
    # Deny lists win for every action, even for anchors.
    for action in Action:
        assert p.decide(c(action.value, peer=A, proven_equivocation=True)).verdict is DENY
        assert p.decide(c(action.value, peer=A, peer_addr="192.0.2.7")).verdict is DENY
        assert p.decide(c(action.value, peer=B, peer_addr="2001:db8:dead::1")).verdict is DENY
        # Anchors are allowed for every action, without limits.
        assert p.decide(c(action.value, peer=B, peer_addr="198.51.100.1")).verdict is ALLOW
    # Anyone may connect and be dialled.
    assert p.decide(c("inbound_connection")).verdict is ALLOW
    assert p.decide(c("outbound_dial")).verdict is ALLOW
    # Serving: newcomers get 2 requests/s ...
    d = p.decide(c("serve_request"))
    assert (d.verdict, d.rate) == (LIMIT, 2.0)
    young = dict(interactions=100, first_seen=NOW - 3600)  # first seen under a day ago
    d = p.decide(c("serve_request", local_trust=0.002, **young))
    assert (d.verdict, d.rate) == (LIMIT, 2.0)
    assert p.decide(c("serve_request", **young)).verdict is DENY  # 20+ interactions, no trust: refused
    # ... unless vouched for (global trust >= 0.01): then the normal 50 requests/s.
    d = p.decide(c("serve_request", global_trust=0.01))
    assert (d.verdict, d.rate) == (LIMIT, 50.0)
    # Established peers below both minimums are refused; above either one, served at 50/s.
    assert p.decide(c("serve_request", local_trust=0.0005, global_trust=0.00005, **established)).verdict is DENY
    d = p.decide(c("serve_request", local_trust=0.002, **established))
    assert (d.verdict, d.rate) == (LIMIT, 50.0)
    d = p.decide(c("serve_request", global_trust=0.0002, **established))
    assert (d.verdict, d.rate) == (LIMIT, 50.0)
    # Above 200 requests/s: refused.
    assert p.decide(c("serve_request", requests_recent=201, global_trust=0.5, **established)).verdict is DENY
    # Gossip: relayed for everyone, newcomers limited to 2/s.
    d = p.decide(c("relay_gossip"))
    assert (d.verdict, d.rate) == (LIMIT, 2.0)
    assert p.decide(c("relay_gossip", **established)).verdict is ALLOW
    # Content: at most 1 GiB, publisher trust >= 0.001.
    assert p.decide(c("accept_content", publisher=D, publisher_trust=0.001, content_size=2**30)).verdict is ALLOW
    assert p.decide(c("accept_content", publisher=D, publisher_trust=0.5, content_size=2**30 + 1)).verdict is DENY
    assert p.decide(c("accept_content", publisher=D, publisher_trust=0.0009, content_size=10)).verdict is DENY
    # Attestations: only from issuers with global trust >= 0.001.
    assert p.decide(c("accept_attestation", publisher=D, publisher_trust=0.001)).verdict is ALLOW
    assert p.decide(c("accept_attestation", publisher=D, publisher_trust=0.0)).verdict is DENY
    # Providers and heads: from anyone.
    assert p.decide(c("choose_provider")).verdict is ALLOW
    assert p.decide(c("accept_head", publisher=D, publisher_trust=0.0)).verdict is ALLOW


def test_allowlist_only_example_behaves_as_documented():
    p = load_example("allowlist-only.toml")
    anchor, friends, stranger = A, [C, D], E
    assert p.anchor_peers() == (anchor,)
    for action in Action:
        if action is Action.ACCEPT_CONTENT:
            continue
        for peer in [anchor, *friends]:
            assert p.decide(c(action.value, peer=peer)).verdict is ALLOW, (action, peer)
            assert p.decide(c(action.value, peer=peer, proven_equivocation=True)).verdict is DENY
        assert p.decide(c(action.value, peer=stranger)).verdict is DENY
    # Content: judged by its publisher, whoever provided it.
    for publisher in [anchor, *friends]:
        assert p.decide(c("accept_content", peer=stranger, publisher=publisher)).verdict is ALLOW
    assert p.decide(c("accept_content", peer=anchor, publisher=stranger)).verdict is DENY
    assert p.decide(c("accept_content", peer=D, publisher=stranger)).verdict is DENY
    assert p.decide(c("accept_content", peer=D)).verdict is DENY  # no publisher known


# -- docs ---------------------------------------------------------------------------------------


def test_docs_cover_every_rule_and_key():
    doc = (REPO / "docs" / "policy.md").read_text()
    for rtype, cls in BUILTIN_RULES.items():
        m = re.search(rf"^### `{re.escape(rtype)}`\n(.*?)(?=^### |\Z)", doc, re.S | re.M)
        assert m, f"docs/policy.md has no section for {rtype}"
        for key in cls.fields:
            assert f"`{key}`" in m.group(1), f"{rtype}.{key} is not documented"
    for action in Action:
        assert f"`{action.value}`" in doc
    for key in ("default", "defaults", "plugin_budget_ms", "plugin_trip_after", "plugin_trip_seconds"):
        assert f"`{key}`" in doc
