"""Tables for the terminal (rich) and the markdown table of docs/evaluation.md."""
from __future__ import annotations

from typing import Any, Iterable

from overlay.sim.config import MODELS, VARIANTS


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ratio(base: float, x: float) -> str:
    if x <= 0:
        return "inf" if base > 0 else "-"
    return f"{base / x:.1f}x"


def variants_of(results: Iterable[dict[str, Any]]) -> list[str]:
    seen: list[str] = []
    for r in results:
        for v in r["variants"]:
            if v not in seen:
                seen.append(v)
    return [v for v in VARIANTS if v in seen]


def k_text(nk: dict[str, Any] | None) -> str:
    """'normal service after 14 interactions as a requester (median, max 38), ...'."""
    if not nk or not nk.get("newcomers"):
        return "no newcomers"
    parts = []
    for side, label in (("serve", "as a requester"), ("provider", "as a provider")):
        s = nk[side]
        if s["k_median"] is None:
            parts.append(f"not within the run {label}")
        else:
            pend = f", {s['pending']} of {nk['newcomers']} not yet" if s["pending"] else ""
            parts.append(f"after {s['k_median']:g} interactions {label} (median, max {s['k_max']}{pend})")
    return "normal service " + "; ".join(parts)


def run_table(result: dict[str, Any]):
    """One run: a row per variant."""
    from rich.table import Table

    t = Table(title=f"Threat model {result['model']} ({MODELS[result['model']]}), "
                    f"{100 * result['malicious']:.0f}% malicious, {result['peers']} peers, "
                    f"{result['rounds']} rounds, seed {result['seed']}", title_justify="left")
    for col, just in (("variant", "left"), ("downloads", "right"), ("inauthentic", "right"), ("wasted", "right"),
                      ("unserved", "right"), ("vs none", "right"), ("time", "right")):
        t.add_column(col, justify=just, no_wrap=True)
    base = result["variants"].get("none", {}).get("frac_inauthentic")
    for name in variants_of([result]):
        v = result["variants"][name]
        t.add_row(name, str(v["downloads"]), _pct(v["frac_inauthentic"]), _pct(v["wasted"]),
                  _pct(v["frac_unserved"]), _ratio(base, v["frac_inauthentic"]) if base is not None else "-",
                  f"{v['seconds']:.1f} s")
    return t


def sweep_table(results: list[dict[str, Any]], metric: str = "frac_inauthentic"):
    """Many runs: a row per (model, fraction), a column per variant."""
    from rich.table import Table

    title = {"frac_inauthentic": "Fraction of inauthentic downloads",
             "wasted": "Honest peers' wasted bandwidth"}[metric]
    names = variants_of(results)
    t = Table(title=title, title_justify="left")
    t.add_column("model", no_wrap=True)
    t.add_column("malicious", justify="right", no_wrap=True)
    for n in names:
        t.add_column(n, justify="right", no_wrap=True)
    if "none" in names and "vouchnet" in names:
        t.add_column("none/vouchnet", justify="right", no_wrap=True)
    for r in results:
        v = r["variants"]
        row = [r["model"], f"{100 * r['malicious']:.0f}%"] + [_pct(v[n][metric]) for n in names]
        if "none" in names and "vouchnet" in names:
            row.append(_ratio(v["none"][metric], v["vouchnet"][metric]))
        t.add_row(*row)
    return t


def markdown_table(results: list[dict[str, Any]]) -> str:
    """The docs table: inauthentic and wasted per variant, the ratio to no reputation, K."""
    names = variants_of(results)
    head = ["model", "malicious"] + [f"{n} inauth." for n in names] + [f"{n} wasted" for n in names]
    head += ["none / vouchnet", "vouchnet unserved"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        v = r["variants"]
        cells = [r["model"], f"{100 * r['malicious']:.0f}%"]
        cells += [_pct(v[n]["frac_inauthentic"]) for n in names] + [_pct(v[n]["wasted"]) for n in names]
        cells.append(_ratio(v["none"]["frac_inauthentic"], v["vouchnet"]["frac_inauthentic"])
                     if "none" in v and "vouchnet" in v else "-")
        cells.append(_pct(v["vouchnet"]["frac_unserved"]) if "vouchnet" in v else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f} ms"


def _secs(x: float | None) -> str:
    return "never" if x is None else f"{x:.1f} s"


def realnet_tables(result: dict[str, Any]) -> list[Any]:
    """`vouchnet sim --real` (overlay/sim/realnet.py): adversaries, then the network's figures."""
    from rich.table import Table

    c = result["config"]
    adv = Table(title=f"Real network: {c['nodes']} node processes on 127.0.0.1 ({c['adversaries']} adversaries), "
                      f"{c['rounds']} rounds, seed {c['seed']}", title_justify="left")
    for col in ("adversary", "mode", "asked per round", "skipped per round", "bad chunks", "good chunks",
                "distrusted by", "by all at", "stopped"):
        adv.add_column(col, justify="left" if col in ("adversary", "mode") else "right", no_wrap=True)
    for a in result["adversaries"]:
        at = _secs(a["all_distrusted_s"])
        if a["all_distrusted_round"] is not None:
            at += f" (round {a['all_distrusted_round']})"
        adv.add_row(a["name"], a["mode"], " ".join(map(str, a["asked_by_round"])),
                    " ".join(map(str, a["skipped_by_round"])), str(a["bad_chunks"]), str(a["authentic_chunks"]),
                    f"{a['distrusted_by']}/{a['honest']}", at,
                    "yes" if a["stopped"] else f"no ({a['asked_after_all_distrusted']} after)")
    p, o, used = result["propagation"], result["overhead"], result["fetches_asking_adversary"]
    net = Table(title="Fetches, gossip and overhead", title_justify="left", show_header=False)
    net.add_column("figure", no_wrap=True)
    net.add_column("value")
    cpu = f", node processes used {o['cpu_cores']:.2f} cores" if o.get("cpu_cores") is not None else ""
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in result["phases_s"].items())
    rows = [
        ("rounds", f"{len(result['rounds'])} of {c['rounds']}" + ("" if len(result["rounds"]) == c["rounds"]
                                                                  else " (time limit)")),
        ("fetches completed", f"{result['fetches_ok']} of {result['fetches']}"),
        ("inauthentic data accepted", f"{result['inauthentic_accepted']} fetches (outputs compared byte for byte)"),
        ("fetches that used an adversary", f"{used} ({_pct(used / result['fetches'] if result['fetches'] else None)})"),
        ("chunks received", f"{result['chunks_verified']} verified ({result['chunks_from_adversaries']} of them from "
                            f"adversaries), {result['bad_chunks']} refused"),
        ("wasted bandwidth", f"{_pct(result['wasted_fraction'])} of chunks received were refused"),
        ("honest peers distrusted", f"{len(result['honest_distrusted'])} (honest node, honest peer) pairs at the end, "
                                    f"{result['honest_distrusted_ever']} at some point; the fetcher distrusted the "
                                    f"publisher in {result['fetches_publisher_skipped']} fetches"),
        *[(f"  evidence against {peer}", ", ".join(f"{k} {n}" for k, n in sorted(ev.items())))
          for peer, ev in result["honest_distrusted_evidence"].items()],
        ("attestation to 99% of honest nodes", f"median {_ms(p['t99_median_ms'])}, p90 {_ms(p['t99_p90_ms'])}, "
                                               f"max {_ms(p['t99_max_ms'])} ({p['reached']} of {p['attestations']} "
                                               f"attestations, {p['receivers']} receivers; to 50%: median "
                                               f"{_ms(p['t50_median_ms'])}; {p['missed']} deliveries missing, "
                                               f"{p['missed_by_distrusting']} of them at nodes that distrusted "
                                               f"the issuer at some point)"),
        ("gossip per node per minute", f"{o['messages_sent']['mean']:.0f} messages / {o['rpcs_sent']['mean']:.0f} "
                                       f"RPCs / {o['bytes_sent']['mean'] / 1024:.0f} KiB sent, "
                                       f"{o['messages_received']['mean']:.0f} / {o['rpcs_received']['mean']:.0f} / "
                                       f"{o['bytes_received']['mean'] / 1024:.0f} KiB received (mean of "
                                       f"{o['nodes']} honest nodes over {o['window_s']:.0f} s{cpu})"),
        ("fetch op, median seconds per step", ", ".join(f"{k} {v:.2f}" for k, v in
                                                         result.get("fetch_phases_median_s", {}).items()) or "-"),
        ("distrust poll resolution", f"{result['poll_resolution_s']:.2f} s per sweep"),
        ("wall time", f"{result['wall_s']:.0f} s ({phases})"),
    ]
    for k, v in rows:
        net.add_row(k, v)
    return [adv, net]
