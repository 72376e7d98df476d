"""The import rules of docs/architecture.md, checked on the source (every import, also those
inside functions), and the packages that document lists."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("trust", "policy", "overlay")

# (importer prefix, forbidden prefix, why): what docs/architecture.md says may not import what.
RULES = [
    ("trust", "policy", "trust is pure logic beneath policy"),
    ("trust", "overlay", "trust is pure logic beneath the node"),
    ("policy", "overlay", "policy makes pure decisions"),
    ("overlay.wire", "overlay.net", "the protocol is sans-IO"),
    ("overlay.wire", "overlay.services", "the protocol is sans-IO"),
    ("overlay.wire", "overlay.node", "the protocol is sans-IO"),
    ("overlay.store", "overlay.net", "the store knows no network"),
    ("overlay.store", "overlay.services", "the store knows no network"),
    ("overlay.store", "overlay.node", "the store knows no network"),
    ("overlay.net", "overlay.services", "net faces py-libp2p, below the services"),
    ("overlay.net", "overlay.node", "net faces py-libp2p, below the node"),
    ("overlay.services", "overlay.node", "services run inside the node, not above it"),
    ("overlay.node", "overlay.sim", "the daemon never needs the simulator"),
    ("overlay.node", "overlay.cli", "the daemon never needs the command line"),
    ("overlay.node", "overlay.lab", "the daemon never needs the test lab"),
]


def modules() -> dict[str, Path]:
    out = {}
    for top in LIBRARY:
        for path in (ROOT / top).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Library modules ``name`` imports, at any depth in its code (relative imports resolved)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports_of(name, path, set(mods)) for name, path in mods.items()}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_layers_import_only_downwards(graph):
    broken = [f"{a} imports {b}: {why}" for a, deps in graph.items() for b in deps
              for src, dst, why in RULES if _under(a, src) and _under(b, dst)]
    assert not broken, "\n".join(sorted(broken))


def test_nothing_imports_the_cli(graph):
    users = sorted(f"{a} -> {b}" for a, deps in graph.items() for b in deps
                   if _under(b, "overlay.cli") and not _under(a, "overlay.cli"))
    assert not users, users


def test_no_import_circle(graph):
    """Tarjan's strongly connected components over the module graph: each must be one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_the_checker_sees_hidden_and_relative_imports(tmp_path):
    """The checks can fail: an import hidden in a function and relative imports are found."""
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from overlay.cli import app\n")
    assert imports_of("overlay.wire.x", a, {"overlay.cli", "overlay.cli.app"}) == {"overlay.cli", "overlay.cli.app"}
    rel = tmp_path / "b.py"
    rel.write_text("from . import protocol\nfrom ..net import host\n")
    known = {"overlay.wire.protocol", "overlay.net.host", "overlay.wire.b"}
    assert imports_of("overlay.wire.b", rel, known) == {"overlay.wire.protocol", "overlay.net.host"}


def test_architecture_doc_lists_packages_that_exist():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    listed = set(re.findall(r"^\| `((?:trust|policy|overlay)[\w./]*)/?` \|", doc, re.M))
    assert listed, "docs/architecture.md has no package table"
    missing = sorted(p for p in listed if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "overlay").rglob("__init__.py")}
    unlisted = sorted(p for p in packages if p not in {x.rstrip("/") for x in listed}
                      and not p.startswith("overlay/net/libp2p_compat"))
    assert not unlisted, f"packages missing from docs/architecture.md: {unlisted}"
