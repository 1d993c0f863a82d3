"""The report's plots (matplotlib, Agg backend, PNG), each with its data saved beside it as JSON.

* :func:`plot_ranking`: RetDev and Indisc per row, mean ± 95 % CI over seeds (error bars),
  in ranking order.
* :func:`plot_accuracy_time`: test accuracy against the method's time (log scale), one panel
  per setting, error bars in both directions; Retrain's training time for comparison.
* U-LiRA ROC curves use :func:`unlearnkit.evaluation.plot_roc_loglog`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from unlearnkit.bench.figures import pyplot as _pyplot
from unlearnkit.bench.figures import save_figure as _save
from unlearnkit.bench.results import Results


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def plot_ranking(res: Results, path: Path) -> Path:
    """Two horizontal panels: RetDev (lower is better) and Indisc (higher is better)."""
    plt = _pyplot()
    ranking = res.ranking()
    labels = [o["row"] for o in ranking]
    data = [
        {
            "row": o["row"],
            "rank": o["rank"],
            **{
                f"{k}_{a}": _num(getattr(o[k], a))
                for k in ("RetDev", "Indisc")
                for a in ("mean", "half")
            },
        }
        for o in ranking
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.35 * len(labels) + 1.5), sharey=True)
    ys = list(range(len(labels)))[::-1]
    for ax, k, title in zip(
        axes,
        ("RetDev", "Indisc"),
        ("RetDev (lower is better)", "Indisc (higher is better)"),
        strict=True,
    ):
        means = [o[k].mean for o in ranking]
        halves = [o[k].half if math.isfinite(o[k].half) else 0.0 for o in ranking]
        colors = ["tab:grey" if o["rank"] is None else "tab:blue" for o in ranking]
        ax.barh(ys, means, xerr=halves, color=colors, capsize=3, alpha=0.85)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(labels)
    fig.suptitle("Ranking (mean ± 95% CI over seeds; grey: reference rows)", fontsize=10)
    return _save(fig, path, data)


def plot_accuracy_time(res: Results, path: Path) -> Path:
    """TA against seconds (log x), per setting; mean ± CI error bars."""
    plt = _pyplot()
    settings = res.settings()
    ncols = min(2, len(settings))
    nrows = math.ceil(len(settings) / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(6 * ncols, 4.4 * nrows), squeeze=False, layout="constrained"
    )
    data: dict[str, list[dict[str, Any]]] = {}
    for ax, setting in zip(axes.flat, settings, strict=False):
        pts = []
        for row in res.rows():
            ta, sec = res.estimate(setting, row, "TA"), res.seconds(setting, row)
            if ta.n == 0 or sec.n == 0 or not sec.mean > 0:
                continue
            pts.append(
                {
                    "row": row,
                    "seconds": sec.mean,
                    "seconds_half": _num(sec.half),
                    "TA": ta.mean,
                    "TA_half": _num(ta.half),
                }
            )
            ax.errorbar(
                sec.mean,
                ta.mean,
                xerr=sec.half if math.isfinite(sec.half) else None,
                yerr=ta.half if math.isfinite(ta.half) else None,
                fmt="s" if row == "retrain" else "o",
                capsize=2,
                ms=5,
            )
            ax.annotate(
                row, (sec.mean, ta.mean), fontsize=7, xytext=(3, 3), textcoords="offset points"
            )
        data[setting] = pts
        if not pts:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("time (s, log scale): unlearning; Retrain: training")
        ax.set_ylabel("test accuracy (TA)")
        ax.set_title(setting, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(settings) :]:
        ax.set_visible(False)
    return _save(fig, path, data)
