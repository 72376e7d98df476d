"""The policy engine: an ordered chain of rules turned into one decision per enforcement point.

Evaluation of `Policy.decide(ctx)`, for the rules whose `applies_to` contains `ctx.action`:

1. Deny-list rules (`deny_list = True`: deny_peers, deny_addrs, deny_equivocators, and plugins
   that declare it) run first, in their configured order, wherever they sit in the chain. The
   first DENY ends evaluation. So a deny list always wins over any allow rule. A deny-list
   rule may only deny or abstain.
2. Every other rule runs in configured order. Each returns a Decision or None (abstain):
   - DENY ends evaluation with that deny;
   - LIMIT is remembered and evaluation continues; when several limits apply, the most
     restrictive one wins (the smallest rate and the smallest bandwidth);
   - ALLOW ends evaluation: the result is that allow or, when a limit was remembered, the limit.
3. When no rule allowed or denied, the default for the action applies (`Policy(default=...)`,
   per action via `defaults`). A default allow returns the remembered limit if there is one; a
   default deny denies. A LIMIT is a constraint on an allowed peer, never a permission.

The engine never raises. An exception from any rule, or a context it cannot read, yields DENY
with the error as the reason (fail closed). Rules that are not built-in (plugins) are wrapped
in `GuardedRule`: timed with time.perf_counter around evaluate, denied when over their time
budget (default 5 ms) or when they return anything but None or a well-formed Decision, and
switched off (deny without calling) for a cool-down after repeated consecutive failures.

Plugins run in the caller's thread. A plugin that blocks forever cannot be interrupted in
process: the overrun is measured after the call returns. Running each call in a worker thread
with a timeout was rejected: a thread hand-off costs more than the whole 20-rule budget, a
Python thread cannot be killed (the blocked call would still hold the thread, the pool would
empty and the node would need this fail-closed path anyway), and a CPU-bound plugin would
still hold the GIL. Plugins are trusted code; the guard catches bugs and slowness, it is not a
sandbox. See docs/policy.md.

`Policy` is immutable after construction except for the plugin guards' failure counters;
reloading a policy means building a new one and swapping the reference.
"""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

from policy.core import Action, Context, Decision, Verdict
from policy.rules import BUILTIN_RULES
from trust.errors import ConfigError

__all__ = ["DEFAULT_BUDGET_S", "GuardedRule", "Policy", "combine_limits"]

ALLOW, DENY, LIMIT = Verdict.ALLOW, Verdict.DENY, Verdict.LIMIT
DEFAULT_BUDGET_S = 0.005
_TRUSTED: frozenset[type] = frozenset(BUILTIN_RULES.values())
DEFAULT_TRIP_AFTER = 5
DEFAULT_TRIP_SECONDS = 60.0
MAX_REASON = 300


def _clean(text: str, limit: int = MAX_REASON) -> str:
    """One printable line, bounded: reasons end up in logs and on terminals."""
    out = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return out if len(out) <= limit else out[: limit - 3] + "..."


def _error_text(exc: BaseException) -> str:
    try:
        msg = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not escape either
        msg = "<unprintable>"
    return _clean(f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__, 200)


def combine_limits(a: Decision, b: Decision) -> Decision:
    """The most restrictive of two LIMIT decisions: the smaller rate and the smaller bandwidth."""
    rate = a.rate if b.rate is None else b.rate if a.rate is None else min(a.rate, b.rate)
    bw = a.bandwidth if b.bandwidth is None else b.bandwidth if a.bandwidth is None else min(a.bandwidth, b.bandwidth)
    if rate == a.rate and bw == a.bandwidth:
        return a
    if rate == b.rate and bw == b.bandwidth:
        return b
    return Decision(LIMIT, f"{a.reason}; {b.reason}", f"{a.rule}+{b.rule}", rate, bw)


def _positive(x: object) -> bool:
    return (type(x) is float or type(x) is int) and math.isfinite(x) and x > 0  # type: ignore[arg-type]


class GuardedRule:
    """Wraps a plugin rule: time budget, exception and output checks, circuit breaker. Fails closed."""

    __slots__ = ("inner", "name", "applies_to", "deny_list", "terminal", "budget", "trip_after", "trip_seconds",
                 "_clock", "failures", "_disabled_until", "_last_error")

    def __init__(self, inner: Any, name: str, applies_to: frozenset[Action], *, budget: float = DEFAULT_BUDGET_S,
                 trip_after: int = DEFAULT_TRIP_AFTER, trip_seconds: float = DEFAULT_TRIP_SECONDS,
                 clock: Callable[[], float] = time.perf_counter, deny_list: bool = False) -> None:
        self.inner = inner
        self.name = name
        self.applies_to = applies_to
        self.deny_list = deny_list
        self.terminal: frozenset[Action] = frozenset()  # a plugin's claims are not trusted for reachability
        self.budget = budget
        self.trip_after = trip_after
        self.trip_seconds = trip_seconds
        self._clock = clock
        self.failures = 0  # consecutive
        self._disabled_until = -math.inf
        self._last_error = ""

    def anchor_peers(self) -> tuple[str, ...]:
        fn = getattr(self.inner, "anchor_peers", None)
        return tuple(fn()) if callable(fn) else ()

    def _fail(self, ctx: Any, why: str) -> Decision:
        self.failures += 1
        self._last_error = why
        if self.failures >= self.trip_after:
            now = getattr(ctx, "now", None)
            if isinstance(now, (int, float)) and math.isfinite(now):
                self._disabled_until = now + self.trip_seconds
        return Decision(DENY, _clean(f"plugin {self.name} {why}"), self.name)

    def _check(self, d: object) -> Decision | str:
        """The plugin's answer as a clean Decision stamped with this rule's name, or what is wrong with it."""
        if type(d) is not Decision:
            return f"returned {type(d).__name__}, not a Decision or None"
        v = d.verdict
        if type(v) is not Verdict:
            return f"returned a verdict of type {type(v).__name__}"
        if self.deny_list and v is not DENY:
            return f"is a deny-list rule but returned {v.value}"
        if type(d.reason) is not str:
            return "returned a reason that is not a str"
        rate, bw = d.rate, d.bandwidth
        if v is LIMIT:
            if (rate is not None and not _positive(rate)) or (bw is not None and not _positive(bw)) or \
                    (rate is None and bw is None):
                return "returned a limit without a finite positive rate or bandwidth"
            return Decision(LIMIT, _clean(d.reason), self.name, None if rate is None else float(rate),
                            None if bw is None else float(bw))
        return Decision(v, _clean(d.reason), self.name)

    def evaluate(self, ctx: Context) -> Decision | None:
        try:
            if ctx.now < self._disabled_until:
                return Decision(DENY, _clean(f"plugin {self.name} is disabled after {self.failures} consecutive "
                                             f"failures (last: {self._last_error})"), self.name)
            clock = self._clock
            t0 = clock()
            try:
                d = self.inner.evaluate(ctx)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - fail closed on anything, SystemExit included
                return self._fail(ctx, f"raised {_error_text(exc)}")
            elapsed = clock() - t0
            if elapsed > self.budget:
                return self._fail(ctx, f"exceeded its time budget ({elapsed * 1e3:.2f} ms > {self.budget * 1e3:g} ms)")
            if d is None:
                self.failures = 0
                return None
            checked = self._check(d)
            if isinstance(checked, str):
                return self._fail(ctx, checked)
            self.failures = 0
            return checked
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. a Decision subclass with a hostile property
            return self._fail(ctx, f"returned something unreadable ({_error_text(exc)})")

    def __repr__(self) -> str:
        return f"<GuardedRule {self.name!r} wrapping {type(self.inner).__name__}>"


class _Chain:
    __slots__ = ("deny", "rest", "default")

    def __init__(self, deny: tuple, rest: tuple, default: Decision) -> None:
        self.deny = deny
        self.rest = rest
        self.default = default


def _verdict(value: object, what: str) -> Verdict:
    try:
        v = Verdict(value)
    except ValueError:
        raise ConfigError(f"{what} must be \"allow\" or \"deny\", got {value!r}") from None
    if v is LIMIT:
        raise ConfigError(f"{what} must be \"allow\" or \"deny\", not limit")
    return v


def _rule_actions(rule: Any) -> frozenset[Action]:
    raw = getattr(rule, "applies_to", None)
    if isinstance(raw, (str, bytes)) or not isinstance(raw, Iterable):
        raise ConfigError(f"rule {getattr(rule, 'name', rule)!r}: applies_to must be a set of actions")
    try:
        return frozenset(Action(a) for a in raw)
    except ValueError as exc:
        raise ConfigError(f"rule {getattr(rule, 'name', rule)!r}: {exc}") from None


class Policy:
    """An ordered rule chain with a default per action. `decide` and `explain` never raise.

    `rules` may mix built-in rules and plugin objects. Anything that is not exactly one of the
    built-in rule classes (subclasses included) is wrapped in a GuardedRule with the plugin_*
    settings; rules already wrapped (as `validate` does) are kept as they are.
    """

    def __init__(self, rules: Sequence[Any] = (), default: Verdict | str = DENY,
                 defaults: Mapping[Action | str, Verdict | str] | None = None, *,
                 plugin_budget: float = DEFAULT_BUDGET_S, plugin_trip_after: int = DEFAULT_TRIP_AFTER,
                 plugin_trip_seconds: float = DEFAULT_TRIP_SECONDS,
                 clock: Callable[[], float] = time.perf_counter, source: str = "<policy>",
                 digest: str = "") -> None:
        if not (isinstance(plugin_budget, (int, float)) and math.isfinite(plugin_budget) and plugin_budget > 0):
            raise ConfigError(f"plugin_budget must be a positive number of seconds, got {plugin_budget!r}")
        self.default = _verdict(default, "default")
        self.defaults: dict[Action, Verdict] = {}
        for action, verdict in (defaults or {}).items():
            try:
                act = Action(action)
            except ValueError:
                raise ConfigError(f"defaults: unknown action {action!r}") from None
            self.defaults[act] = _verdict(verdict, f"defaults.{act.value}")
        self.source = source
        self.digest = digest  # sha256 of the policy file, for logs ("which policy decided this")
        wrapped: list[Any] = []
        names: set[str] = set()
        for rule in rules:
            name = getattr(rule, "name", None)
            if not isinstance(name, str) or not name:
                raise ConfigError(f"rule {rule!r} has no name")
            if name in names:
                raise ConfigError(f"two rules are named {name!r}; rule names must be unique")
            names.add(name)
            if not callable(getattr(rule, "evaluate", None)):
                raise ConfigError(f"rule {name!r} has no evaluate(ctx) method")
            if type(rule) not in _TRUSTED and type(rule) is not GuardedRule:  # built-in subclasses are plugins
                rule = GuardedRule(rule, name, _rule_actions(rule), budget=plugin_budget,
                                   trip_after=plugin_trip_after, trip_seconds=plugin_trip_seconds, clock=clock,
                                   deny_list=getattr(rule, "deny_list", False) is True)
            wrapped.append(rule)
        self.rules: tuple[Any, ...] = tuple(wrapped)
        self._chains: dict[Action, _Chain] = {}
        for action in Action:
            verdict = self.defaults.get(action, self.default)
            applicable = [r for r in self.rules if action in r.applies_to]
            default = Decision(verdict, f"no rule decided; the default for {action.value} is {verdict.value}",
                               "default")
            self._chains[action] = _Chain(tuple(r for r in applicable if r.deny_list),
                                          tuple(r for r in applicable if not r.deny_list), default)

    # -- queries -------------------------------------------------------------------------------

    def default_for(self, action: Action | str) -> Verdict:
        return self.defaults.get(Action(action), self.default)

    def rules_for(self, action: Action | str) -> tuple[Any, ...]:
        """The rules that apply to an action, in evaluation order (deny lists first)."""
        chain = self._chains[Action(action)]
        return chain.deny + chain.rest

    def anchor_peers(self) -> tuple[str, ...]:
        """Peer IDs of every anchors rule (and plugin exposing anchor_peers()), first occurrence order.

        The node passes them to the trust engine's personalisation vector (TrustEngine.set_anchors).
        """
        seen: dict[str, None] = {}
        for rule in self.rules:
            fn = getattr(rule, "anchor_peers", None)
            if callable(fn):
                try:
                    for peer in fn():
                        if isinstance(peer, str):
                            seen.setdefault(peer, None)
                except Exception:  # noqa: BLE001 - a broken plugin contributes no anchors
                    continue
        return tuple(seen)

    # -- decisions -----------------------------------------------------------------------------

    def decide(self, ctx: Context) -> Decision:
        """The decision for one enforcement point. Never raises; errors deny."""
        rule: Any = None
        try:
            chain = self._chains[ctx.action]
            for rule in chain.deny:
                d = rule.evaluate(ctx)
                if d is not None and d.verdict is DENY:
                    return d
            limit: Decision | None = None
            for rule in chain.rest:
                d = rule.evaluate(ctx)
                if d is None:
                    continue
                v = d.verdict
                if v is DENY:
                    return d
                if v is ALLOW:
                    return d if limit is None else limit
                if v is LIMIT:
                    limit = d if limit is None else combine_limits(limit, d)
                else:
                    return Decision(DENY, f"rule returned an invalid verdict {v!r}", rule.name)
            if limit is not None and chain.default.verdict is ALLOW:
                return limit
            return chain.default
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - the engine never raises
            return self._error(ctx, rule, exc)

    def _error(self, ctx: object, rule: Any, exc: BaseException) -> Decision:
        if rule is None:
            try:
                action = getattr(ctx, "action", None)
                if not isinstance(ctx, Context):
                    why = f"not a policy Context: {type(ctx).__name__}"
                elif not isinstance(action, str) or action not in self._chains:
                    why = f"unknown action {repr(action)[:60]}"
                else:
                    why = _error_text(exc)
            except Exception:  # noqa: BLE001 - a hostile action object
                why = "unreadable context"
            return Decision(DENY, _clean(f"policy error: {why}"), "policy")
        name = getattr(rule, "name", "?")
        return Decision(DENY, _clean(f"rule {name} failed: {_error_text(exc)}"), str(name)[:64])

    def explain(self, ctx: Context) -> list[tuple[str, Decision | None]]:
        """Every applicable rule's own verdict, in evaluation order (deny lists first), for a dry run.

        Unlike decide, every rule runs, even after the outcome is known, so the list shows what
        each would say; a rule that raises shows as its fail-closed DENY. `dry_run` returns the
        outcome too, folded from these same answers (each rule runs once).
        """
        return self.dry_run(ctx)[1]

    def dry_run(self, ctx: Context) -> tuple[Decision, list[tuple[str, Decision | None]]]:
        """(outcome, steps): the decision `decide` would make, and every applicable rule's answer."""
        steps: list[tuple[str, Decision | None]] = []
        try:
            chain = self._chains[ctx.action]
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            return self._error(ctx, None, exc), steps
        outcome: Decision | None = None
        limit: Decision | None = None
        for rule in chain.deny:
            d = self._one(ctx, rule)
            steps.append((rule.name, d))
            if outcome is None and d is not None and d.verdict is DENY:
                outcome = d
        for rule in chain.rest:
            d = self._one(ctx, rule)
            steps.append((rule.name, d))
            if outcome is not None or d is None:
                continue
            if d.verdict is DENY:
                outcome = d
            elif d.verdict is ALLOW:
                outcome = d if limit is None else limit
            else:
                limit = d if limit is None else combine_limits(limit, d)
        if outcome is None:
            outcome = limit if limit is not None and chain.default.verdict is ALLOW else chain.default
        return outcome, steps

    def _one(self, ctx: Context, rule: Any) -> Decision | None:
        try:
            d = rule.evaluate(ctx)
            if d is not None and (type(d) is not Decision or type(d.verdict) is not Verdict):
                return Decision(DENY, "rule returned an invalid answer", rule.name)
            return d
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001
            return self._error(ctx, rule, exc)

    def __repr__(self) -> str:
        return f"<Policy {self.source} rules={len(self.rules)} default={self.default.value}>"

