"""Reputation commands: rate content, show trust, explain a score."""
from __future__ import annotations

from typing import Any

import click

from overlay.node import control
from overlay.cli.app import Ctx, emit_json, main
from overlay.cli.paging import page_options, paged


def _offline(obj: Ctx):
    """The node's reputation service opened from disk when no node runs (same code, no gossip)."""
    from overlay.config import load_config
    from overlay.services.reputation import ReputationService
    cfg = load_config(obj.home.config_file)
    service = ReputationService(obj.home.path, obj.identity(), anchors=cfg.anchors, damping=cfg.damping,
                                trust_floor=cfg.trust_floor)
    service._refresh_distrust()
    return service


def _query(obj: Ctx, req: dict[str, Any]) -> Any:
    if control.node_running(obj.home.path):
        return control.call(obj.home.path, req)
    from overlay.node.operations import explain_bounded, rate_content, trust_page
    service = _offline(obj)
    try:
        if req["op"] == "trust":  # the same pages as the node's answer
            return trust_page(service, req)
        if req["op"] == "explain":
            return explain_bounded(service, req["peer"])
        store = obj.store()
        try:
            return rate_content(store, service, req["cid"], req["verdict"], req.get("reason") or "")
        finally:
            store.close()
    finally:
        service.close()


@main.command()
@click.argument("cid")
@click.argument("verdict", type=click.Choice(["good", "bad"]))
@click.option("--reason", default="", help="Why (kept in the ledger, at most 256 characters).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def rate(obj: Ctx, cid: str, verdict: str, reason: str, as_json: bool) -> None:
    """Rate content you fetched as authentic (good) or not (bad).

    Validly signed junk passes every Merkle check; this verdict is what lets reputation catch
    it. It counts as evidence about the publisher and every provider that served the content.

    \b
    Example:
      vouchnet --home ./bob rate bafyr... bad --reason "not the dataset it claims to be"
    """
    out = _query(obj, {"op": "rate", "cid": cid, "verdict": verdict, "reason": reason})
    if as_json:
        emit_json(out)
        return
    click.echo(f"rated {cid} {verdict} (ledger entry {out['ledger_index']}): publisher {out['publisher']}, "
               f"{len(out['providers'])} provider(s)")


@main.group()
def trust() -> None:
    """Show trust scores and explain them."""


@trust.command("show")
@click.argument("peer", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@page_options("row")
@click.pass_obj
def trust_show(obj: Ctx, peer: str | None, as_json: bool, limit: int | None, after: str | None) -> None:
    """Local and global trust, rank and number of attestations, per peer.

    A peer is "reported (N%)" when credible witnesses' attestations call it faulty: N% of their
    weight does. Reported peers are asked for content only after every unreported one.

    \b
    Rows come in pages (by rank); all are shown unless --limit asks for one page, whose
    cursor (for --after) is then printed on stderr.

    \b
    Examples:
      vouchnet --home ./alice trust show
      vouchnet --home ./alice trust show 12D3KooW... --json
      vouchnet --home ./alice trust show --limit 20
    """
    rows = paged(obj.home.path, {"op": "trust", "peer": peer}, "rows", limit, after, "trust show",
                 query=lambda req: _query(obj, req))
    if as_json:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("rank", "peer ID", "local", "global", "attestations", "evidence", "verdict")
    for r in rows:
        ev = ", ".join(f"{k}={v}" for k, v in sorted(r["evidence"].items())) or "-"
        verdict = ("[red]equivocated[/]" if r["equivocated"] else "[red]distrusted[/]" if r["distrusted"]
                   else f"[yellow]reported ({r['fault_reports']:.0%})[/]" if r.get("fault_reports") else "ok")
        pid = r["peer_id"]
        table.add_row(str(r["rank"] or "-"), f"{pid[:12]}…{pid[-6:]}", f"{r['local']:.4f}", f"{r['global']:.4f}",
                      str(r["attestations"]), ev, verdict)
    Console().print(table)


@trust.command("explain")
@click.argument("peer")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def trust_explain(obj: Ctx, peer: str, as_json: bool) -> None:
    """The evidence and attestations behind a peer's score, each with its ledger entry.

    \b
    Example:
      vouchnet --home ./alice trust explain 12D3KooW...
    """
    out = _query(obj, {"op": "explain", "peer": peer})
    if as_json:
        emit_json(out)
        return
    click.echo(f"peer {out['peer_id']}: local trust {out['local']:.4f}, global trust {out['global']:.4f}"
               + ("  [EQUIVOCATED: trust forced to 0]" if out["equivocated"] else ""))
    click.echo(f"first-hand evidence ({len(out['evidence'])} ledger entries):")
    for e in out["evidence"]:
        b = e["body"]
        what = b.get("kind") or b.get("verdict") or e["kind"]
        detail = b.get("ev") or b.get("reason") or ""
        click.echo(f"  #{e['ledger_index']:<6} {e['kind']:<12} {what:<18} x{b.get('n', 1)} {detail}")
    click.echo(f"attestations about this peer ({len(out['attestations_about'])}):")
    for a in out["attestations_about"]:
        click.echo(f"  #{a['ledger_index']:<6} from {a['issuer']}: {a['value']:.4f} (seq {a['seq']})")
    if out["our_attestation"]:
        a = out["our_attestation"]
        click.echo(f"our own attestation: #{a['ledger_index']} value {a['value']:.4f} (seq {a['seq']})")
