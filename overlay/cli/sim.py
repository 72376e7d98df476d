"""`vouchnet sim`: EigenTrust's threat models against no reputation, local scoring, EigenTrust
and vouchnet, on a seeded simulated network (docs/evaluation.md)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from overlay.cli.app import emit_json, fail, main
from overlay.sim.realnet import DEFAULT_MODES

_MODELS = "ABCDEFGH"
_SIM_ONLY = {"model", "malicious", "peers", "queries", "sweep", "fractions", "variants", "damping", "trust_floor",
             "anchors", "answer_all", "no_served_credit", "workers", "plot_dir"}
_REAL_ONLY = {"nodes", "adversaries", "publishers", "modes", "time_limit", "workdir"}


def _models(value: str) -> list[str]:
    v = value.strip().upper()
    if v == "ALL":
        return list(_MODELS)
    out = []
    for m in v.replace(",", ""):
        if m not in _MODELS:
            raise click.BadParameter(f"{value!r}: models are A..H or 'all'", param_hint="--model")
        if m not in out:
            out.append(m)
    return out


def _fractions(value: str | None) -> list[float]:
    from overlay.sim import SWEEP_FRACTIONS

    if not value:
        return list(SWEEP_FRACTIONS)
    try:
        out = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: a comma-separated list of fractions", param_hint="--fractions")
    if not out or any(not 0 <= f < 1 for f in out):
        raise click.BadParameter("fractions must be in [0, 1)", param_hint="--fractions")
    return out


@main.command("sim")
@click.option("--model", "model", default="A", show_default=True,
              help="Threat model A..H (several: ABD), or 'all'.")
@click.option("--malicious", type=click.FloatRange(0.0, 0.95), default=0.4, show_default=True,
              help="Fraction of malicious peers (ignored with --sweep).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed: same seed, same numbers.")
@click.option("--peers", type=click.IntRange(10, 10_000), default=100, show_default=True, help="Peers at the start.")
@click.option("--rounds", type=click.IntRange(1, 10_000), default=None, help="Rounds (default 30; --real: 2).")
@click.option("--queries", type=click.IntRange(1, 100), default=None, help="Queries per peer per round (default 2).")
@click.option("--sweep", is_flag=True, help="Every fraction of --fractions (0.1..0.7) for each model.")
@click.option("--fractions", default=None, help="Comma-separated malicious fractions for --sweep.")
@click.option("--variants", default="none,local,eigentrust,vouchnet", show_default=True,
              help="Which provider-choice variants to run.")
@click.option("--damping", type=click.FloatRange(0.01, 1.0), default=None,
              help="vouchnet's reputation.damping (default 0.5; the node's default is 0.15).")
@click.option("--anchors", type=click.IntRange(0, 20), default=None,
              help="vouchnet's reputation.anchors: honest peers each peer knows out of band (default 1).")
@click.option("--trust-floor", type=click.FloatRange(0.0, 0.99), default=None,
              help="vouchnet's reputation.trust_floor (default 0.0, as the node).")
@click.option("--answer-all", is_flag=True, help="Malicious peers answer every query (a harsher workload).")
@click.option("--no-served-credit", is_flag=True,
              help="What-if, not the node: serving a peer earns it no trust.")
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Processes for several runs (--sweep, several models).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable results.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write PNG and SVG figures to this folder.")
@click.option("--real", is_flag=True, help="Real node processes on 127.0.0.1 instead (see 'Real network' above).")
@click.option("--nodes", type=click.IntRange(4, 64), default=24, show_default=True, help="--real: node processes.")
@click.option("--adversaries", type=click.IntRange(0, 32), default=4, show_default=True,
              help="--real: how many of them are adversaries (tests/adversary.py).")
@click.option("--publishers", type=click.IntRange(1, 16), default=3, show_default=True,
              help="--real: honest nodes that publish a file each round.")
@click.option("--modes", "modes", default=",".join(DEFAULT_MODES), show_default=True,
              help="--real: adversary modes, assigned in turn.")
@click.option("--time-limit", type=click.FloatRange(60, 3600), default=420, show_default=True,
              help="--real: seconds the whole run may take before it is stopped.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="--real: keep the node homes and logs here (default: a temporary folder, removed).")
def sim(model: str, malicious: float, seed: int, peers: int, rounds: int | None, queries: int | None, sweep: bool,
        fractions: str | None, variants: str, damping: float | None, anchors: int | None, trust_floor: float | None,
        answer_all: bool,
        no_served_credit: bool, workers: int, as_json: bool, plot_dir: Path | None, real: bool, nodes: int,
        adversaries: int, publishers: int, modes: str, time_limit: float, workdir: Path | None) -> None:
    """Simulate attacks on reputation: EigenTrust's threat models, four provider-choice variants.

    N peers query for files, pick a provider among those that answer, download and rate the
    result; malicious peers serve validly signed junk (only reputation can catch it) or
    corrupted chunks (Merkle proofs catch them). Every variant plays the same queries with the
    same seed: no reputation, GossipSub-style local scoring, plain EigenTrust, and vouchnet
    (the node's own trust, distrust rule and policy code).

    \b
    Threat models:
      A independent malicious    B malicious collective     C camouflaged collective
      D spies                    E sybil flood              F whitewashing
      G slander                  H oscillation

    \b
    Real network (--real): N real node processes on 127.0.0.1, some of them adversaries
    (corrupt chunks, wrong indexes, equivocation, stalls), publishers sharing a file per
    round and honest nodes fetching them; reports whether inauthentic data was accepted,
    wasted bandwidth, when each adversary was distrusted by every honest node and whether
    fetches stopped using it, gossip propagation and overhead. 24 nodes: about 5 minutes on 2 cores.

    \b
    Examples:
      vouchnet sim --model A --malicious 0.4 --seed 1
      vouchnet sim --model all --sweep --plot docs/img
      vouchnet sim --model B --peers 1000 --rounds 10 --json
      vouchnet sim --real --nodes 24 --adversaries 4 --seed 1
    """
    ctx = click.get_current_context()
    given = {n for n in ctx.params if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    if real:
        wrong = sorted(given & _SIM_ONLY)
        if wrong:
            raise click.UsageError(f"--real does not take --{wrong[0].replace('_', '-')}")
        _run_real(nodes, adversaries, publishers, rounds, seed, modes, time_limit, workdir, as_json)
        return
    wrong = sorted(given & _REAL_ONLY)
    if wrong:
        raise click.UsageError(f"--{wrong[0].replace('_', '-')} needs --real")
    from overlay.sim import SimConfig, run
    from overlay.sim import sweep as run_sweep
    from overlay.sim.config import VARIANTS

    names = tuple(v.strip() for v in variants.split(",") if v.strip())
    bad = [v for v in names if v not in VARIANTS]
    if bad or not names:
        raise click.BadParameter(f"unknown variant(s) {', '.join(bad) or '(none)'}; choose from "
                                 f"{', '.join(VARIANTS)}", param_hint="--variants")
    models = _models(model)
    extra: dict = {}
    if rounds is not None:
        extra["rounds"] = rounds
    if queries is not None:
        extra["queries"] = queries
    if damping is not None:
        extra["vn_damping"] = damping
    if anchors is not None:
        extra["anchors"] = anchors
    if trust_floor is not None:
        extra["trust_floor"] = trust_floor
    if answer_all:
        extra["mal_files"] = 0
    if no_served_credit:
        extra["served_credit"] = False
    try:
        base = SimConfig(model=models[0], malicious=malicious, seed=seed, peers=peers, variants=names, **extra)
    except ValueError as exc:
        fail(str(exc))
    fracs = _fractions(fractions) if sweep else [malicious]

    t0 = time.perf_counter()
    if len(models) * len(fracs) == 1:
        results = [run(base)]
    else:
        progress = None
        if not as_json:
            total = len(models) * len(fracs)
            done = [0]

            def progress(r: dict) -> None:
                done[0] += 1
                click.echo(f"  [{done[0]}/{total}] model {r['model']} at {100 * r['malicious']:.0f}% malicious: "
                           f"{r['seconds']:.1f} s", err=True)
        results = run_sweep(base, models=models, fractions=fracs, workers=workers, progress=progress)
    seconds = time.perf_counter() - t0

    written: list[Path] = []
    if plot_dir is not None:
        from overlay.sim.plot import plot_rounds, plot_sweep
        written = plot_sweep(results, plot_dir) if sweep else plot_rounds(results, plot_dir)

    if as_json:
        emit_json({"config": base.to_dict(), "runs": results, "seconds": round(seconds, 3),
                   "plots": [str(p) for p in written]})
        return

    from rich.console import Console

    from overlay.sim.report import k_text, run_table, sweep_table

    console = Console()
    if len(results) == 1:
        console.print(run_table(results[0]))
    else:
        console.print(sweep_table(results, "frac_inauthentic"))
        console.print(sweep_table(results, "wasted"))
        for name in base.variants:
            worst = max(results, key=lambda r: r["variants"][name]["frac_unserved"])
            console.print(f"{name}: unserved queries at most {100 * worst['variants'][name]['frac_unserved']:.1f}% "
                          f"(model {worst['model']}, {100 * worst['malicious']:.0f}% malicious)")
    for r in results:
        nk = r["variants"].get("vouchnet", {}).get("newcomers")
        if nk and nk.get("newcomers") and len(results) == 1:
            console.print(f"Honest newcomers ({nk['newcomers']}, joining at round {base.join_at}): {k_text(nk)}.")
    if not base.served_credit:
        console.print("[yellow]what-if run: --no-served-credit is not how the node behaves[/yellow]")
    console.print(f"{len(results)} run(s) in {seconds:.1f} s" + (f"; plots: {plot_dir}" if written else ""))


def _run_real(nodes: int, adversaries: int, publishers: int, rounds: int | None, seed: int, modes: str,
              time_limit: float, workdir: Path | None, as_json: bool) -> None:
    from overlay.sim.realnet import RealnetConfig, RealnetError, run_real

    try:
        cfg = RealnetConfig(nodes=nodes, adversaries=adversaries, publishers=publishers, seed=seed,
                            modes=tuple(m.strip() for m in modes.split(",") if m.strip()), time_limit=time_limit,
                            workdir=workdir, **({"rounds": rounds} if rounds is not None else {}))
    except ValueError as exc:
        raise click.UsageError(str(exc))
    try:
        result = run_real(cfg, progress=lambda msg: click.echo(f"  {msg}", err=True)).to_dict()
    except KeyboardInterrupt:
        fail("interrupted; every node process was stopped", 130)
    except RealnetError as exc:
        fail(str(exc))
    if as_json:
        emit_json(result)
        return
    from rich.console import Console

    from overlay.sim.report import realnet_tables

    console = Console() if sys.stdout.isatty() else Console(width=200)  # a file gets whole rows
    for table in realnet_tables(result):
        console.print(table)
