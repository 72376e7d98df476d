"""The data every policy rule works on: actions, verdicts, decisions and the decision context.

Pure data, no behaviour beyond validation: the node fills a `Context` at an enforcement point,
the `Policy` (policy/engine.py) turns it into a `Decision`. See docs/policy.md.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Protocol

from trust.errors import ConfigError

__all__ = [
    "ALL_ACTIONS",
    "Action",
    "Context",
    "Decision",
    "Problem",
    "Rule",
    "RuleConfigError",
    "Verdict",
]


class Action(enum.StrEnum):
    """An enforcement point: where the node asks the policy before doing something."""

    INBOUND_CONNECTION = "inbound_connection"  # a peer connected to us: keep the connection?
    OUTBOUND_DIAL = "outbound_dial"  # we are about to dial a peer
    SERVE_REQUEST = "serve_request"  # a peer asks us for content (chunk, manifest)
    CHOOSE_PROVIDER = "choose_provider"  # may this peer be one of the providers of a fetch?
    ACCEPT_CONTENT = "accept_content"  # keep content signed by `publisher` (fetched from peer_id)?
    ACCEPT_ATTESTATION = "accept_attestation"  # take in a trust attestation issued by `publisher`
    ACCEPT_HEAD = "accept_head"  # take in a signed log tree head of `publisher`
    RELAY_GOSSIP = "relay_gossip"  # relay a gossip message received from peer_id


ALL_ACTIONS: frozenset[Action] = frozenset(Action)


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    LIMIT = "limit"  # allowed, at most `rate` requests/s and/or `bandwidth` bytes/s


@dataclass(frozen=True, slots=True)
class Decision:
    """What a rule (or the chain) decided, why, and which rule decided it.

    `rate` (requests/s) and `bandwidth` (bytes/s) are set only on a LIMIT, at least one of them.
    `verdict` must be a `Verdict` member: a plugin returning the string "allow" gets TypeError,
    which the engine turns into a deny (fail closed).
    """

    verdict: Verdict
    reason: str
    rule: str
    rate: float | None = None
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        if type(self.verdict) is not Verdict:
            raise TypeError(f"Decision.verdict must be a policy.Verdict, got {self.verdict!r}")
        if self.verdict is Verdict.LIMIT:
            if self.rate is None and self.bandwidth is None:
                raise ValueError("a LIMIT decision needs a rate (requests/s) or a bandwidth (bytes/s)")
        elif self.rate is not None or self.bandwidth is not None:
            raise ValueError(f"only a LIMIT decision carries a rate or bandwidth, not {self.verdict.value}")


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a rule may look at, filled by the node for one decision. Frozen: no rule can
    change what later rules see. Unknown values keep their defaults, which are the least
    trusting ones (no trust, no history, newly seen). `now` (unix seconds) is required.

    - local_trust / global_trust: this node's normalised local trust c_ij of the peer and its
      personalised global trust (both in [0, 1]; 0 for a peer never heard of).
    - rank: 1-based rank of the peer in global trust (1 = most trusted), None if unranked.
    - peer_addr: the peer's IP address as a string ("203.0.113.7", "2001:db8::1") or None when
      the transport has none (e.g. relayed); IPv4-mapped IPv6 is matched as IPv4.
    - content_size: bytes of the content at stake (serve_request, choose_provider,
      accept_content), else None.
    - publisher / publisher_trust: the peer that signed the object under decision (content
      publisher for accept_content, attestation issuer for accept_attestation, log owner for
      accept_head) and its global trust; None elsewhere.
    - first_seen: unix seconds this node first saw the peer (None: right now);
      interactions: recorded interactions with it.
    - proven_equivocation: the peer (or the publisher) has a proven equivocation on record.
    - requests_recent: the peer's request rate so far (requests/s; see policy.RateTracker).
    """

    peer_id: str
    action: Action
    local_trust: float = 0.0
    global_trust: float = 0.0
    rank: int | None = None
    peer_addr: str | None = None
    content_size: int | None = None
    publisher: str | None = None
    publisher_trust: float | None = None
    first_seen: float | None = None
    interactions: int = 0
    proven_equivocation: bool = False
    requests_recent: float = 0.0
    now: float = field(kw_only=True)


class Rule(Protocol):
    """The rule interface, for built-in rules and plugins alike (docs/policy.md, "Plugins").

    Required: `name`, `applies_to`, `evaluate`. A plugin class also needs the classmethod
    `from_config(options) -> instance`. Optional attributes the engine reads with getattr:
    `deny_list` (bool: evaluated before every other rule; may only deny or abstain),
    `terminal` (frozenset of actions for which evaluate always allows or denies; used to find
    unreachable rules) and `anchor_peers()` (peer IDs for the trust engine's personalisation).
    """

    name: str
    applies_to: frozenset[Action]

    def evaluate(self, ctx: Context) -> Decision | None: ...


@dataclass(frozen=True, slots=True)
class Problem:
    """One configuration problem, relative to a rule table: key path, what is wrong, what is expected."""

    path: tuple[str | int, ...]
    problem: str
    expected: str = ""
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = ".".join(f"[{p}]" if isinstance(p, int) else p for p in self.path).replace(".[", "[")
        text = f"{where}: {self.problem}" if where else self.problem
        return f"{text} (expected {self.expected})" if self.expected else text


class RuleConfigError(ConfigError):
    """A rule's options are invalid; `problems` lists every one of them."""

    def __init__(self, problems: list[Problem], rule: str = "") -> None:
        self.problems = list(problems)
        head = f"invalid options for rule {rule}: " if rule else "invalid rule options: "
        super().__init__(head + "; ".join(str(p) for p in self.problems))


# Keys of a [[rule]] table that belong to the engine, never to the rule class.
ENGINE_KEYS: frozenset[str] = frozenset({"type", "plugin", "budget_ms"})

# What the node fills, per field, so the validator can reject a rule that could never decide.
FILLED_FOR: Mapping[str, frozenset[Action]] = {
    "content_size": frozenset({Action.SERVE_REQUEST, Action.CHOOSE_PROVIDER, Action.ACCEPT_CONTENT}),
    "publisher": frozenset({Action.ACCEPT_CONTENT, Action.ACCEPT_ATTESTATION, Action.ACCEPT_HEAD}),
}
