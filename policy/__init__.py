"""Local trust policies: an ordered chain of rules deciding, per enforcement point, allow / deny / limit.

Pure decisions: no networking, no clocks (time comes in the Context), imports only `trust/`.
The node builds a `Context` at each enforcement point and calls `Policy.decide(ctx)`; see
docs/policy.md for the semantics, every rule and its keys, plugins and example policies.

    from policy import Action, Context, load_policy
    policy = load_policy(home / "policy.toml")
    d = policy.decide(Context(peer_id, Action.SERVE_REQUEST, global_trust=0.02, now=time.time()))
    if d.verdict is Verdict.DENY: ...
"""
from policy.config import DEFAULT_POLICY, ValidationError, default_policy, load_policy, parse_policy, validate
from policy.core import ALL_ACTIONS, Action, Context, Decision, Problem, Rule, RuleConfigError, Verdict
from policy.engine import GuardedRule, Policy, combine_limits
from policy.plugins import ENTRY_POINT_GROUP, PluginError, available_plugins, resolve_plugin
from policy.ratetrack import RateTracker, TokenBuckets
from policy.rules import BUILTIN_RULES, BuiltinRule

__all__ = [
    "ALL_ACTIONS",
    "Action",
    "BUILTIN_RULES",
    "BuiltinRule",
    "Context",
    "DEFAULT_POLICY",
    "Decision",
    "ENTRY_POINT_GROUP",
    "GuardedRule",
    "PluginError",
    "Policy",
    "Problem",
    "RateTracker",
    "Rule",
    "RuleConfigError",
    "TokenBuckets",
    "ValidationError",
    "Verdict",
    "available_plugins",
    "combine_limits",
    "default_policy",
    "load_policy",
    "parse_policy",
    "resolve_plugin",
    "validate",
]
