"""Attack metrics from scores and true membership: ROC, AUC, TPR at low FPR, accuracy.

Convention: a *higher score means "member"* (for U-LiRA: "x was trained on, then unlearned").
Labels are 1 for members / unlearned, 0 for non-members / never seen.

* ROC: ``sklearn.metrics.roc_curve`` with ``drop_intermediate=False``. Every distinct score is
  a threshold, and a sample is predicted positive iff score ≥ threshold.
* TPR at FPR α (Carlini et al. 2022): max{TPR_k : FPR_k ≤ α} over the ROC points, with no
  interpolation. With N_neg negatives, α < 1/N_neg can only be met at FPR = 0, so such a
  value is reported with ``supported = False``.
* AUC: ``roc_auc_score``. Balanced accuracy at a threshold: (TPR + TNR)/2 predicting member
  iff score > threshold (the likelihood-ratio test uses threshold 0). The best balanced
  accuracy maximises over ROC points, which is optimistic.

Direction for unlearning audits: *closer to chance is better* (AUC and accuracy ≈ 0.5,
TPR@α ≈ α). Compare with the retrained model's values (spec §3.6).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from unlearnkit.errors import DataError
from unlearnkit.io import atomic_write_bytes, atomic_write_json
from unlearnkit.metrics._arrays import as_bool, as_float

#: FPR targets reported by default (1 %, 0.1 %, 0.01 %; spec §3.5).
DEFAULT_FPRS: tuple[float, ...] = (1e-2, 1e-3, 1e-4)


def _scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    s = as_float(scores, "scores").ravel()
    y = as_bool(labels, "labels").ravel()
    if s.shape != y.shape:
        raise DataError(f"{s.size} scores for {y.size} labels")
    if y.all() or not y.any():
        raise DataError("attack metrics need both members (1) and non-members (0)")
    return s, y


def roc(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), every distinct score a threshold; starts at (0, 0)."""
    s, y = _scores_labels(scores, labels)
    fpr, tpr, thr = roc_curve(y.astype(np.int64), s, drop_intermediate=False)
    return fpr, tpr, thr


def tpr_at_fpr(fpr: Any, tpr: Any, target: float) -> float:
    """max{TPR_k : FPR_k ≤ target} over ROC points (no interpolation); 0 if none qualifies."""
    f = as_float(fpr, "fpr", ndim=1)
    t = as_float(tpr, "tpr", ndim=1)
    if f.shape != t.shape:
        raise DataError("fpr and tpr must have the same length")
    ok = f <= target
    return float(t[ok].max()) if ok.any() else 0.0


def balanced_accuracy(scores: Any, labels: Any, threshold: float = 0.0) -> float:
    """(TPR + TNR) / 2 predicting member iff score > threshold."""
    s, y = _scores_labels(scores, labels)
    pred = s > threshold
    return float(0.5 * (pred[y].mean() + (~pred[~y]).mean()))


def best_balanced_accuracy(fpr: Any, tpr: Any) -> float:
    """max_k (TPR_k + 1 − FPR_k) / 2 over ROC points (optimistic: the threshold is tuned)."""
    f = as_float(fpr, "fpr", ndim=1)
    t = as_float(tpr, "tpr", ndim=1)
    return float(np.max(0.5 * (t + 1.0 - f)))


@dataclass(frozen=True)
class AttackMetrics:
    """Summary of an attack; direction: closer to chance (0.5 / α) is better."""

    auc: float
    balanced_accuracy: float
    best_balanced_accuracy: float
    tpr_at_fpr: dict[float, float]
    supported: dict[float, bool]
    n_pos: int
    n_neg: int
    fpr: np.ndarray = field(repr=False)
    tpr: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float | int | bool]:
        """Flat, JSON-ready summary (without the curve arrays)."""
        out: dict[str, float | int | bool] = {
            "auc": self.auc,
            "balanced_accuracy": self.balanced_accuracy,
            "best_balanced_accuracy": self.best_balanced_accuracy,
            "n_pos": self.n_pos,
            "n_neg": self.n_neg,
        }
        for a, v in self.tpr_at_fpr.items():
            out[f"tpr@{a:g}"] = v
            out[f"tpr@{a:g}_supported"] = self.supported[a]
        return out


def attack_metrics(
    scores: Any, labels: Any, *, threshold: float | None = 0.0, fprs: Sequence[float] = DEFAULT_FPRS
) -> AttackMetrics:
    """AUC, balanced accuracy at ``threshold``, best balanced accuracy and TPR@FPR targets.

    ``threshold=None`` (scores without a natural decision threshold) gives a NaN
    balanced accuracy; ``best_balanced_accuracy`` is always reported.
    """
    s, y = _scores_labels(scores, labels)
    fpr, tpr, _ = roc(s, y)
    n_neg = int((~y).sum())
    return AttackMetrics(
        auc=float(roc_auc_score(y.astype(np.int64), s)),
        balanced_accuracy=(
            float("nan") if threshold is None else balanced_accuracy(s, y, threshold)
        ),
        best_balanced_accuracy=best_balanced_accuracy(fpr, tpr),
        tpr_at_fpr={a: tpr_at_fpr(fpr, tpr, a) for a in fprs},
        supported={a: n_neg * a >= 1.0 for a in fprs},
        n_pos=int(y.sum()),
        n_neg=n_neg,
        fpr=fpr,
        tpr=tpr,
    )


def plot_roc_loglog(
    curves: Mapping[str, tuple[Any, Any]], path: str | Path, title: str = "ROC (log-log)"
) -> Path:
    """Plot ROC curves on log-log axes to a PNG; save the data beside it (``.json``).

    ``curves`` maps a label (e.g. a method name) to (fpr, tpr). Zero rates cannot be shown
    on log axes, so they are drawn at 1e-5 (or 1/(10·N) if smaller). The chance diagonal
    is drawn dashed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    data: dict[str, dict[str, list[float]]] = {}
    floor = 1e-5
    for name, (f, t) in curves.items():
        fa, ta = as_float(f, f"{name} fpr", ndim=1), as_float(t, f"{name} tpr", ndim=1)
        data[name] = {"fpr": fa.tolist(), "tpr": ta.tolist()}
        positive = fa[fa > 0]
        if positive.size:
            floor = min(floor, float(positive.min()) / 10)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for name, d in data.items():
        ax.plot(np.maximum(d["fpr"], floor), np.maximum(d["tpr"], floor), label=name)
    ax.plot([floor, 1], [floor, 1], "k--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor, 1)
    ax.set_ylim(floor, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_json(path.with_suffix(".json"), data)
    return path
