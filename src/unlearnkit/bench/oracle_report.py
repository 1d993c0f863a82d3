"""Report tables of the oracle audits (:mod:`unlearnkit.bench.oracle_audit`) and of the
reference models that were replaced (:mod:`unlearnkit.bench.vetting`).

Per setting: one row per report row (Original, Retrain, each method) with KLoM on forget,
retain and val (mean [95 % t-interval over examples] and p95; lower is better) and the pool
U-LiRA AUC (mean ± t-interval over seeds, clipped to [0, 1]; pooled AUC; closer to 0.5 is
better), then the calibration rows: the retrain-vs-retrain null level inside the pool (mean
of the null replicates, with the upper end of the prediction interval) and doing nothing
(pool originals). A calibration failure is written in the table's note as "MISCALIBRATED".
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from unlearnkit.bench.config import Experiment
from unlearnkit.bench.context import make_context
from unlearnkit.bench.oracle_audit import PARTS
from unlearnkit.bench.oracles import klom_key, oracles_key
from unlearnkit.bench.tables import Table
from unlearnkit.jobs.store import Store


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _klom_cell(m: dict[str, float], part: str) -> str:
    if f"{part}.klom_mean" not in m:
        return "n/a"
    return (
        f"{_f(m[f'{part}.klom_mean'])} [{_f(m.get(f'{part}.klom_mean_lo'))}, "
        f"{_f(m.get(f'{part}.klom_mean_hi'))}] / {_f(m.get(f'{part}.klom_p95'))}"
    )


def _auc_cell(m: dict[str, float]) -> str:
    if "ulira.auc" not in m:
        return "n/a"
    lo, hi = m.get("ulira.auc_seed_lo", math.nan), m.get("ulira.auc_seed_hi", math.nan)
    interval = f" [{_f(lo)}, {_f(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{_f(m.get('ulira.auc_seed_mean'))}{interval}"


def oracle_tables(root: Path, exp: Experiment) -> list[Table]:
    """The KLoM / U-LiRA table of every setting with pools, and the replacements table."""
    if exp.oracles.size == 0:
        return replacement_tables(root, exp)
    tables = []
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        for d, m in ctx.settings():
            pools = store.metrics(oracles_key(ctx, d, m))
            rows, calib = [], None
            for row in ctx.rows():
                key = klom_key(ctx, d, m, row)
                status = store.status(key) or "missing"
                if status != "done":
                    rows.append([row, status] + ["n/a"] * (len(PARTS) + 1))
                    continue
                vals = store.metrics(key)
                rows.append(
                    [row, "done"]
                    + [_klom_cell(vals, p) for p in PARTS]
                    + [f"{_auc_cell(vals)} (pooled {_f(vals.get('ulira.auc'))})"]
                )
                if row == "retrain":
                    calib = vals
            note = (
                f"{int(pools.get('retrain.size', 0))} retrained and "
                f"{int(pools.get('original.size', 0))} original pool members "
                f"({int(pools.get('retrain.rejected', 0) + pools.get('original.rejected', 0))} "
                f"rejected as untrained); {len(exp.seeds)} seeds per row. KLoM: mean [95 % "
                "t-interval over examples] / 95th percentile, lower is better. U-LiRA AUC: "
                "mean [95 % t-interval over seeds] of the per-seed AUC, closer to 0.5 is better."
            )
            if calib is not None:
                rows += _calibration_rows(calib)
                note += " " + verdict_text(calib)
            tables.append(
                Table(
                    f"KLoM and U-LiRA against the oracle pool, {d.tag} / {m.tag}",
                    ["row", "status"] + [f"KLoM {p}" for p in PARTS] + ["U-LiRA AUC"],
                    rows,
                    note,
                )
            )
    return tables + replacement_tables(root, exp)


def _calibration_rows(c: dict[str, float]) -> list[list[str]]:
    null = ["null: retrain vs retrain (pool)", "level [upper]"] + [
        f"{_f(c.get(f'null.{p}.klom_mean'))} [{_f(c.get(f'null.{p}.klom_mean_upper'))}] / "
        f"{_f(c.get(f'null.{p}.klom_p95'))} [{_f(c.get(f'null.{p}.klom_p95_upper'))}]"
        for p in PARTS
    ]
    nothing = ["do nothing: pool originals", "level"] + [
        f"{_f(c.get(f'nothing.{p}.klom_mean'))} / {_f(c.get(f'nothing.{p}.klom_p95'))}"
        for p in PARTS
    ]
    return [null + ["0.500"], nothing + ["n/a"]]


def verdict_text(c: dict[str, float]) -> str:
    """The calibration sentence of the retrain row's metrics."""
    failed = [
        name
        for name, flag in (("KLoM", "calibration.klom_pass"), ("U-LiRA", "calibration.ulira_pass"))
        if c.get(flag, 1.0) < 0.5
    ]
    if failed:
        return (
            f"Calibration: MISCALIBRATED ({', '.join(failed)}): the held-out retrains (the "
            "retrain row) do not pass the audit, so this audit's numbers are not trustworthy."
        )
    return (
        "Calibration: passed (the held-out retrains are within the null KLoM level and their "
        "U-LiRA interval contains 0.5)."
    )


def replacement_tables(root: Path, exp: Experiment) -> list[Table]:
    """Every Original / Retrain attempt and pool member rejected as untrained, and why."""
    rows: list[list[str]] = []
    with Store(root, create=False) as store:
        ctx = make_context(exp, root, store)
        for d, m in ctx.settings():
            for seed in exp.model_seeds():
                for role in ("original", "retrain"):
                    p = store.params(ctx.train_key(d, m, seed, role))
                    for r in p.get("replaced", []):
                        rows.append(_replacement_row(d.tag, m.tag, role, seed, r, p))
            if exp.oracles.size:
                p = store.params(oracles_key(ctx, d, m))
                for role in ("retrain", "original"):
                    for r in p.get(role, {}).get("rejected", []):
                        rows.append(
                            [f"{d.tag} / {m.tag}", f"pool {role}", str(r["seed"]), "-", "-"]
                            + [_f(r.get("test_accuracy")), r["reason"], "the next pool seed"]
                        )
    if not rows:
        return []
    return [
        Table(
            "Reference models that did not train (replaced before use)",
            [
                "setting",
                "model",
                "seed",
                "attempt",
                "train seed",
                "test acc.",
                "why",
                "replaced by",
            ],
            rows,
            "A reference is accepted when training did not diverge and its test accuracy is at "
            "least chance + min_gain · (1 − chance) (docs/harness.md).",
        )
    ]


def _replacement_row(
    setting: str, model: str, role: str, seed: int, r: dict[str, Any], p: dict[str, Any]
) -> list[str]:
    final = p.get("train_seed")
    return [
        f"{setting} / {model}",
        role,
        str(seed),
        str(r["attempt"]),
        str(r["train_seed"]),
        _f(r.get("test_accuracy")),
        r["reason"],
        f"train seed {final}" if final is not None else "nothing (failed)",
    ]
