"""`make bench`: run every benchmark and rewrite docs/benchmarks.md with the ratios.

Each benchmark measures its baseline in the same run. `--quick` runs smaller inputs (for a
smoke check); the committed docs come from a full run. `--only NAME` runs some of them and
prints the table; with `--update` it also replaces those benchmarks' own section of the doc
(between `<!-- bench:NAME -->` markers) and leaves the rest as it was.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
from pathlib import Path

from benchmarks.common import Result

BENCHMARKS = ["bench_merkle", "bench_records", "bench_trust", "bench_ledger", "bench_policy", "bench_stream", "bench_fetch", "bench_hostile"]
DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def _fmt(value: float, unit: str) -> str:
    return f"{value * 1000:.1f} ms" if unit == "s" else f"{value:.1f} {unit}"


def render(results: dict[str, list[Result]], quick: bool) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks.run`). Every figure is a ratio against a baseline",
        "measured in the same run on the same machine, so a noisy machine moves both sides alike.",
        "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {machine()}",
        f"- mode: {'quick (smaller inputs)' if quick else 'full'}",
        "",
        "| benchmark | baseline | subject | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for mod, rs in results.items():
        for r in rs:
            lines.append(f"| {r.name} | {r.baseline} | {_fmt(r.subject_s, r.unit)} | {_fmt(r.baseline_s, r.unit)} | "
                         f"{r.ratio:.3f}x | {r.target} | {'yes' if r.ok else '**no**'} |")
    lines += ["", "## Details", ""]
    for mod, rs in results.items():
        for r in rs:
            if r.detail:
                lines.append(f"- **{r.name}**: {r.detail}")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--update", action="store_true", help="with --only: rewrite those sections of the doc")
    args = ap.parse_args()
    results: dict[str, list[Result]] = {}
    for name in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        try:
            mod = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            print(f"skipping {name}: {exc}", file=sys.stderr)
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = mod.run(quick=args.quick)
        for r in results[name]:
            print(f"   {r.name}: {r.ratio:.3f}x ({r.target}) {'ok' if r.ok else 'MISSED'}", file=sys.stderr, flush=True)
    if not args.only:
        DOC.write_text(render(results, args.quick))
        print(f"wrote {DOC}", file=sys.stderr)
    else:
        print(render(results, args.quick))
        if args.update:
            DOC.write_text(update_sections(DOC.read_text() if DOC.exists() else "", results, args.quick))
            print(f"updated {', '.join(results)} in {DOC}", file=sys.stderr)
    return 0


def update_sections(doc: str, results: dict[str, list[Result]], quick: bool) -> str:
    """Replace (or append) one marked section per benchmark module, keeping everything else."""
    for name, rs in results.items():
        start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
        body = render({name: rs}, quick).replace("# Benchmarks", f"## {name} (run on its own)", 1)
        section = f"{start}\n{body}{end}\n"
        if start in doc and end in doc:
            doc = doc[:doc.index(start)] + section + doc[doc.index(end) + len(end) + 1:]
        else:
            doc = doc.rstrip("\n") + "\n\n" + section
    return doc


if __name__ == "__main__":
    sys.exit(main())
