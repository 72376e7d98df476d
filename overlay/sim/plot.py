"""Figures like EigenTrust's: fraction of inauthentic downloads against fraction of malicious
peers, one line per variant, one figure per threat model (PNG and SVG, matplotlib Agg)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from overlay.sim.config import MODELS
from overlay.sim.report import variants_of

STYLE = {
    "none": {"color": "#7f7f7f", "marker": "o", "linestyle": "--", "label": "no reputation"},
    "local": {"color": "#ff7f0e", "marker": "s", "linestyle": "-.", "label": "local scoring (GossipSub-style)"},
    "eigentrust": {"color": "#1f77b4", "marker": "^", "linestyle": ":", "label": "EigenTrust (global pre-trust)"},
    "vouchnet": {"color": "#2ca02c", "marker": "D", "linestyle": "-", "label": "vouchnet"},
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.hashsalt"] = "vouchnet-sim"  # stable element IDs: reproducible SVGs
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    fig.savefig(paths[0], dpi=120, metadata={"Software": None})
    fig.savefig(paths[1], metadata={"Date": None, "Creator": None})
    return paths


def _by_model(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        out.setdefault(r["model"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["malicious"])
    return out


def _draw_model(ax: Any, model: str, runs: list[dict[str, Any]], metric: str, legend: bool) -> None:
    xs = [r["malicious"] for r in runs]
    for name in variants_of(runs):
        ax.plot(xs, [r["variants"][name][metric] for r in runs], **STYLE[name])
    ax.set_xlim(0, max(0.75, max(xs) + 0.05))
    ax.set_ylim(0, 1)
    ax.set_xlabel("fraction of malicious peers")
    ax.set_ylabel("fraction of inauthentic downloads" if metric == "frac_inauthentic" else "wasted bandwidth")
    ax.set_title(f"Threat model {model}: {MODELS[model].split(':')[0]}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if legend:
        ax.legend(fontsize=8, loc="upper left")


def plot_sweep(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """One figure per model, plus all models on one page; returns the files written."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    by_model = _by_model(results)
    for model, runs in by_model.items():
        fig, ax = plt.subplots(figsize=(5.5, 4))
        _draw_model(ax, model, runs, "frac_inauthentic", legend=True)
        fig.tight_layout()
        written += _save(fig, out, f"sim-model-{model}")
        plt.close(fig)
    if len(by_model) > 1:
        for metric, stem in (("frac_inauthentic", "sim-all-models"), ("wasted", "sim-all-models-wasted")):
            n = len(by_model)
            cols = 4 if n > 4 else n
            rows = -(-n // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.4 * rows), squeeze=False)
            for k, (model, runs) in enumerate(by_model.items()):
                _draw_model(axes[k // cols][k % cols], model, runs, metric, legend=(k == 0))
            for k in range(n, rows * cols):
                axes[k // cols][k % cols].axis("off")
            fig.tight_layout()
            written += _save(fig, out, stem)
            plt.close(fig)
    return written


def plot_rounds(results: list[dict[str, Any]], out: Path) -> list[Path]:
    """Single runs: the fraction of inauthentic downloads per round, one line per variant."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for r in results:
        fig, ax = plt.subplots(figsize=(5.5, 4))
        for name in variants_of([r]):
            per = r["variants"][name]["per_round"]
            ys = [b / a if a else 0.0 for a, b in per]
            ax.plot(range(len(ys)), ys, **{**STYLE[name], "markersize": 3})
        ax.set_ylim(0, 1)
        ax.set_xlabel("round")
        ax.set_ylabel("fraction of inauthentic downloads")
        ax.set_title(f"Threat model {r['model']}, {100 * r['malicious']:.0f}% malicious", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written += _save(fig, out, f"sim-rounds-{r['model']}-{int(round(100 * r['malicious']))}")
        plt.close(fig)
    return written
