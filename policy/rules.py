"""Built-in policy rules. Every key is documented in docs/policy.md ("Rule reference").

Each rule is a small class with `name`, `applies_to` (frozenset of Action), `evaluate(ctx)`
returning a Decision or None (abstain), and `from_config(table)`, which validates every option
and raises RuleConfigError listing every problem (key path, what is wrong, what is expected).
Constructing a rule directly, `MinTrust(actions=["serve_request"], min_global=0.01)`, runs the
same validation: there is one code path for files and for code.

Hot-path notes: decisions that do not depend on the context are built once in the constructor,
so a rule that decides allocates nothing unless its reason quotes the peer's numbers.
"""
from __future__ import annotations

import bisect
import functools
import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping

from policy.core import ALL_ACTIONS, FILLED_FOR, Action, Context, Decision, Problem, RuleConfigError, Verdict
from trust.peerid import PEER_ID_LEN, is_peer_id

__all__ = [
    "AllowAddrs",
    "AllowAll",
    "AllowPeers",
    "Anchors",
    "BUILTIN_RULES",
    "BuiltinRule",
    "DenyAddrs",
    "DenyAll",
    "DenyEquivocators",
    "DenyPeers",
    "Field",
    "MaxContentSize",
    "MinTrust",
    "NewcomerQuarantine",
    "PublisherTrust",
    "RateLimit",
    "parse_actions",
]

ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT
MAX_LIST = 100_000  # entries in one peer or range list
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:#-]{0,63}")
NAME_EXPECTED = "1-64 characters from A-Z a-z 0-9 _ . : # -, not starting with . : # -"
ACTIONS_EXPECTED = "a list of actions from: " + ", ".join(a.value for a in Action)


@dataclass(frozen=True)
class Field:
    """One option of a rule: its kind, bounds, default and one line of documentation."""

    kind: str  # number | integer | choice | string | peers | ranges | actions
    doc: str
    required: bool = False
    default: Any = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself is not allowed (rates must be > 0)
    choices: tuple[str, ...] = ()
    max_len: int = 200

    def expected(self) -> str:
        if self.kind in ("number", "integer"):
            noun = "a number" if self.kind == "number" else "an integer"
            if self.lo is not None and self.hi is not None:
                if self.lo_open:
                    return f"{noun} > {self.lo:g} and <= {self.hi:g}"
                return f"{noun} from {self.lo:g} to {self.hi:g}"
            if self.lo is not None:
                return f"{noun} {'>' if self.lo_open else '>='} {self.lo:g}"
            return noun
        if self.kind == "choice":
            return "one of " + ", ".join(f'"{c}"' for c in self.choices)
        if self.kind == "string":
            return f"a string of at most {self.max_len} printable characters"
        if self.kind == "peers":
            return f"a list of peer IDs (12D3KooW..., {PEER_ID_LEN} base58 characters)"
        if self.kind == "ranges":
            return 'a list of CIDR ranges such as "203.0.113.0/24" or "2001:db8::/32"'
        if self.kind == "actions":
            return ACTIONS_EXPECTED
        if self.kind == "name":
            return NAME_EXPECTED
        return self.kind


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "table"}
    return names.get(type(value), type(value).__name__)


def _peer_id_problem(value: str) -> str:
    if len(value) != PEER_ID_LEN:
        return f"{value[:60]!r} is not a peer ID: {len(value)} characters, a peer ID has {PEER_ID_LEN}"
    if not value.startswith("12D3KooW"):
        return f"{value!r} is not an Ed25519 peer ID: it does not start with 12D3KooW"
    return f"{value!r} is not a valid peer ID: bad base58 or not in canonical form (a typo?)"


def _check_number(key: str, value: object, f: Field, problems: list[Problem]) -> Any:
    integer = f.kind == "integer"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        problems.append(Problem((key,), f"wrong type: got {_type_name(value)}", f.expected()))
        return None
    if not integer and not math.isfinite(value):
        problems.append(Problem((key,), f"{value} is not a finite number", f.expected()))
        return None
    if (f.lo is not None and (value < f.lo or (f.lo_open and value == f.lo))) or (f.hi is not None and value > f.hi):
        problems.append(Problem((key,), f"{value!r} is out of range", f.expected()))
        return None
    return value if integer else float(value)


def _check_list(key: str, value: object, f: Field, problems: list[Problem]) -> list | None:
    if not isinstance(value, list):
        problems.append(Problem((key,), f"wrong type: got {_type_name(value)}", f.expected()))
        return None
    if len(value) > MAX_LIST:
        problems.append(Problem((key,), f"{len(value)} entries, more than {MAX_LIST}", f"at most {MAX_LIST} entries"))
        return None
    bad = False
    for i, item in enumerate(value):
        if not isinstance(item, str):
            problems.append(Problem((key, i), f"wrong type: got {_type_name(item)}", "a string"))
            bad = True
    return None if bad else list(value)


def parse_actions(key: str, value: object, problems: list[Problem]) -> frozenset[Action] | None:
    items = _check_list(key, value, Field("actions", ""), problems)
    if items is None:
        return None
    seen: set[Action] = set()
    ok = True
    for i, item in enumerate(items):
        try:
            action = Action(item)
        except ValueError:
            problems.append(Problem((key, i), f"unknown action {item[:60]!r}", ACTIONS_EXPECTED))
            ok = False
            continue
        if action in seen:
            problems.append(Problem((key, i), f"action {item!r} is listed twice", "each action once"))
            ok = False
        seen.add(action)
    return frozenset(seen) if ok else None


def _parse_peers(key: str, value: object, f: Field, problems: list[Problem]) -> tuple[str, ...] | None:
    items = _check_list(key, value, f, problems)
    if items is None:
        return None
    ok = True
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if not is_peer_id(item):
            problems.append(Problem((key, i), _peer_id_problem(item), f.expected()))
            ok = False
        elif item in first:
            problems.append(Problem((key, i), f"{item} is listed twice (first at {key}[{first[item]}])", "each peer once"))
            ok = False
        else:
            first[item] = i
    return tuple(items) if ok else None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ranges(key: str, value: object, f: Field, problems: list[Problem]) -> tuple[Network, ...] | None:
    items = _check_list(key, value, f, problems)
    if items is None:
        return None
    nets: list[tuple[int, Network]] = []
    ok = True
    for i, item in enumerate(items):
        try:
            net = ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            hint = ""
            try:
                hint = f"; did you mean {ipaddress.ip_network(item, strict=False)}?"
            except ValueError:
                pass
            problems.append(Problem((key, i), f"{item[:80]!r} is not a CIDR range: {exc}{hint}", f.expected()))
            ok = False
            continue
        if net.version == 6 and net.prefixlen >= 96 and net.network_address.ipv4_mapped is not None:
            problems.append(Problem((key, i), f"{item} is an IPv4-mapped IPv6 range; write the IPv4 range "
                                    f"(addresses are matched as IPv4)", "an IPv4 CIDR range"))
            ok = False
            continue
        nets.append((i, net))
    # Overlaps within the list: sort by (version, first address) and compare neighbours.
    order = sorted(nets, key=lambda p: (p[1].version, int(p[1].network_address), -int(p[1].broadcast_address)))
    widest: tuple[int, Network] | None = None
    for i, net in order:
        if widest is not None and widest[1].version == net.version and \
                int(net.network_address) <= int(widest[1].broadcast_address):
            problems.append(Problem((key, i), f"{net} overlaps {widest[1]} ({key}[{widest[0]}]) in the same rule",
                                    "ranges that do not overlap"))
            ok = False
            if int(net.broadcast_address) <= int(widest[1].broadcast_address):
                continue
        widest = (i, net)
    return tuple(n for _, n in nets) if ok else None


def parse_options(table: Mapping[str, object], fields: Mapping[str, Field], rule_type: str) -> tuple[dict, list[Problem]]:
    """Check every key of `table` against `fields`; return the typed values and every problem."""
    values: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in table.items():
        f = fields.get(key) if isinstance(key, str) else None
        if f is None:
            problems.append(Problem((str(key),), f"unknown key for a {rule_type} rule",
                                    "one of: " + ", ".join(fields)))
            continue
        if f.kind in ("number", "integer"):
            parsed = _check_number(key, value, f, problems)
        elif f.kind == "choice":
            if value in f.choices:
                parsed = value
            else:
                got = repr(value)[:60] if isinstance(value, str) else _type_name(value)
                problems.append(Problem((key,), f"got {got}", f.expected()))
                parsed = None
        elif f.kind == "string":
            if isinstance(value, str) and 0 < len(value) <= f.max_len and value.isprintable():
                parsed = value
            else:
                problems.append(Problem((key,), f"got {_type_name(value)} {repr(value)[:40]}", f.expected()))
                parsed = None
        elif f.kind == "name":
            if isinstance(value, str) and NAME_RE.fullmatch(value):
                parsed = value
            else:
                problems.append(Problem((key,), f"bad rule name {repr(value)[:60]}", NAME_EXPECTED))
                parsed = None
        elif f.kind == "peers":
            parsed = _parse_peers(key, value, f, problems)
        elif f.kind == "ranges":
            parsed = _parse_ranges(key, value, f, problems)
        elif f.kind == "actions":
            parsed = parse_actions(key, value, problems)
        else:  # pragma: no cover - a programming error in a Field table
            raise AssertionError(f"unknown field kind {f.kind}")
        if parsed is not None:  # an invalid key stays absent, so cross-checks skip it
            values[key] = parsed
    for key, f in fields.items():
        if key not in table:
            if f.required:
                problems.append(Problem((key,), "missing required key", f.expected()))
            else:
                values[key] = f.default
    return values, problems


_COMMON_FIELDS: dict[str, Field] = {
    "name": Field("name", "Name shown in decisions and logs. Default: the rule type, with #2, #3... "
                  "appended for repeats."),
    "actions": Field("actions", "Actions the rule applies to."),
}


class BuiltinRule:
    """Base of the built-in rules: option parsing, validation and the common keys."""

    type: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    fields: ClassVar[dict[str, Field]] = {}
    default_actions: ClassVar[frozenset[Action] | None] = ALL_ACTIONS  # None: `actions` is required
    allowed_actions: ClassVar[frozenset[Action]] = ALL_ACTIONS
    deny_list: ClassVar[bool] = False

    name: str
    applies_to: frozenset[Action]
    terminal: frozenset[Action]
    warnings: list[Problem]

    def __init__(self, **options: Any) -> None:
        fields = {**_COMMON_FIELDS, **self.fields}
        values, problems = parse_options(options, fields, self.type)
        if "actions" not in options:
            if self.default_actions is None:
                problems.append(Problem(("actions",), f"missing required key: a {self.type} rule needs its actions "
                                        "listed explicitly", ACTIONS_EXPECTED))
            values["actions"] = self.default_actions
        actions = values.get("actions")
        if actions is not None and not actions:
            problems.append(Problem(("actions",), "the actions list is empty: the rule would never apply",
                                    "at least one action"))
        if actions is not None:
            outside = sorted(a.value for a in actions - self.allowed_actions)
            if outside:
                problems.append(Problem(("actions",), f"a {self.type} rule cannot decide {', '.join(outside)}",
                                        "actions from: " + ", ".join(sorted(a.value for a in self.allowed_actions))))
        problems += self._cross_check(values)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise RuleConfigError(problems, values.get("name") or self.type)
        self.warnings = problems
        self.name = values["name"] or self.type
        self.applies_to = actions
        self.terminal = frozenset()
        self._setup(values)

    @classmethod
    def from_config(cls, table: Mapping[str, Any]) -> "BuiltinRule":
        """Build the rule from its [[rule]] table (without `type`); RuleConfigError lists every problem."""
        if not isinstance(table, Mapping) or not all(isinstance(k, str) for k in table):
            raise RuleConfigError([Problem((), "a rule is a table of options", "a table")], cls.type)
        return cls(**table)

    def _cross_check(self, values: dict[str, Any]) -> list[Problem]:
        return []

    def _setup(self, values: dict[str, Any]) -> None:
        pass

    def evaluate(self, ctx: Context) -> Decision | None:  # pragma: no cover - every rule overrides it
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {sorted(a.value for a in self.applies_to)}>"


def _need_one(values: dict, keys: Iterable[str], rule_type: str) -> list[Problem]:
    keys = list(keys)
    if all(values.get(k) is None for k in keys) and all(k in values for k in keys):
        return [Problem((), f"a {rule_type} rule needs at least one of {', '.join(keys)}",
                        "at least one of " + ", ".join(keys))]
    return []


def _fmt(x: object) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


_TRUST = dict(lo=0.0, hi=1.0)
_POSITIVE = dict(lo=0.0, lo_open=True)
_ON_PASS = Field("choice", "What a peer that passes gets: \"abstain\" (later rules decide) or \"allow\" "
                 "(evaluation ends with allow).", default="abstain", choices=("abstain", "allow"))


class MinTrust(BuiltinRule):
    type = "min_trust"
    summary = "Deny peers below a minimum local trust, global trust or rank."
    default_actions = None
    fields = {
        "min_local": Field("number", "Minimum local trust (this node's own evidence, 0-1).", **_TRUST),
        "min_global": Field("number", "Minimum personalised global trust (0-1).", **_TRUST),
        "max_rank": Field("integer", "Worst acceptable global-trust rank (1 = most trusted).", lo=1),
        "match": Field("choice", "\"any\": one threshold met is enough; \"all\": every configured threshold "
                       "must be met.", default="any", choices=("any", "all")),
        "on_pass": _ON_PASS,
        "min_interactions": Field("integer", "Judge only peers with at least this many interactions; others "
                                  "abstain (newcomer_quarantine handles them).", default=0, lo=0),
    }

    def _cross_check(self, values: dict[str, Any]) -> list[Problem]:
        return _need_one(values, ("min_local", "min_global", "max_rank"), self.type)

    def _setup(self, v: dict[str, Any]) -> None:
        self._min_local, self._min_global, self._max_rank = v["min_local"], v["min_global"], v["max_rank"]
        self._any = v["match"] == "any"
        self._min_interactions = v["min_interactions"]
        self._pass = Decision(ALLOW, "trust meets the minimum", self.name) if v["on_pass"] == "allow" else None
        if self._pass is not None and self._min_interactions == 0:
            self.terminal = self.applies_to

    def _passes(self, ctx: Context) -> bool:
        lo, gl, rk = self._min_local, self._min_global, self._max_rank
        rank = ctx.rank
        if self._any:
            return ((lo is not None and ctx.local_trust >= lo) or (gl is not None and ctx.global_trust >= gl)
                    or (rk is not None and rank is not None and 0 < rank <= rk))
        return ((lo is None or ctx.local_trust >= lo) and (gl is None or ctx.global_trust >= gl)
                and (rk is None or (rank is not None and 0 < rank <= rk)))

    def evaluate(self, ctx: Context) -> Decision | None:
        if ctx.interactions < self._min_interactions:
            return None
        if self._passes(ctx):
            return self._pass
        parts = []
        if self._min_local is not None:
            parts.append(f"local trust {_fmt(ctx.local_trust)} (min {self._min_local:g})")
        if self._min_global is not None:
            parts.append(f"global trust {_fmt(ctx.global_trust)} (min {self._min_global:g})")
        if self._max_rank is not None:
            parts.append(f"rank {ctx.rank if ctx.rank is not None else 'none'} (max {self._max_rank})")
        need = "none of" if self._any else "not all of"
        return Decision(DENY, f"trust too low: {need} " + ", ".join(parts), self.name)


class _PeerList(BuiltinRule):
    _verdict: ClassVar[Verdict]
    _what: ClassVar[str]

    def _setup(self, v: dict[str, Any]) -> None:
        self._peers = frozenset(v["peers"])
        self._by_peer = v["match"] in ("peer", "any")
        self._by_publisher = v["match"] in ("publisher", "any")
        self._peer_decision = Decision(self._verdict, f"peer is on the {self._what} list", self.name)
        self._pub_decision = Decision(self._verdict, f"publisher is on the {self._what} list", self.name)
        if not self._peers:
            self.warnings.append(Problem(("peers",), "the list is empty: the rule never matches", "peer IDs",
                                         "warning"))

    def evaluate(self, ctx: Context) -> Decision | None:
        if self._by_peer and ctx.peer_id in self._peers:
            return self._peer_decision
        if self._by_publisher and ctx.publisher is not None and ctx.publisher in self._peers:
            return self._pub_decision
        return None


def _match_field(default: str) -> Field:
    return Field("choice", "Whose ID is matched: \"peer\" (the remote peer), \"publisher\" (the signer of "
                 "the object: content, attestation, head) or \"any\" (either).", default=default,
                 choices=("peer", "publisher", "any"))


class AllowPeers(_PeerList):
    type = "allow_peers"
    summary = "Allow the listed peers."
    fields = {"peers": Field("peers", "Peer IDs to allow.", required=True), "match": _match_field("peer")}
    _verdict = ALLOW
    _what = "allow"


class DenyPeers(_PeerList):
    type = "deny_peers"
    summary = "Deny the listed peers (a deny list: evaluated before every other rule)."
    deny_list = True
    fields = {"peers": Field("peers", "Peer IDs to deny.", required=True), "match": _match_field("any")}
    _verdict = DENY
    _what = "deny"


class Anchors(BuiltinRule):
    type = "anchors"
    summary = "Pre-trusted peers: allowed, and fed into the trust engine's personalisation vector."
    fields = {"peers": Field("peers", "Peer IDs of the anchors.", required=True)}

    def _setup(self, v: dict[str, Any]) -> None:
        self._peers = tuple(v["peers"])
        self._set = frozenset(self._peers)
        self._allow = Decision(ALLOW, "peer is an anchor", self.name)
        if not self._peers:
            self.warnings.append(Problem(("peers",), "the list is empty: no anchors", "peer IDs", "warning"))

    def anchor_peers(self) -> tuple[str, ...]:
        return self._peers

    def evaluate(self, ctx: Context) -> Decision | None:
        return self._allow if ctx.peer_id in self._set else None


@functools.lru_cache(maxsize=4096)
def _addr_key(text: str) -> tuple[int, int] | None:
    """(IP version, integer) of an address string; IPv4-mapped IPv6 counts as IPv4; None if unparseable."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.version, int(addr)


class _Ranges:
    """Merged, sorted intervals per IP version; membership by bisection (O(log n))."""

    __slots__ = ("_starts", "_ends")

    def __init__(self, nets: Iterable[Network]) -> None:
        spans: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for n in nets:
            spans[n.version].append((int(n.network_address), int(n.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, items in spans.items():
            merged: list[list[int]] = []
            for lo, hi in sorted(items):
                if merged and lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            self._starts[version] = [lo for lo, _ in merged]
            self._ends[version] = [hi for _, hi in merged]

    def __contains__(self, key: tuple[int, int]) -> bool:
        version, n = key
        starts = self._starts[version]
        i = bisect.bisect_right(starts, n) - 1
        return i >= 0 and n <= self._ends[version][i]


_RANGES_DOC = "CIDR ranges (IPv4 or IPv6); host bits must be zero; no overlaps within the list."


class AllowAddrs(BuiltinRule):
    type = "allow_addrs"
    summary = "Allow peers whose IP address is in one of the ranges (no address: abstain)."
    fields = {"ranges": Field("ranges", _RANGES_DOC, required=True)}

    def _setup(self, v: dict[str, Any]) -> None:
        self.networks: tuple[Network, ...] = tuple(v["ranges"])
        self._ranges = _Ranges(self.networks)
        self._allow = Decision(ALLOW, "address is in an allowed range", self.name)
        if not self.networks:
            self.warnings.append(Problem(("ranges",), "the list is empty: the rule never matches", "ranges",
                                         "warning"))

    def evaluate(self, ctx: Context) -> Decision | None:
        addr = ctx.peer_addr
        if addr is None:
            return None
        key = _addr_key(addr)
        return self._allow if key is not None and key in self._ranges else None


class DenyAddrs(BuiltinRule):
    type = "deny_addrs"
    summary = "Deny peers whose IP address is in one of the ranges (a deny list). An address that does " \
              "not parse is denied too; no address at all abstains."
    deny_list = True
    fields = {"ranges": Field("ranges", _RANGES_DOC, required=True)}

    def _setup(self, v: dict[str, Any]) -> None:
        self.networks: tuple[Network, ...] = tuple(v["ranges"])
        self._ranges = _Ranges(self.networks)
        self._deny = Decision(DENY, "address is in a denied range", self.name)
        self._bad = Decision(DENY, "peer address does not parse as an IP address", self.name)
        if not self.networks:
            self.warnings.append(Problem(("ranges",), "the list is empty: the rule never matches", "ranges",
                                         "warning"))

    def evaluate(self, ctx: Context) -> Decision | None:
        addr = ctx.peer_addr
        if addr is None:
            return None
        key = _addr_key(addr)
        if key is None:
            return self._bad
        return self._deny if key in self._ranges else None


class NewcomerQuarantine(BuiltinRule):
    type = "newcomer_quarantine"
    summary = "Limit peers with little history to a small rate, unless their trust already vouches for them."
    default_actions = frozenset({Action.SERVE_REQUEST, Action.RELAY_GOSSIP})
    fields = {
        "min_interactions": Field("integer", "A peer with fewer interactions is a newcomer.", default=20, lo=0),
        "min_age": Field("number", "A peer first seen fewer than this many seconds ago is a newcomer.",
                         default=86400.0, lo=0.0),
        "rate": Field("number", "Requests/s a newcomer is limited to.", **_POSITIVE),
        "bandwidth": Field("number", "Bytes/s a newcomer is limited to.", **_POSITIVE),
        "exempt_local": Field("number", "A newcomer with at least this local trust is not limited.", **_TRUST),
        "exempt_global": Field("number", "A newcomer with at least this global trust (vouched for by "
                               "peers this node trusts) is not limited.", **_TRUST),
    }

    def _cross_check(self, values: dict[str, Any]) -> list[Problem]:
        return _need_one(values, ("rate", "bandwidth"), self.type)

    def _setup(self, v: dict[str, Any]) -> None:
        self._n, self._age = v["min_interactions"], v["min_age"]
        self._el, self._eg = v["exempt_local"], v["exempt_global"]
        self._limit = Decision(LIMIT, f"newcomer (fewer than {self._n} interactions or first seen less than "
                                      f"{self._age:g} s ago)", self.name, v["rate"], v["bandwidth"])

    def evaluate(self, ctx: Context) -> Decision | None:
        first = ctx.first_seen
        age = ctx.now - first if first is not None else 0.0
        if ctx.interactions >= self._n and age >= self._age:
            return None
        el, eg = self._el, self._eg
        if (el is not None and ctx.local_trust >= el) or (eg is not None and ctx.global_trust >= eg):
            return None
        return self._limit


class RateLimit(BuiltinRule):
    type = "rate_limit"
    summary = "Limit every peer's request rate / bandwidth; deny a peer whose recent rate exceeds a hard cap."
    default_actions = frozenset({Action.SERVE_REQUEST})
    fields = {
        "rate": Field("number", "Requests/s each peer is limited to.", **_POSITIVE),
        "bandwidth": Field("number", "Bytes/s each peer is limited to.", **_POSITIVE),
        "hard_cap": Field("number", "Deny a peer whose requests_recent (requests/s) is above this.", **_POSITIVE),
    }

    def _cross_check(self, values: dict[str, Any]) -> list[Problem]:
        problems = _need_one(values, ("rate", "bandwidth", "hard_cap"), self.type)
        rate, cap = values.get("rate"), values.get("hard_cap")
        if rate is not None and cap is not None and cap < rate:
            problems.append(Problem(("hard_cap",), f"hard_cap {cap:g} is below rate {rate:g}: the limit could "
                                    "never be reached", f"hard_cap >= rate ({rate:g})"))
        return problems

    def _setup(self, v: dict[str, Any]) -> None:
        self._cap = v["hard_cap"]
        self._limit = None
        if v["rate"] is not None or v["bandwidth"] is not None:
            self._limit = Decision(LIMIT, "per-peer rate limit", self.name, v["rate"], v["bandwidth"])

    def evaluate(self, ctx: Context) -> Decision | None:
        cap = self._cap
        if cap is not None and not ctx.requests_recent <= cap:
            return Decision(DENY, f"request rate {_fmt(ctx.requests_recent)}/s is over the hard cap {cap:g}/s",
                            self.name)
        return self._limit


class MaxContentSize(BuiltinRule):
    type = "max_content_size"
    summary = "Deny content larger than a size (unknown size: abstain)."
    default_actions = frozenset({Action.ACCEPT_CONTENT})
    allowed_actions = FILLED_FOR["content_size"]
    fields = {"max_bytes": Field("integer", "Largest content size in bytes.", required=True, lo=0)}

    def _setup(self, v: dict[str, Any]) -> None:
        self._max = v["max_bytes"]

    def evaluate(self, ctx: Context) -> Decision | None:
        size = ctx.content_size
        if size is None or size <= self._max:
            return None
        return Decision(DENY, f"content of {size} bytes is larger than {self._max}", self.name)


class PublisherTrust(BuiltinRule):
    type = "publisher_trust"
    summary = "Deny objects whose publisher (signer) has less global trust than a minimum; an unknown " \
              "publisher is denied."
    default_actions = frozenset({Action.ACCEPT_CONTENT})
    allowed_actions = FILLED_FOR["publisher"]
    fields = {
        "min_trust": Field("number", "Minimum global trust of the publisher (0-1).", required=True, **_TRUST),
        "on_pass": _ON_PASS,
    }

    def _setup(self, v: dict[str, Any]) -> None:
        self._min = v["min_trust"]
        self._pass = Decision(ALLOW, "publisher trust meets the minimum", self.name) if v["on_pass"] == "allow" else None
        self._unknown = Decision(DENY, "publisher or its trust is unknown", self.name)
        if self._pass is not None:
            self.terminal = self.applies_to

    def evaluate(self, ctx: Context) -> Decision | None:
        trust = ctx.publisher_trust
        if ctx.publisher is None or trust is None:
            return self._unknown
        if trust >= self._min:
            return self._pass
        return Decision(DENY, f"publisher trust {_fmt(trust)} is below {self._min:g}", self.name)


class DenyEquivocators(BuiltinRule):
    type = "deny_equivocators"
    summary = "Deny peers (or publishers) with a proven equivocation on record (a deny list)."
    deny_list = True
    fields = {}

    def _setup(self, v: dict[str, Any]) -> None:
        self._deny = Decision(DENY, "proven equivocation on record", self.name)

    def evaluate(self, ctx: Context) -> Decision | None:
        return self._deny if ctx.proven_equivocation else None


class AllowAll(BuiltinRule):
    type = "allow"
    summary = "Allow unconditionally (a catch-all for its actions; later rules for them are unreachable)."
    default_actions = None
    fields = {"reason": Field("string", "Reason given in the decision.", default="allowed by rule")}

    def _setup(self, v: dict[str, Any]) -> None:
        self._decision = Decision(ALLOW, v["reason"], self.name)
        self.terminal = self.applies_to

    def evaluate(self, ctx: Context) -> Decision | None:
        return self._decision


class DenyAll(BuiltinRule):
    type = "deny"
    summary = "Deny unconditionally (a catch-all for its actions; later rules for them are unreachable)."
    default_actions = None
    fields = {"reason": Field("string", "Reason given in the decision.", default="denied by rule")}

    def _setup(self, v: dict[str, Any]) -> None:
        self._decision = Decision(DENY, v["reason"], self.name)
        self.terminal = self.applies_to

    def evaluate(self, ctx: Context) -> Decision | None:
        return self._decision


BUILTIN_RULES: dict[str, type[BuiltinRule]] = {
    cls.type: cls
    for cls in (MinTrust, AllowPeers, DenyPeers, AllowAddrs, DenyAddrs, Anchors, NewcomerQuarantine,
                RateLimit, MaxContentSize, PublisherTrust, DenyEquivocators, AllowAll, DenyAll)
}
COMMON_FIELDS = _COMMON_FIELDS
