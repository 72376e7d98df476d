"""Node commands: run a node, and talk to a running one through its control socket."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from overlay.node import control
from overlay.cli.app import Ctx, emit_json, fail, main, progress
from overlay.cli.paging import page_options, paged
from overlay.config import load_config


@main.group()
def node() -> None:
    """Run a vouchnet node."""


@node.command("run")
@click.option("--listen", multiple=True, help="Multiaddr to listen on (repeatable; default from config).")
@click.option("--bootstrap", multiple=True, help="Full multiaddr (…/p2p/ID) of a peer to dial (repeatable).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Config file (default: config.toml in the home folder).")
@click.pass_obj
def node_run(obj: Ctx, listen: tuple[str, ...], bootstrap: tuple[str, ...], config_file: Path | None) -> None:
    """Run a node in the foreground until Ctrl-C / SIGTERM.

    The node listens with TCP + Noise + Yamux (no plaintext), serves its complete content,
    answers `vouchnet status|peers|fetch|share` on a control socket in the home folder, and
    prints its peer ID and listen addresses.

    \b
    Examples:
      vouchnet --home ./alice node run --listen /ip4/127.0.0.1/tcp/4001
      vouchnet --home ./bob node run --bootstrap /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW...
    """
    identity = obj.identity()
    cfg = load_config(config_file or obj.home.config_file)
    from overlay.net.listen import ListenError, check_listen_addrs
    try:
        # Before anything is opened: a port another process holds is refused, not shared (H8).
        check_listen_addrs(list(listen) or cfg.listen)
        import trio

        from overlay.node.daemon import Node, write_ready_line
        n = Node(obj.home, identity, cfg, listen=list(listen) or None, bootstrap=list(bootstrap))
        trio.run(n.run, write_ready_line)
    except ListenError as exc:
        fail(str(exc), exc.exit_code)
    click.echo("node stopped", err=True)


def _call(obj: Ctx, req: dict, timeout: float = 30.0, on_event=None):
    return control.call(obj.home.path, req, timeout=timeout, on_event=on_event)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@click.pass_obj
def status(obj: Ctx, as_json: bool) -> None:
    """Show the running node's peer ID, addresses, peers and content.

    \b
    Example:
      vouchnet --home ./alice status
    """
    info = _call(obj, {"op": "status"})
    if as_json:
        emit_json(info)
        return
    click.echo(f"peer ID:    {info['peer_id']}")
    for a in info["addrs"]:
        click.echo(f"listening:  {a}")
    click.echo(f"peers:      {info['connected_peers']} connected, {info['dht_routing_table']} in the DHT table")
    click.echo(f"content:    {info['complete']} complete, {info['contents'] - info['complete']} partial")
    click.echo(f"uptime:     {info['uptime_s']} s")
    age = info.get("trust_snapshot_age_s")
    click.echo(f"trust:      {'no snapshot yet' if age is None else f'last snapshot {age:.1f} s ago'}")
    conns = info.get("connections")
    if conns:  # [limits]: inbound connections in use / limit, and refusals by reason
        lim, use = conns["limits"], conns["in_use"]
        click.echo(f"inbound:    {use['total']}/{lim['total']} connections ({use['strangers']}/{lim['strangers']} "
                   f"strangers, {use['trusted']} trusted), {use['pending']}/{lim['pending']} in handshake")
        click.echo(f"            per peer {lim['per_peer']}, per IP {use['max_per_ip']}/{lim['per_ip']}, "
                   f"per subnet {use['max_per_subnet']}/{lim['per_subnet']}")
        refused = ", ".join(f"{k} {v}" for k, v in conns["refused"].items() if v) or "none"
        click.echo(f"refused:    {refused}")
    streams = info.get("streams")
    if streams:  # [limits]: content requests being answered / waiting for their request
        lim, use = streams["limits"], streams["in_use"]
        click.echo(f"requests:   {use['serving']}/{lim['total']} answered ({use['strangers']}/{lim['strangers']} "
                   f"strangers, {use['trusted']} trusted), {use['pending']}/{lim['pending']} arriving, "
                   f"per peer {lim['per_peer']}")
        refused = ", ".join(f"{k} {v}" for k, v in streams["refused"].items() if v) or "none"
        click.echo(f"refused:    {refused}")
    intake = info.get("gossip_intake")
    if intake:  # per-issuer caps on gossip (trust.intake): what is held, and drops by reason
        lim = intake["limits"]
        click.echo(f"gossip:     {intake['held']}/{lim['total']} attestations held from {intake['issuers']} issuers "
                   f"({intake['held_strangers']}/{lim['strangers_total']} from strangers)")
        dropped = ", ".join(f"{k} {v}" for k, v in intake["dropped"].items() if v) or "none"
        click.echo(f"dropped:    {dropped}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output.")
@page_options("peer")
@click.pass_obj
def peers(obj: Ctx, as_json: bool, limit: int | None, after: str | None) -> None:
    """List known peers: connection state, addresses and what this node observed of them.

    The node answers in pages; all of them are shown unless --limit asks for one (the command
    for the next page is then printed on stderr). At most 8 addresses are listed per peer.

    \b
    Examples:
      vouchnet --home ./alice peers --json
      vouchnet --home ./alice peers --limit 50 --after 12D3KooW...
    """
    rows = paged(obj.home.path, {"op": "peers"}, "peers", limit, after, "peers")
    if as_json:
        emit_json(rows)
        return
    from rich.console import Console
    from rich.table import Table
    table = Table("peer ID", "state", "address", "observations", "verdict")
    for r in rows:
        obs = ", ".join(f"{k}={v}" for k, v in sorted(r["observations"].items())) or "-"
        addr = (r["addrs"] or ["-"])[0]
        more = r.get("addrs_total", len(r["addrs"])) - 1
        table.add_row(r["peer_id"], "connected" if r["connected"] else "seen",
                      addr + (f" (+{more} more)" if more > 0 else ""), obs,
                      "[red]misbehaved[/]" if r["misbehaved"] else "ok")
    Console().print(table)


@main.command()
@click.argument("addr")
@click.pass_obj
def connect(obj: Ctx, addr: str) -> None:
    """Dial a peer by full multiaddr (…/p2p/<peer ID>) from the running node."""
    info = _call(obj, {"op": "connect", "addr": addr})
    click.echo(f"connected to {info['peer_id']}")


@main.command()
@click.argument("cid")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the verified content here (atomically).")
@click.option("--from", "providers", multiple=True, help="Provider multiaddr to use (repeatable).")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable output (no progress bar).")
@click.pass_obj
def fetch(obj: Ctx, cid: str, output: Path | None, providers: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Fetch content by CID through the running node, verifying every chunk before it is written.

    Providers come from --from, the DHT and connected peers; several are used in parallel. An
    interrupted fetch resumes where it stopped. Providers the local policy refuses are skipped
    and listed with the rule that refused them; the fetch fails only if none is left.

    \b
    Example:
      vouchnet --home ./bob fetch bafyr... -o ./report.pdf
    """
    if output is not None and output.exists() and not force:
        fail(f"{output} already exists (pass --force to replace it)")
    req = {"op": "fetch", "cid": cid, "output": str(output.resolve()) if output else None,
           "providers": list(providers), "force": force}
    bar = None
    if not as_json and sys.stderr.isatty():
        bar = progress(0, f"fetching {cid[:12]}…")
    if bar is None:
        result = _call(obj, req, timeout=3600)
    else:
        with bar as update:
            def on_event(ev: dict) -> None:
                if ev.get("event") == "progress":
                    update(ev["done"], ev["total"])
            result = _call(obj, req, timeout=3600, on_event=on_event)
    if as_json:
        emit_json(result)
        return
    click.echo(f"fetched {result['cid']}: {result['size']} bytes, {result['chunks']} chunks verified "
               f"in {result['seconds']} s")
    for peer, st in result["providers"].items():
        note = f"  DROPPED ({st['dropped']})" if st["dropped"] else ""
        click.echo(f"  {peer}: {st['chunks']} chunks{note}")
    for peer, why in result.get("refused_by_policy", {}).items():
        click.echo(f"  {peer}: skipped, {why}")
    if output:
        click.echo(f"wrote {output}")


@node.command("stop")
@click.pass_obj
def node_stop(obj: Ctx) -> None:
    """Ask the running node to stop."""
    _call(obj, {"op": "stop"})
    click.echo("stopping")


