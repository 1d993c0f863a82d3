"""Helpers of the harness tests: a tiny experiment (seconds, inline or 2 workers), DB reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any


def tiny_config(**overrides: Any) -> dict[str, Any]:
    """digits x a 32-unit MLP, 3 epochs, 2 seeds, a 2-trial search on seed 0."""
    cfg: dict[str, Any] = {
        "name": "tiny",
        "datasets": [{"name": "digits"}],
        "models": [{"name": "mlp", "options": {"width": 32}}],
        "training": {"epochs": 3, "batch_size": 64, "lr": 0.1},
        "methods": ["ft", "ngplus"],
        "seeds": [0, 1],
        "search": {"trials": 2, "seeds": [0], "population_size": 2, "max_epochs": 1},
        "metrics": ["accuracy", "mia", "distance"],
        "executor": {"workers": 0},
    }
    cfg.update(overrides)
    return cfg


def db_rows(root: Path, stage: str | None = None) -> dict[str, dict[str, Any]]:
    """``runs`` rows by key (read-only connection)."""
    con = sqlite3.connect(f"file:{root / 'results.db'}?mode=ro", uri=True, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        q = "SELECT * FROM runs" + (" WHERE stage = ?" if stage else "")
        rows = con.execute(q, (stage,) if stage else ()).fetchall()
    finally:
        con.close()
    return {r["key"]: dict(r) for r in rows}


def eval_metrics(root: Path) -> dict[tuple[str, str], float]:
    """(evaluate run key, metric name) -> value."""
    con = sqlite3.connect(f"file:{root / 'results.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute(
            "SELECT m.key, m.name, m.value FROM metrics m JOIN runs r ON r.key = m.key "
            "WHERE r.stage = 'evaluate'"
        ).fetchall()
    finally:
        con.close()
    return {(k, n): v for k, n, v in rows}
