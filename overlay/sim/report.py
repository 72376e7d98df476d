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
