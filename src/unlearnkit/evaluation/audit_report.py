"""Writing U-LiRA audit results: JSON summaries, per-example CSV and scores, table, ROC plot.

For a list of :class:`~unlearnkit.evaluation.audit.AuditResult` (one per method),
:func:`write_audit_results` writes into ``out``:

* ``results.json``: every method's :meth:`AuditResult.summary`, plus the audit config;
* ``table.md``: one row per method (balanced accuracy, AUC, TPR at the FPR targets, forget /
  test accuracy), made by :func:`results_table`;
* ``roc.png`` (+ ``roc.json`` with the curves): the log-log ROC of every method
  (:func:`~unlearnkit.metrics.roc.plot_roc_loglog`);
* ``<method>/summary.json``, ``<method>/per_example.csv`` (one row per target example:
  id, class, trial counts, mean IN / OUT score, balanced accuracy at threshold 0, fitted
  Gaussians) and ``<method>/scores.safetensors`` (``scores`` (rows, targets) float64 with NaN
  where no trial, ``labels`` and ``trials`` as uint8, ``target_ids`` int64).

Direction reminder printed in the table: closer to chance (0.5, TPR@α ≈ α) is better.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.evaluation.audit_config import AuditResult
from unlearnkit.io import atomic_write_bytes, atomic_write_json, save_tensors
from unlearnkit.metrics.roc import plot_roc_loglog

PER_EXAMPLE_COLUMNS = (
    "n_in",
    "n_out",
    "mean_score_in",
    "mean_score_out",
    "balanced_accuracy",
    "mu_in",
    "sd_in",
    "mu_out",
    "sd_out",
)


def _fmt(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{v:.4f}"


def per_example_csv(result: AuditResult) -> str:
    """CSV text: ``id, label, n_in, n_out, mean_score_in, ..., sd_out``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", *PER_EXAMPLE_COLUMNS])
    pe = result.per_example
    for j, i in enumerate(result.target_ids.tolist()):
        row: list[Any] = [i, int(result.target_labels[j])]
        for c in PER_EXAMPLE_COLUMNS:
            v = pe[c][j]
            row.append(int(v) if c.startswith("n_") else _fmt(float(v)))
        w.writerow(row)
    return buf.getvalue()


def _pct(v: float) -> str:
    return "nan" if not np.isfinite(v) else f"{100 * v:.2f}"


def results_table(results: Sequence[AuditResult]) -> str:
    """Markdown table, one row per method. Rates in %; closer to chance is better."""
    if not results:
        return ""
    fprs = results[0].config.fprs
    head = ["method", "bal. acc", "AUC"] + [f"TPR@{100 * a:g}%FPR" for a in fprs]
    head += ["trials (+/−)", "forget acc", "test acc", "unlearn s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        m = r.outcome.metrics
        tprs = [_pct(m.tpr_at_fpr[a]) + ("" if m.supported[a] else "†") for a in fprs]
        secs = "-" if r.unlearn_seconds is None else f"{r.unlearn_seconds:.2f}"
        row = [
            r.method,
            _pct(m.balanced_accuracy),
            _pct(m.auc),
            *tprs,
            f"{m.n_pos}/{m.n_neg}",
            _pct(r.accuracy["forget"]),
            _pct(r.accuracy["test"]),
            secs,
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        "Percent. Closer to chance is better: balanced accuracy and AUC 50, TPR@α ≈ α. "
        "† = fewer than 1/α negatives, so the rate is not resolved."
    )
    return "\n".join(lines) + "\n"


def write_result(result: AuditResult, folder: str | Path) -> Path:
    """Write one method's ``summary.json``, ``per_example.csv`` and ``scores.safetensors``."""
    folder = Path(folder)
    atomic_write_json(folder / "summary.json", result.summary())
    atomic_write_bytes(folder / "per_example.csv", per_example_csv(result).encode())
    o = result.outcome
    save_tensors(
        folder / "scores.safetensors",
        {
            "scores": torch.from_numpy(np.ascontiguousarray(o.scores, dtype=np.float64)),
            "labels": torch.from_numpy(o.labels.astype(np.uint8)),
            "trials": torch.from_numpy(o.trials.astype(np.uint8)),
            "target_ids": torch.from_numpy(result.target_ids.astype(np.int64)),
        },
    )
    return folder


def plot_curve(
    fpr: np.ndarray, tpr: np.ndarray, points: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """The ROC on a log-spaced FPR grid (for plots and their JSON): at each grid value g,
    max{TPR_k : FPR_k ≤ g}, the rule of :func:`~unlearnkit.metrics.roc.tpr_at_fpr`.

    The grid runs from the smallest positive FPR to 1 (plus 0), so the plotted staircase is
    exact at its points while tens of thousands of ROC points shrink to ``points``.
    """
    f, t = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    positive = f[f > 0]
    if positive.size == 0:
        return f, t
    grid = np.unique(np.concatenate([[0.0], np.logspace(np.log10(positive.min()), 0.0, points)]))
    idx = np.searchsorted(f, grid, side="right") - 1
    return grid, np.maximum.accumulate(t)[idx]


def write_audit_results(
    results: Sequence[AuditResult],
    out: str | Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write every result, the comparison table and the log-log ROC plot (module docstring)."""
    out = Path(out)
    paths: dict[str, Path] = {}
    for r in results:
        paths[r.method] = write_result(r, out / r.method)
    config = results[0].config.model_dump(mode="json") if results else {}
    atomic_write_json(
        out / "results.json",
        {"config": config, "results": [r.summary() for r in results], **(extra or {})},
    )
    atomic_write_bytes(out / "table.md", results_table(results).encode())
    if results:
        curves = {
            r.method: plot_curve(r.outcome.metrics.fpr, r.outcome.metrics.tpr) for r in results
        }
        cfg = results[0].config
        title = f"U-LiRA ({cfg.scheme}), {cfg.dataset}/{cfg.model}, {cfg.shadows} shadows"
        paths["roc"] = plot_roc_loglog(curves, out / "roc.png", title=title)
    paths["table"] = out / "table.md"
    paths["results"] = out / "results.json"
    return paths
