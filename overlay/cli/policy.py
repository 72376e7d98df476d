"""Policy commands: validate a policy file, show the active chain, explain a decision, reload, stats.

Also registers the global ``--policy FILE`` option (``$VOUCHNET_POLICY``) on `main`: the policy
file a node started from this command uses, and the file the policy commands read when no node
runs. Precedence: --policy / $VOUCHNET_POLICY, then ``[policy] file`` in config.toml (relative to
the home folder), then ``policy.toml`` in the home folder (absent: the default policy).
"""
from __future__ import annotations

import datetime
import functools
import os
import sys
import types
from pathlib import Path
from typing import Any

import click

from overlay.node import control
from overlay.cli.app import Ctx, emit_json, fail, main
from overlay.config import load_config
from overlay.services.policy import ENV_VAR, PolicyService, resolve_policy_path
from policy import Action

ACTIONS = [a.value for a in Action]


# -- the global --policy option ---------------------------------------------------------------

def _install_global_option() -> None:
    if any(p.name == "policy_file" for p in main.params):
        return
    main.params.append(click.Option(
        ["--policy", "policy_file"], type=click.Path(dir_okay=False), default=None, envvar=ENV_VAR,
        help="Policy file for the node and the policy commands (default: [policy] file in config.toml, "
             "else policy.toml in the home folder)."))
    inner = main.callback

    @functools.wraps(inner)
    def callback(*args: Any, policy_file: str | None = None, **kwargs: Any) -> Any:
        result = inner(*args, **kwargs)
        if policy_file:
            path = Path(policy_file).expanduser().absolute()
            # `node run` in this process reads it (PolicyService.for_node -> resolve_policy_path).
            os.environ[ENV_VAR] = str(path)
            obj = click.get_current_context().obj
            if obj is not None:
                obj.policy_file = path
        return result

    main.callback = callback


_install_global_option()


# -- helpers ------------------------------------------------------------------------------------

def _path(obj: Ctx) -> tuple[Path, bool]:
    configured = load_config(obj.home.config_file).policy_file if obj.home.config_file.exists() else ""
    return resolve_policy_path(obj.home.path, configured or None)


def _live(obj: Ctx) -> bool:
    return control.node_running(obj.home.path)


def _offline_service(obj: Ctx, with_trust: bool) -> tuple[PolicyService, Any]:
    """The policy from its file, with trust from the ledger (read-only) when asked and present."""
    path, explicit = _path(obj)
    rep = ledger = None
    if with_trust:
        from overlay.cli.ledger import home_peer_id
        from overlay.services.reputation import LEDGER_FILE
        from trust.ledger import Ledger
        from trust.reputation import Reputation
        ledger_path = obj.home.path / LEDGER_FILE
        peer_id = home_peer_id(obj) if obj.home.path.is_dir() else None
        if ledger_path.is_file() and peer_id:
            ledger = Ledger(ledger_path, readonly=True, owner=peer_id)
            rep = Reputation(ledger, types.SimpleNamespace(peer_id=peer_id))
    try:
        return PolicyService(obj.home.path, path, explicit=explicit, rep=rep, ledger=None), ledger
    except BaseException:
        if ledger is not None:
            ledger.close()
        raise


def _time(ms: Any) -> str:
    if not isinstance(ms, (int, float)):
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _opt(v: Any) -> str:
    if isinstance(v, list):
        inner = ", ".join(str(x) for x in v[:4])
        return f"[{inner}{', …' if len(v) > 4 else ''}]"
    return str(v)


# -- commands -------------------------------------------------------------------------------------

@main.group("policy")
def policy_group() -> None:
    """Local trust policies: validate a file, show the active chain, explain, reload, stats.

    A node's policy is an ordered chain of rules deciding, at each enforcement point
    (inbound_connection, outbound_dial, serve_request, choose_provider, accept_content,
    accept_attestation, accept_head, relay_gossip), whether to allow, deny or limit a peer.
    See docs/policy.md for the rules and examples/policies/ for complete policies.

    \b
    Examples:
      vouchnet policy validate examples/policies/cautious.toml
      vouchnet --home ./alice policy show
      vouchnet --home ./alice policy explain --peer 12D3KooW... --action serve_request
      vouchnet --home ./alice policy reload
      vouchnet --home ./alice policy stats
    """


@policy_group.command("validate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def policy_validate(obj: Ctx, file: Path | None, as_json: bool) -> None:
    """Check a policy file and report every problem with its line, key and what is expected.

    FILE defaults to the node's policy file (--policy, [policy] file, or policy.toml in the
    home folder). Exit status: 0 valid (warnings are printed), 1 errors, 2 unreadable file.

    \b
    Examples:
      vouchnet policy validate ./policy.toml
      vouchnet --home ./alice policy validate          # the file the node uses
      vouchnet policy validate ./policy.toml --json
    """
    from policy import validate
    if file is None:
        file, _ = _path(obj)
    try:
        raw = file.read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    policy, problems = validate(raw, str(file))
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity != "error"]
    if as_json:
        emit_json({"file": str(file), "valid": policy is not None,
                   "digest": policy.digest if policy is not None else None,
                   "rules": len(policy.rules) if policy is not None else None,
                   "errors": [_problem(p) for p in errors], "warnings": [_problem(p) for p in warnings]})
    else:
        for p in problems:
            click.echo(str(p))
        if policy is None:
            click.echo(f"{file}: INVALID: {len(errors)} error{'s' if len(errors) != 1 else ''}"
                       + (f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else "")
                       + "; the policy is refused")
        else:
            click.echo(f"{file}: valid: {len(policy.rules)} rule{'s' if len(policy.rules) != 1 else ''}, "
                       f"default {policy.default.value}"
                       + (f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else "")
                       + f" (sha256 {policy.digest[:16]}…)")
    sys.exit(0 if policy is not None else 1)


def _problem(p: Any) -> dict[str, Any]:
    return {"line": p.line, "path": p.path, "problem": p.problem, "expected": p.expected, "severity": p.severity,
            "text": str(p)}


@policy_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def policy_show(obj: Ctx, as_json: bool) -> None:
    """Show the active policy: its rules, defaults, anchors and the evaluation order per action.

    From the running node when there is one (the policy in force, which may differ from the
    file if the file changed since the last reload), else from the policy file.

    \b
    Examples:
      vouchnet --home ./alice policy show
      vouchnet --home ./alice policy show --json
    """
    if _live(obj):
        info, where = control.call(obj.home.path, {"op": "policy-show"}), "running node"
    else:
        svc, _ = _offline_service(obj, with_trust=False)
        info, where = svc.show(), "file; no node is running"
    info["from"] = where
    if as_json:
        emit_json(info)
        return
    click.echo(f"policy:   {info['source']} (sha256 {info['digest'][:16]}…), from the {where}")
    if where == "running node":
        click.echo(f"loaded:   {_time(info.get('loaded_at_ms'))}")
    per_action = ", ".join(f"{a}={v}" for a, v in sorted(info["defaults"].items()))
    click.echo(f"default:  {info['default']}" + (f"; per action: {per_action}" if per_action else ""))
    if info["anchors"]:
        click.echo(f"anchors:  {', '.join(info['anchors'])}")
    for w in info.get("warnings", []):
        click.echo(f"warning:  {w['text']}")
    click.echo("rules, in configured order (deny lists run first wherever they are):")
    if not info["rule_list"]:
        click.echo("  (none)")
    for i, r in enumerate(info["rule_list"], 1):
        acts = "all actions" if len(r["actions"]) == len(ACTIONS) else ", ".join(r["actions"])
        label = r["name"] if r["name"] == r["type"] else f"{r['name']} ({r['type']})"
        opts = "  ".join(f"{k}={_opt(v)}" for k, v in r["options"].items() if k != "actions")
        click.echo(f"  {i:>2}. {label}{'  [deny list]' if r['deny_list'] else ''}  on {acts}"
                   + (f"\n      {opts}" if opts else ""))
    click.echo("evaluation order per action:")
    for action in ACTIONS:
        chain = info["chains"][action]
        steps = " → ".join(chain["rules"] + [f"default {chain['default']}"])
        click.echo(f"  {action:<19} {steps}")


@policy_group.command("explain")
@click.option("--peer", required=True, help="The peer the decision is about (12D3KooW...).")
@click.option("--action", "action", required=True, type=click.Choice(ACTIONS), help="The enforcement point.")
@click.option("--size", type=click.IntRange(min=0), default=None, help="Content size in bytes, where it matters.")
@click.option("--publisher", default=None, help="Publisher / issuer peer ID (accept_content, accept_attestation, "
                                                 "accept_head).")
@click.option("--addr", default=None, help="The peer's IP address (default: its connection's, when connected).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def policy_explain(obj: Ctx, peer: str, action: str, size: int | None, publisher: str | None, addr: str | None,
                   as_json: bool) -> None:
    """Dry-run a decision: the outcome and what every applicable rule says, and why.

    Asks the running node (its live trust, history and connections); when no node runs, the
    policy file is judged against this home's ledger, opened read-only. Nothing is counted or
    logged. Exit status 0 whatever the verdict.

    \b
    Examples:
      vouchnet --home ./alice policy explain --peer 12D3KooW... --action serve_request
      vouchnet --home ./alice policy explain --peer 12D3KooW... --action accept_content \\
          --publisher 12D3KooW... --size 1048576 --json
    """
    req = {"op": "policy-explain", "peer": peer, "action": action, "size": size, "publisher": publisher,
           "addr": addr}
    if _live(obj):
        info, where = control.call(obj.home.path, req), "the running node"
    else:
        from overlay.services.policy import explain_args
        svc, ledger = _offline_service(obj, with_trust=True)
        try:
            info = svc.explain(**explain_args(req))
        finally:
            if ledger is not None:
                ledger.close()
        where = ("this home's ledger (no node is running)" if ledger is not None
                 else "nowhere: no node runs and there is no ledger")
    info["from"] = where
    if as_json:
        emit_json(info)
        return
    o = info["outcome"]
    limit = ""
    if o["verdict"] == "limit":
        limit = " (" + ", ".join(x for x in (f"{o['rate']:g} requests/s" if "rate" in o else "",
                                             f"{o['bandwidth']:g} bytes/s" if "bandwidth" in o else "") if x) + ")"
    click.echo(f"{action} for {peer}: {o['verdict'].upper()}{limit} by rule {o['rule']}: {o['reason']}")
    click.echo(f"  policy {info['policy']['source']} (sha256 {info['policy']['digest'][:16]}…); state from {where}")
    c = info["context"]
    first = _time(c["first_seen"] * 1000) if isinstance(c["first_seen"], (int, float)) else "never (counts as now)"
    click.echo(f"  trust: local {c['local_trust']:.6f}, global {c['global_trust']:.6f}, rank {c['rank'] or '-'}; "
               f"interactions {c['interactions']}, first seen {first}; equivocation {c['proven_equivocation']}")
    extra = [f"{k} {c[k]}" for k in ("peer_addr", "content_size", "publisher", "publisher_trust") if c[k] is not None]
    if extra:
        click.echo("  " + "; ".join(extra))
    click.echo("rules, in evaluation order:" if info["steps"] else "no rule applies to this action")
    for s in info["steps"]:
        d = s["decision"]
        click.echo(f"  {s['rule']:<24} {d['verdict'] if d else 'abstain':<8} {d['reason'] if d else ''}")


@policy_group.command("reload")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def policy_reload(obj: Ctx, as_json: bool) -> None:
    """Make the running node re-read its policy file (as SIGHUP does).

    The file is validated first: an invalid file is rejected with its errors and the policy
    in force stays (exit 1).

    \b
    Examples:
      vouchnet --home ./alice policy reload
      kill -HUP <node pid>          # the same, from a script
    """
    if not _live(obj):
        fail(f"no node is running for {obj.home.path}; a node reads its policy when it starts "
             "(check the file with 'vouchnet policy validate')")
    res = control.call(obj.home.path, {"op": "policy-reload"})
    if as_json:
        emit_json(res)
        sys.exit(0 if res["ok"] else 1)
    active = res["active"]
    if res["ok"]:
        for w in res["warnings"]:
            click.echo(w["text"])
        change = "changed" if res.get("changed") else "unchanged"
        click.echo(f"reloaded {res['source']}: {active['rules']} rules, default {active['default']} "
                   f"(sha256 {active['digest'][:16]}…, {change})")
        return
    for e in res["errors"] + res["warnings"]:
        click.echo(e["text"], err=True)
    click.echo(f"error: reload rejected ({len(res['errors'])} error{'s' if len(res['errors']) != 1 else ''}); the "
               f"policy in force stays: {active['source']} (sha256 {active['digest'][:16]}…)", err=True)
    sys.exit(1)


@policy_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def policy_stats(obj: Ctx, as_json: bool) -> None:
    """Decisions of the running node since it started, by rule and by action.

    `refused` counts requests over a LIMIT (answered busy). Denials and limits are also in
    the ledger as policy-decision entries (`vouchnet ledger show --json`).

    \b
    Examples:
      vouchnet --home ./alice policy stats
      vouchnet --home ./alice policy stats --json
    """
    if not _live(obj):
        fail(f"no node is running for {obj.home.path}; past decisions are in its ledger "
             "(vouchnet ledger show --json)")
    st = control.call(obj.home.path, {"op": "policy-stats"})
    if as_json:
        emit_json(st)
        return
    p = st["policy"]
    click.echo(f"policy {p['source']} (sha256 {p['digest'][:16]}…), loaded {_time(p['loaded_at_ms'])}; "
               f"{st['reloads']} reload(s), {st['rejected_reloads']} rejected")
    click.echo(f"{st['decisions']} decisions")
    for title, table in (("rule", st["by_rule"]), ("action", st["by_action"])):
        click.echo(f"  {'by ' + title:<24} {'allow':>8} {'deny':>8} {'limit':>8} {'refused':>8}")
        for name, c in table.items():
            click.echo(f"  {name:<24} {c.get('allow', 0):>8} {c.get('deny', 0):>8} {c.get('limit', 0):>8} "
                       f"{c.get('refused', 0):>8}")
    lg = st["ledger"]
    click.echo(f"ledger: {lg['entries']} policy-decision entries for {lg['decisions']} decisions "
               f"({lg['folded']} folded into per-rule entries), {lg['pending']} pending")
