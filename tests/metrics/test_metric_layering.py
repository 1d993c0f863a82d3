"""Layering: pure metrics sit below training; metrics, jobs, evaluation and bench have no
import cycles (every import counted, also those inside functions)."""

import ast
from pathlib import Path

import unlearnkit

ROOT = Path(unlearnkit.__file__).parent
CHECKED = ("metrics", "jobs", "evaluation", "bench")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    name = ".".join(parts)
    return name.removesuffix(".__init__")


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph() -> dict[str, set[str]]:
    mods = {_module(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
        edges[name] = {t for t in out if t in mods and t != name}
    return edges


def test_metrics_import_nothing_that_trains_or_runs():
    edges = _graph()
    for name, targets in edges.items():
        if name.startswith("unlearnkit.metrics"):
            bad = [
                t
                for t in targets
                if _layer(t) in ("training", "methods", "bench", "evaluation", "jobs", "ssse")
            ]
            assert not bad, f"{name} imports {bad}"


def test_no_import_cycles_in_the_evaluation_and_job_layers():
    edges = _graph()
    sub = {
        m: {t for t in ts if _layer(t) in CHECKED}
        for m, ts in edges.items()
        if _layer(m) in CHECKED
    }
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sub.get(m, ()):
            assert state.get(t) != 1, f"import cycle: {' -> '.join([*path, m, t])}"
            if t not in state:
                visit(t, [*path, m])
        state[m] = 2

    for m in sub:
        if m not in state:
            visit(m, [])
