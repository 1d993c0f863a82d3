"""The U-LiRA attack over a pool: per-example Gaussian fits, held-out scoring, pooled metrics.

Input: a statistic matrix ``stat`` (R model rows × n target examples) and four boolean masks
of the same shape:

* ``fit_in`` / ``fit_out``: entries the per-example Gaussians are fitted on (IN = x was
  trained on, then unlearned; OUT = x never seen);
* ``trial_in`` / ``trial_out``: entries scored as attack trials (label 1 / label 0);

and ``groups`` (R,): rows sharing a group come from the same data split and are held out
together (an unlearned model and the retrain model of the same split, say).

Held-out protocol (Carlini et al. 2022 hold out target models; spec §3.4-§3.5): the groups
are dealt into ``folds`` folds (default: one per group, leave-one-split-out). For each fold,
the Gaussians are fitted (:func:`~unlearnkit.metrics.ulira.fit_gaussians`) on the rows of
the other folds, and the fold's rows are scored (:func:`~unlearnkit.metrics.ulira.lira_scores`).
An example with fewer than 2 IN or 2 OUT shadow entries in a fold cannot be fitted there; its
trials in that fold are skipped and counted in ``n_skipped``. All trials are then pooled into
one ROC (:func:`~unlearnkit.metrics.roc.attack_metrics`). With ``held_out=False`` (Deep
Unlearn's released code) the fit and the scores use the same rows: optimistic.

Direction: AUC and balanced accuracy *closer to 0.5 are better*, TPR@α closer to α.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from unlearnkit.errors import DataError
from unlearnkit.metrics.roc import DEFAULT_FPRS, AttackMetrics, attack_metrics
from unlearnkit.metrics.ulira import (
    GaussianFit,
    LiraFitConfig,
    examples_with_support,
    fit_gaussians,
    lira_scores,
)


@dataclass(frozen=True)
class AttackData:
    """The statistic, the fit / trial masks and the row groups (see the module docstring)."""

    stat: np.ndarray
    fit_in: np.ndarray
    fit_out: np.ndarray
    trial_in: np.ndarray
    trial_out: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        shape = self.stat.shape
        if self.stat.ndim != 2:
            raise DataError(f"stat must be (models, examples), got shape {shape}")
        for name in ("fit_in", "fit_out", "trial_in", "trial_out"):
            if getattr(self, name).shape != shape:
                raise DataError(f"{name} has shape {getattr(self, name).shape}, stat {shape}")
        if np.any(self.fit_in & self.fit_out) or np.any(self.trial_in & self.trial_out):
            raise DataError("an entry is both IN and OUT")
        if self.groups.shape != (shape[0],):
            raise DataError(f"groups must have one entry per row ({shape[0]})")


@dataclass(frozen=True)
class AttackOutcome:
    """Pooled metrics; (R, n) scores (NaN where no trial), labels and trial mask.

    ``fit``: the Gaussians fitted on *all* rows for the ``supported`` examples (for reporting
    per-example parameters). ``n_skipped``: trials skipped for lack of shadow support.
    """

    metrics: AttackMetrics
    scores: np.ndarray
    labels: np.ndarray
    trials: np.ndarray
    fit: GaussianFit
    supported: np.ndarray
    n_skipped: int
    held_out: bool
    score: str


def _fit_and_score(
    data: AttackData,
    fit_rows: np.ndarray,
    score_rows: np.ndarray,
    config: LiraFitConfig,
    score: str,
    out: np.ndarray,
) -> np.ndarray:
    """Fit on ``fit_rows``, write scores of ``score_rows`` into ``out``; return support."""
    f_in, f_out = data.fit_in[fit_rows], data.fit_out[fit_rows]
    support = examples_with_support(f_in, f_out, 2)
    if support.any():
        fit = fit_gaussians(
            data.stat[fit_rows][:, support], f_in[:, support], f_out[:, support], config
        )
        block = lira_scores(data.stat[score_rows][:, support], fit, score)
        sub = out[score_rows]
        sub[:, support] = block
        out[score_rows] = sub
    return support


def run_attack(
    data: AttackData,
    config: LiraFitConfig | None = None,
    *,
    score: str = "online",
    held_out: bool = True,
    folds: int | None = None,
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> AttackOutcome:
    """Fit, score and pool (see the module docstring). ``folds=None``: one fold per group."""
    cfg = config or LiraFitConfig()
    rows = data.stat.shape[0]
    raw = np.full(data.stat.shape, np.nan)
    trials = data.trial_in | data.trial_out
    if held_out:
        uniq = np.unique(data.groups)
        n_folds = uniq.size if folds is None else min(int(folds), uniq.size)
        if n_folds < 2:
            raise DataError("held-out scoring needs at least 2 groups of models")
        fold_of_group = {g: i % n_folds for i, g in enumerate(uniq)}
        fold = np.array([fold_of_group[g] for g in data.groups])
        for k in range(n_folds):
            _fit_and_score(
                data, np.flatnonzero(fold != k), np.flatnonzero(fold == k), cfg, score, raw
            )
    else:
        everything = np.arange(rows)
        _fit_and_score(data, everything, everything, cfg, score, raw)
    scored = trials & np.isfinite(raw)
    n_skipped = int((trials & ~scored).sum())
    scores = np.where(scored, raw, np.nan)
    labels = data.trial_in.copy()
    if not scored.any():
        raise DataError(
            "no attack trial could be scored: every example lacks 2 IN and 2 OUT shadow "
            "models; train more shadows"
        )
    threshold = 0.0 if score == "online" else None
    metrics = attack_metrics(scores[scored], labels[scored], threshold=threshold, fprs=fprs)
    supported = examples_with_support(data.fit_in, data.fit_out, 2)
    full = (
        fit_gaussians(
            data.stat[:, supported], data.fit_in[:, supported], data.fit_out[:, supported], cfg
        )
        if supported.any()
        else None
    )
    if full is None:  # pragma: no cover - implies no trial could be scored above
        raise DataError("no example has 2 IN and 2 OUT models")
    return AttackOutcome(
        metrics, scores, labels, scored, full, supported, n_skipped, held_out, score
    )


def per_example_summary(outcome: AttackOutcome) -> dict[str, np.ndarray]:
    """Per target example: trial counts, mean IN / OUT score, balanced accuracy at the
    likelihood-ratio threshold 0 (``online`` only, else NaN), and the fitted Gaussians.

    Balanced accuracy of example x = ½(TPR_x + TNR_x) over its held-out trials; NaN when x
    has no IN or no OUT trial. Chance is 0.5.
    """
    s, y, t = outcome.scores, outcome.labels, outcome.trials
    n_in = (t & y).sum(0)
    n_out = (t & ~y).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_in = np.where(t & y, s, 0.0).sum(0) / n_in
        mean_out = np.where(t & ~y, s, 0.0).sum(0) / n_out
        if outcome.score == "online":
            pred = np.where(t, s > 0.0, False)
            tpr = (pred & y & t).sum(0) / n_in
            tnr = (~pred & ~y & t).sum(0) / n_out
            bal = 0.5 * (tpr + tnr)
        else:
            bal = np.full(s.shape[1], np.nan)
    n = s.shape[1]
    fitted = {k: np.full(n, np.nan) for k in ("mu_in", "sd_in", "mu_out", "sd_out")}
    for k in fitted:
        fitted[k][outcome.supported] = getattr(outcome.fit, k)
    return {
        "n_in": n_in,
        "n_out": n_out,
        "mean_score_in": mean_in,
        "mean_score_out": mean_out,
        "balanced_accuracy": bal,
        **fitted,
    }
