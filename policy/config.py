"""Policy files (TOML): `validate(text, source)` reports every problem with its line; `load_policy(path)`.

Format (docs/policy.md has the full reference):

    [policy]
    default = "deny"                  # allow | deny: what happens when no rule decides
    plugin_budget_ms = 5.0            # time budget of each plugin call

    [policy.defaults]                 # per-action override of `default`
    choose_provider = "allow"

    [[rule]]                          # rules, in evaluation order
    type = "min_trust"
    actions = ["serve_request"]
    min_global = 0.01

Line numbers: tomllib reports them for syntax errors only, so after a successful parse the
validator scans the text itself. `[[rule]]` headers are counted in order (the n-th header is
the n-th rule), table headers switch the current section, and `key =` lines (bare, quoted or
dotted keys) are recorded per section; lines inside multi-line strings are skipped. A problem
with a list element is placed on the line where that element's string appears. When the scan
cannot place a problem (e.g. rules written as an inline array `rule = [...]`), the nearest
enclosing line known is used, or none. Paths are 0-based: rule[0] is the first [[rule]].

The validator never raises: any input, however broken, yields a list of errors.
"""
from __future__ import annotations

import bisect
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy.core import ENGINE_KEYS, Action, Problem, RuleConfigError
from policy.engine import DEFAULT_BUDGET_S, DEFAULT_TRIP_AFTER, DEFAULT_TRIP_SECONDS, GuardedRule, Policy
from policy.plugins import PluginError, plugin_actions, resolve_plugin
from policy.rules import (BUILTIN_RULES, NAME_EXPECTED, NAME_RE, AllowAddrs, AllowPeers, Anchors, DenyAddrs, DenyPeers,
                          parse_actions)
from trust.errors import ConfigError

__all__ = ["DEFAULT_POLICY", "MAX_POLICY_BYTES", "ValidationError", "default_policy", "load_policy", "parse_policy",
           "validate"]

MAX_POLICY_BYTES = 256 * 1024
MAX_RULES = 1000
MAX_REPORTED_OVERLAPS = 20  # per pair of rules

# What a node runs without a policy file: open, except for proven equivocators.
DEFAULT_POLICY = """\
[policy]
default = "allow"

[[rule]]
type = "deny_equivocators"
"""

_POLICY_KEYS = {
    "default": 'default verdict when no rule decides: "allow" or "deny" (default "deny")',
    "defaults": "table of action = \"allow\" | \"deny\", overriding `default` per action",
    "plugin_budget_ms": "time budget of one plugin call in milliseconds (default 5)",
    "plugin_trip_after": "consecutive plugin failures before it is switched off (default 5)",
    "plugin_trip_seconds": "seconds a switched-off plugin stays off, denying (default 60)",
}


@dataclass(frozen=True, slots=True)
class ValidationError:
    """One problem in a policy file. `line` is 1-based (None when unknown); `path` like rule[2].peers[0]."""

    source: str
    line: int | None
    path: str
    problem: str
    expected: str = ""
    severity: str = "error"  # "error" (the policy is refused) or "warning" (accepted, but look)

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else self.source
        text = f"{where}: {self.severity}: "
        text += f"{self.path}: {self.problem}" if self.path else self.problem
        return text + (f" (expected {self.expected})" if self.expected else "")


# ---------------------------------------------------------------------------------------------
# Source map: where keys are, since tomllib does not say.

_HEADER = re.compile(r"^\s*(\[\[?)([^\[\]]*)(\]\]?)\s*(#.*)?$")
_KEYPART = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
_KEYLINE = re.compile(rf"^\s*({_KEYPART}(?:\s*\.\s*{_KEYPART})*)\s*=")


def _split_key(raw: str) -> list[str]:
    parts = re.findall(_KEYPART, raw)
    out = []
    for p in parts:
        if len(p) >= 2 and p[0] == p[-1] and p[0] in "\"'":
            p = p[1:-1]
        out.append(p)
    return out


class _SourceMap:
    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.top: dict[str, int] = {}
        self.policy: dict[str, int] = {}
        self.rules: list[dict[str, int]] = []  # per [[rule]]: "" -> header line, "key" / "sub.key" -> line
        self.rule_end: list[int] = []
        section: tuple[str, ...] = ()
        in_ml: str | None = None
        for no, line in enumerate(self.lines, 1):
            if in_ml is not None:
                if line.count(in_ml) % 2 == 1:
                    in_ml = None
                continue
            m = _HEADER.match(line)
            if m and len(m.group(1)) == len(m.group(3)):
                parts = _split_key(m.group(2))
                if not parts:
                    continue
                self.top.setdefault(parts[0], no)
                in_rule = m.group(1) == "[" and parts[0] == "rule" and len(parts) > 1 and bool(self.rules)
                if not in_rule and len(self.rule_end) < len(self.rules):
                    self.rule_end.append(no - 1)  # the current rule's text ends here
                if m.group(1) == "[[" and parts == ["rule"]:
                    self.rules.append({"": no})
                    section = ("rule",)
                elif in_rule:
                    section = ("rule", *parts[1:])
                    self.rules[-1].setdefault(".".join(parts[1:]), no)
                elif parts[0] == "policy":
                    section = ("policy", *parts[1:])
                    if len(parts) > 1:
                        self.policy.setdefault(".".join(parts[1:]), no)
                else:
                    section = tuple(parts)
                continue
            k = _KEYLINE.match(line)
            if k:
                key_parts = _split_key(k.group(1))
                self._record(section, key_parts, no)
                rest = line[k.end():]
                for delim in ('"""', "'''"):
                    if rest.count(delim) % 2 == 1:
                        in_ml = delim
                        break

    def _record(self, section: tuple[str, ...], key: list[str], no: int) -> None:
        if not section:
            target, prefix = self.top, []
        elif section[0] == "rule" and self.rules:
            target, prefix = self.rules[-1], list(section[1:])
        elif section[0] == "policy":
            target, prefix = self.policy, list(section[1:])
        else:
            return
        full = prefix + key
        for i in range(1, len(full) + 1):
            target.setdefault(".".join(full[:i]), no)

    def _find_value(self, start: int, end: int, value: str, nth: int) -> int | None:
        needles = [f'"{value}"', f"'{value}'"]
        seen = 0
        for no in range(start, min(end, len(self.lines)) + 1):
            text = self.lines[no - 1]
            for needle in needles:
                seen += text.count(needle)
            if seen > nth:
                return no
        return None

    def line_for(self, path: tuple[Any, ...], value_list: Any = None) -> int | None:
        if not path:
            return None
        if path[0] == "rule":
            if len(path) < 2 or not isinstance(path[1], int) or path[1] >= len(self.rules):
                return self.top.get("rule")
            rule = self.rules[path[1]]
            end = self.rule_end[path[1]] if path[1] < len(self.rule_end) else len(self.lines)
            keys = [p for p in path[2:] if isinstance(p, str)]
            line = None
            for n in range(len(keys), 0, -1):
                line = rule.get(".".join(keys[:n]))
                if line is not None:
                    break
            if line is None:
                return rule[""]
            idx = path[-1]
            if isinstance(idx, int) and isinstance(value_list, list) and 0 <= idx < len(value_list) \
                    and isinstance(value_list[idx], str) and value_list[idx]:
                v = value_list[idx]
                found = self._find_value(line, end, v, value_list[:idx].count(v))
                if found is not None:
                    return found
            return line
        if path[0] == "policy":
            keys = [p for p in path[1:] if isinstance(p, str)]
            for n in range(len(keys), 0, -1):
                line = self.policy.get(".".join(keys[:n]))
                if line is not None:
                    return line
            return self.top.get("policy")
        return self.top.get(str(path[0]))


def _path_text(path: tuple[Any, ...]) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


class _Report:
    def __init__(self, source: str, smap: _SourceMap | None) -> None:
        self.source = source
        self.smap = smap
        self.items: list[ValidationError] = []

    def add(self, path: tuple[Any, ...], problem: str, expected: str = "", severity: str = "error",
            line: int | None = None, value_list: Any = None) -> None:
        if line is None and self.smap is not None:
            line = self.smap.line_for(path, value_list)
        self.items.append(ValidationError(self.source, line, _path_text(path), problem, expected, severity))

    @property
    def has_errors(self) -> bool:
        return any(e.severity == "error" for e in self.items)


def _tname(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _number(rep: _Report, path: tuple, value: object, lo: float, hi: float, integer: bool = False,
            lo_open: bool = False) -> float | None:
    noun = "an integer" if integer else "a number"
    expected = f"{noun} {'>' if lo_open else 'from'} {lo:g}{' and <=' if lo_open else ' to'} {hi:g}"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        rep.add(path, f"wrong type: got {_tname(value)}", expected)
        return None
    if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):  # type: ignore[operator]
        rep.add(path, f"{value!r} is out of range", expected)
        return None
    return value  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------


def validate(text: str | bytes, source: str = "<policy>") -> tuple[Policy | None, list[ValidationError]]:
    """Parse and check a policy file. Returns (Policy, warnings) or (None, every problem found).

    Never raises. Errors and warnings are sorted by line. Plugins named in the file are imported
    (their code runs) so their options can be checked.
    """
    try:
        source = str(source)
    except Exception:  # noqa: BLE001
        source = "<policy>"
    rep = _Report(source, None)
    policy: Policy | None = None
    try:
        policy = _validate(text, rep)
    except RecursionError:
        rep.add((), "the file nests too deeply to check", "a flat policy file")
    except Exception as exc:  # noqa: BLE001 - last resort: a bug here must not take the node down
        rep.add((), f"internal error while validating: {type(exc).__name__}: {exc}")
    if rep.has_errors:
        policy = None
    items = sorted(rep.items, key=lambda e: (e.line if e.line is not None else 0))
    return policy, items


def _validate(text: str | bytes, rep: _Report) -> Policy | None:
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_POLICY_BYTES:
            rep.add((), f"the file is {len(text)} bytes, larger than {MAX_POLICY_BYTES}", "a smaller file")
            return None
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            rep.add((), f"not UTF-8 (byte {exc.start})", "a UTF-8 text file")
            return None
    if not isinstance(text, str):
        rep.add((), f"a policy is text, got {type(text).__name__}", "a string")
        return None
    if len(text) > MAX_POLICY_BYTES:
        rep.add((), f"the file is {len(text)} characters, larger than {MAX_POLICY_BYTES}", "a smaller file")
        return None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        line = int(m.group(1)) if m else None
        problem = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        if m:
            problem += f" at column {m.group(2)}"
        rep.add((), f"TOML syntax error: {problem}", "valid TOML (https://toml.io)", line=line)
        return None
    rep.smap = smap = _SourceMap(text)

    for key in doc:
        if key not in ("policy", "rule"):
            rep.add((key,), f"unknown top-level key or table [{key}]", "only a [policy] table and [[rule]] tables")

    settings = _policy_settings(doc.get("policy"), rep)

    raw_rules = doc.get("rule", [])
    if isinstance(raw_rules, dict):
        rep.add(("rule",), "rule is a single table", "an array of tables: write [[rule]], not [rule]")
        raw_rules = []
    elif not isinstance(raw_rules, list):
        rep.add(("rule",), f"wrong type: got {_tname(raw_rules)}", "[[rule]] tables")
        raw_rules = []
    if len(raw_rules) > MAX_RULES:
        rep.add(("rule",), f"{len(raw_rules)} rules, more than {MAX_RULES}", f"at most {MAX_RULES} rules")
        raw_rules = raw_rules[:MAX_RULES]
    if smap.rules and len(smap.rules) != len(raw_rules):
        smap.rules = []  # headers and rules disagree (mixed forms): do not guess lines

    built = _build_rules(raw_rules, settings, rep)
    _cross_checks(built, rep, raw_rules)
    if rep.has_errors:
        return None
    return Policy([r for _, r in built], settings["default"], settings["defaults"],
                  plugin_budget=settings["budget"], plugin_trip_after=settings["trip_after"],
                  plugin_trip_seconds=settings["trip_seconds"], source=rep.source,
                  digest=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())


def _policy_settings(table: object, rep: _Report) -> dict[str, Any]:
    out: dict[str, Any] = {"default": "deny", "defaults": {}, "budget": DEFAULT_BUDGET_S,
                           "trip_after": DEFAULT_TRIP_AFTER, "trip_seconds": DEFAULT_TRIP_SECONDS}
    if table is None:
        rep.add(("policy",), "no [policy] table: every action no rule decides is denied",
                '[policy] with default = "allow" or "deny"', "warning", line=1)
        return out
    if not isinstance(table, dict):
        rep.add(("policy",), f"wrong type: got {_tname(table)}", "a [policy] table")
        return out
    for key, value in table.items():
        path = ("policy", key)
        if key == "default":
            if value in ("allow", "deny"):
                out["default"] = value
            else:
                rep.add(path, f"got {repr(value)[:60] if isinstance(value, str) else _tname(value)}",
                        '"allow" or "deny"')
        elif key == "defaults":
            if not isinstance(value, dict):
                rep.add(path, f"wrong type: got {_tname(value)}", "a table of action = \"allow\" | \"deny\"")
                continue
            for action, verdict in value.items():
                try:
                    act = Action(action)
                except ValueError:
                    rep.add(path + (action,), f"unknown action {action[:60]!r}",
                            "one of " + ", ".join(a.value for a in Action))
                    continue
                if verdict in ("allow", "deny"):
                    out["defaults"][act] = verdict
                else:
                    rep.add(path + (action,), f"got {repr(verdict)[:60] if isinstance(verdict, str) else _tname(verdict)}",
                            '"allow" or "deny"')
        elif key == "plugin_budget_ms":
            v = _number(rep, path, value, 0.0, 1000.0, lo_open=True)
            if v is not None:
                out["budget"] = v / 1000.0
        elif key == "plugin_trip_after":
            v = _number(rep, path, value, 1, 1_000_000, integer=True)
            if v is not None:
                out["trip_after"] = v
        elif key == "plugin_trip_seconds":
            v = _number(rep, path, value, 0.0, 366 * 86400.0)
            if v is not None:
                out["trip_seconds"] = float(v)
        else:
            rep.add(path, "unknown key in [policy]", "one of: " + ", ".join(_POLICY_KEYS))
    if "default" not in table:
        rep.add(("policy",), "no default: every action no rule decides is denied",
                'default = "allow" or "deny" in [policy]', "warning")
    return out


def _add_problems(rep: _Report, index: int, problems: list[Problem], table: dict) -> None:
    for p in problems:
        path = ("rule", index, *p.path)
        value_list = None
        if len(p.path) >= 2 and isinstance(p.path[-1], int) and isinstance(p.path[0], str):
            value_list = table.get(p.path[0])
        rep.add(path, p.problem, p.expected, p.severity, value_list=value_list)


def _base_name(table: dict, plugin_cls: Any) -> str:
    if plugin_cls is None:
        return str(table["type"])
    name = getattr(plugin_cls, "name", None)
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    ref = str(table.get("plugin", "plugin"))
    base = ref.rpartition(":")[2].rpartition(".")[2] if ":" in ref else ref
    return base if NAME_RE.fullmatch(base) else "plugin"


def _build_rules(raw_rules: list, settings: dict[str, Any], rep: _Report) -> list[tuple[int, Any]]:
    # Pass 1: check types and resolve plugins, so names can be assigned before construction.
    pending: list[tuple[int, dict, Any]] = []  # (index, table, plugin class or None)
    for i, table in enumerate(raw_rules):
        if not isinstance(table, dict):
            rep.add(("rule", i), f"wrong type: got {_tname(table)}", "a [[rule]] table")
            continue
        rtype = table.get("type")
        if rtype is None:
            rep.add(("rule", i), "missing key type", "type = one of: " + ", ".join([*BUILTIN_RULES, "plugin"]))
            continue
        if not isinstance(rtype, str) or (rtype not in BUILTIN_RULES and rtype != "plugin"):
            got = repr(rtype)[:60] if isinstance(rtype, str) else _tname(rtype)
            rep.add(("rule", i, "type"), f"unknown rule type {got}", "one of: " + ", ".join([*BUILTIN_RULES, "plugin"]))
            continue
        plugin_cls = None
        if rtype == "plugin":
            ref = table.get("plugin")
            if not isinstance(ref, str):
                rep.add(("rule", i, "plugin"), "missing or not a string" if ref is None else f"wrong type: got {_tname(ref)}",
                        'an entry-point name in vouchnet.policies or "module:Class"')
                continue
            try:
                plugin_cls = resolve_plugin(ref)
            except PluginError as exc:
                rep.add(("rule", i, "plugin"), str(exc), 'an installed plugin name or an importable "module:Class"')
                continue
        else:
            for key in ENGINE_KEYS - {"type"}:
                if key in table:
                    rep.add(("rule", i, key), f"{key} is only for plugin rules", f"no {key} in a {rtype} rule")
        pending.append((i, table, plugin_cls))

    # Names: explicit ones are reserved (and must be unique); the rest get type, type#2, ...
    reserved: dict[str, int] = {}
    for i, table, _ in pending:
        name = table.get("name")
        if isinstance(name, str) and NAME_RE.fullmatch(name):
            if name in reserved:
                rep.add(("rule", i, "name"), f"rule name {name!r} is already used by rule[{reserved[name]}]",
                        "a unique name")
            else:
                reserved[name] = i
        elif "name" in table:
            rep.add(("rule", i, "name"), f"bad rule name {repr(name)[:60]}", NAME_EXPECTED)
    taken = set(reserved)
    names: dict[int, str] = {}
    for i, table, cls in pending:
        if isinstance(table.get("name"), str) and table["name"] in reserved and reserved[table["name"]] == i:
            names[i] = table["name"]
            continue
        base = _base_name(table, cls)
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}#{n}"
        taken.add(name)
        names[i] = name

    built: list[tuple[int, Any]] = []
    for i, table, cls in pending:
        options = {k: v for k, v in table.items() if k not in ENGINE_KEYS and k != "name"}
        if cls is None:
            try:
                rule = BUILTIN_RULES[table["type"]].from_config({**options, "name": names[i]})
            except RuleConfigError as exc:
                _add_problems(rep, i, exc.problems, table)
                continue
            _add_problems(rep, i, rule.warnings, table)
            built.append((i, rule))
        else:
            rule = _build_plugin(i, table, cls, names[i], options, settings, rep)
            if rule is not None:
                built.append((i, rule))
    return built


def _build_plugin(i: int, table: dict, cls: Any, name: str, options: dict, settings: dict[str, Any],
                  rep: _Report) -> GuardedRule | None:
    ref = table["plugin"]
    budget = settings["budget"]
    if "budget_ms" in table:
        v = _number(rep, ("rule", i, "budget_ms"), table["budget_ms"], 0.0, 1000.0, lo_open=True)
        if v is None:
            return None
        budget = v / 1000.0
    configured = None
    if "actions" in options:
        problems: list[Problem] = []
        configured = parse_actions("actions", options.pop("actions"), problems)
        _add_problems(rep, i, problems, table)
        if configured is None:
            return None
    try:
        inner = cls.from_config(options)
    except RuleConfigError as exc:
        _add_problems(rep, i, exc.problems, table)
        return None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - plugin code
        rep.add(("rule", i), f"plugin {ref} rejected its options: {type(exc).__name__}: {str(exc)[:200]}",
                "options the plugin documents")
        return None
    if not callable(getattr(inner, "evaluate", None)):
        rep.add(("rule", i, "plugin"), f"plugin {ref}: from_config returned {type(inner).__name__}, "
                "which has no evaluate(ctx)", "a rule object")
        return None
    try:
        declared = plugin_actions(inner, f"plugin {ref}")
    except PluginError as exc:
        rep.add(("rule", i, "plugin"), str(exc), "applies_to: a set of policy.Action")
        return None
    if configured is not None:
        extra = configured - declared
        if extra:
            rep.add(("rule", i, "actions"), f"plugin {ref} does not handle {', '.join(sorted(a.value for a in extra))}",
                    "actions from: " + ", ".join(sorted(a.value for a in declared)))
            return None
    actions = configured if configured is not None else declared
    return GuardedRule(inner, name, actions, budget=budget, trip_after=settings["trip_after"],
                       trip_seconds=settings["trip_seconds"], deny_list=getattr(inner, "deny_list", False) is True)


def _cross_checks(built: list[tuple[int, Any]], rep: _Report, raw_rules: list) -> None:
    # Reachability: deny lists always run; any other rule is dead for an action once an
    # earlier non-deny-list rule always decides that action.
    covered: dict[Action, str] = {}
    for i, rule in built:
        if not rule.applies_to:
            rep.add(("rule", i, "actions"), "the actions list is empty: the rule never applies",
                    "at least one action")
            continue
        if rule.deny_list:
            continue
        blocked = {a: covered[a] for a in rule.applies_to if a in covered}
        if blocked:
            by = ", ".join(sorted(set(blocked.values())))
            acts = ", ".join(sorted(a.value for a in blocked))
            if len(blocked) == len(rule.applies_to):
                rep.add(("rule", i), f"unreachable: rule {by} always decides {acts} before rule {rule.name}",
                        "the rule before the catch-all, or the catch-all removed")
            else:
                rep.add(("rule", i, "actions"), f"rule {rule.name} is unreachable for {acts}: rule {by} always "
                        "decides them first", "only actions the rule can still decide", "warning")
        for a in getattr(rule, "terminal", frozenset()):
            covered.setdefault(a, rule.name)

    # A peer or range on both an allow list and a deny list for a common action.
    allows = [(i, r) for i, r in built if isinstance(r, (AllowPeers, Anchors))]
    denies = [(i, r) for i, r in built if isinstance(r, DenyPeers)]
    for di, d in denies:
        for ai, a in allows:
            common = d.applies_to & a.applies_to
            by_peer = isinstance(a, Anchors) or a._by_peer
            by_publisher = not isinstance(a, Anchors) and a._by_publisher
            if not common or not ((by_peer and d._by_peer) or (by_publisher and d._by_publisher)):
                continue  # they never look at the same ID
            peers = raw_rules[di].get("peers", [])
            reported = 0
            for k, peer in enumerate(peers):
                if peer in a._set if isinstance(a, Anchors) else peer in a._peers:
                    rep.add(("rule", di, "peers", k), f"{peer} is also allowed by rule {a.name} (rule[{ai}]) for "
                            f"{', '.join(sorted(x.value for x in common))}; the deny list wins, so the allow "
                            "entry is dead", "a peer on an allow list or a deny list, not both", value_list=peers)
                    reported += 1
                    if reported >= MAX_REPORTED_OVERLAPS:
                        break
    aranges = [(i, r) for i, r in built if isinstance(r, AllowAddrs)]
    dranges = [(i, r) for i, r in built if isinstance(r, DenyAddrs)]
    for di, d in dranges:
        for ai, a in aranges:
            common = d.applies_to & a.applies_to
            if not common:
                continue
            texts = raw_rules[di].get("ranges", [])
            reported = 0
            for k, net in enumerate(d.networks):
                hit = _first_overlap(net, a)
                if hit is None:
                    continue
                rep.add(("rule", di, "ranges", k), f"{net} overlaps {hit} allowed by rule {a.name} (rule[{ai}]) for "
                        f"{', '.join(sorted(x.value for x in common))}; the deny list wins for the overlap",
                        "allow and deny ranges that do not overlap", value_list=texts)
                reported += 1
                if reported >= MAX_REPORTED_OVERLAPS:
                    break


def _first_overlap(net: Any, rule: AllowAddrs) -> Any:
    """An allowed network of `rule` overlapping `net`, or None; bisection first, scan only on a hit."""
    if (net.version, int(net.network_address)) not in rule._ranges:
        # No range holds the first address; one may still start inside net.
        starts = rule._ranges._starts[net.version]
        j = bisect.bisect_left(starts, int(net.network_address))
        if j >= len(starts) or starts[j] > int(net.broadcast_address):
            return None
    for other in rule.networks:
        if other.version == net.version and net.overlaps(other):
            return other
    return None  # pragma: no cover - the bisection above found one


# ---------------------------------------------------------------------------------------------


def parse_policy(text: str | bytes, source: str = "<policy>") -> Policy:
    """A Policy from text, or ConfigError listing every error (warnings are dropped)."""
    policy, problems = validate(text, source)
    if policy is None:
        errors = [str(e) for e in problems if e.severity == "error"]
        raise ConfigError("invalid policy:\n  " + "\n  ".join(errors))
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; ConfigError (every error, with lines) if it is invalid."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read policy file {p}: {exc.strerror}") from None
    return parse_policy(raw, str(p))


def default_policy() -> Policy:
    """The policy a node runs without a policy file: allow everything except proven equivocators."""
    return parse_policy(DEFAULT_POLICY, "<default policy>")
