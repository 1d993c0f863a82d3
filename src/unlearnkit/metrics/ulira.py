"""U-LiRA: per-example unlearning membership inference (Hayes et al. 2024), statistical core.

The question for each target example x: "was x trained on and then unlearned (IN), or
never seen (OUT)?" Every example gets its own attacker (docs/evaluation.md, §3.5,
and "Deep Unlearn's own evaluation" §3.8). This module holds the pure statistics; training
the shadow models is orchestrated elsewhere.

Inputs: a statistic matrix ``stat`` of shape (M models, n examples), usually LiRA's
φ = log(p_y / (1 − p_y)) (:func:`unlearnkit.metrics.signals.logit_scaled_confidence`), and
two boolean masks of the same shape:
  * ``in_mask``: x was in the model's forget set, so it was trained on and then unlearned;
  * ``out_mask``: x was never seen (retrained models, or held-out splits).
Entries in neither mask are ignored, for example x kept in a model's retain set.

Gaussian fit per example (Carlini et al. 2022, reference ``mi_lira_2021``):
  * location μ: the *median* of the example's IN (OUT) values (``location="mean"`` for Deep
    Unlearn's variant);
  * scale σ: the per-example standard deviation (ddof = 0, as ``np.std``), or one global σ
    per side when there are few models. ``variance="auto"`` uses per-example σ only if every
    example has at least ``min_models_per_side`` (32) IN and OUT models, as LeakPro does.
    The global σ is the pooled within-example std, √(Σ (φ − mean_x)² / Σ n_x);
    ``global_std="in_pool"`` instead uses the IN pool's overall std for both sides, as the
    reference ``plot.py`` does;
  * σ ← max(σ, ``std_floor``): the floor keeps 0/1 statistics and easy examples finite.

Scores (registry :data:`LIRA_SCORES`; a higher score means "unlearned / member"):
  * ``online``: log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²), the log-likelihood ratio.
    Threshold 0 is the likelihood-ratio test, and sigmoid(score) is Deep Unlearn's
    membership probability N_in / (N_in + N_out);
  * ``offline``: log Φ((φ − μ_out)/σ_out), the one-sided test against the OUT (retrain) pool
    alone. It assumes unlearned models are *more* confident on x, and lets one retrain pool
    serve every method;
  * ``offline_pdf``: −log N(φ; μ_out, σ_out²), a two-sided "surprise" under the OUT pool.
    The reference LiRA code scores with the OUT log-density.

Evaluate on *held-out target models* (:func:`evaluate_ulira`). Direction: attack accuracy
and AUC *closer to 0.5 are better*, and TPR@α closer to α; compare with retrain's values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit
from scipy.stats import norm

from unlearnkit.errors import DataError
from unlearnkit.metrics._arrays import as_bool, as_float
from unlearnkit.metrics.roc import DEFAULT_FPRS, AttackMetrics, attack_metrics
from unlearnkit.registry import Registry


class LiraFitConfig(BaseModel):
    """How the per-example Gaussians are fitted (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    location: Literal["median", "mean"] = "median"
    variance: Literal["auto", "per_example", "global"] = "auto"
    min_models_per_side: int = Field(32, ge=2)
    global_std: Literal["pooled", "in_pool"] = "pooled"
    std_floor: float = Field(1e-3, gt=0.0)


#: Deep Unlearn's released U-LiRA (mean and per-example std of 0/1 correctness), plus the
#: variance floor it lacks (without it σ = 0 gives NaN densities).
DEEP_UNLEARN_COMPAT = LiraFitConfig(location="mean", variance="per_example")


@dataclass(frozen=True)
class GaussianFit:
    """Per-example Gaussian parameters (each (n,)) and the counts they came from."""

    mu_in: np.ndarray
    sd_in: np.ndarray
    mu_out: np.ndarray
    sd_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    per_example_variance: bool


def _masks(stat: np.ndarray, in_mask: Any, out_mask: Any | None) -> tuple[np.ndarray, np.ndarray]:
    i = as_bool(in_mask, "in_mask", ndim=2)
    o = ~i if out_mask is None else as_bool(out_mask, "out_mask", ndim=2)
    if i.shape != stat.shape or o.shape != stat.shape:
        raise DataError(f"masks {i.shape}/{o.shape} must match the statistic's shape {stat.shape}")
    if np.any(i & o):
        raise DataError("an entry is marked both IN (unlearned) and OUT (never seen)")
    return i, o


def examples_with_support(
    in_mask: Any, out_mask: Any | None = None, min_models: int = 2
) -> np.ndarray:
    """Bool (n,): examples with at least ``min_models`` IN and OUT models."""
    i = as_bool(in_mask, "in_mask", ndim=2)
    o = ~i if out_mask is None else as_bool(out_mask, "out_mask", ndim=2)
    return (i.sum(0) >= min_models) & (o.sum(0) >= min_models)


def _side(
    stat: np.ndarray, mask: np.ndarray, location: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(location, per-example std, per-example mean, count) of the masked entries."""
    x = np.where(mask, stat, np.nan)
    count = mask.sum(axis=0)
    mean = np.nanmean(x, axis=0)
    loc = np.nanmedian(x, axis=0) if location == "median" else mean
    sd = np.sqrt(np.nanmean((x - mean) ** 2, axis=0))
    return loc, sd, mean, count


def fit_gaussians(
    stat: Any, in_mask: Any, out_mask: Any | None = None, config: LiraFitConfig | None = None
) -> GaussianFit:
    """Fit N(μ_in, σ_in²) and N(μ_out, σ_out²) for every example (vectorised, masked).

    Args:
        stat: (M, n) statistic of M shadow models on n examples.
        in_mask: (M, n) bool, True where x was unlearned by that model.
        out_mask: (M, n) bool, True where x was never seen. Defaults to ``~in_mask``.
        config: fitting options; default :class:`LiraFitConfig`.
    """
    cfg = config or LiraFitConfig()
    s = as_float(stat, "stat", ndim=2)
    i, o = _masks(s, in_mask, out_mask)
    support = examples_with_support(i, o, 2)
    if not support.all():
        raise DataError(
            f"{int((~support).sum())} of {s.shape[1]} examples have fewer than 2 IN or OUT "
            "models; keep only examples_with_support(in_mask, out_mask) or train more shadows"
        )
    mu_in, sd_in, mean_in, n_in = _side(s, i, cfg.location)
    mu_out, sd_out, mean_out, n_out = _side(s, o, cfg.location)
    per_example = cfg.variance == "per_example" or (
        cfg.variance == "auto" and min(n_in.min(), n_out.min()) >= cfg.min_models_per_side
    )
    if not per_example:
        if cfg.global_std == "in_pool":
            g_in = g_out = float(np.std(s[i]))
        else:
            g_in = float(np.sqrt(np.sum(np.where(i, s - mean_in, 0.0) ** 2) / i.sum()))
            g_out = float(np.sqrt(np.sum(np.where(o, s - mean_out, 0.0) ** 2) / o.sum()))
        sd_in = np.full_like(sd_in, g_in)
        sd_out = np.full_like(sd_out, g_out)
    return GaussianFit(
        mu_in,
        np.maximum(sd_in, cfg.std_floor),
        mu_out,
        np.maximum(sd_out, cfg.std_floor),
        n_in,
        n_out,
        bool(per_example),
    )


def _online(x: np.ndarray, f: GaussianFit) -> np.ndarray:
    return norm.logpdf(x, f.mu_in, f.sd_in) - norm.logpdf(x, f.mu_out, f.sd_out)


def _offline(x: np.ndarray, f: GaussianFit) -> np.ndarray:
    return norm.logcdf(x, f.mu_out, f.sd_out)


def _offline_pdf(x: np.ndarray, f: GaussianFit) -> np.ndarray:
    return -norm.logpdf(x, f.mu_out, f.sd_out)


#: score name -> f(stat of targets (..., n), fit) -> scores; higher = "unlearned / member".
LIRA_SCORES: Registry[Callable[[np.ndarray, GaussianFit], np.ndarray]] = Registry("LiRA score")
LIRA_SCORES.register("online")(_online)
LIRA_SCORES.register("offline")(_offline)
LIRA_SCORES.register("offline_pdf")(_offline_pdf)


def lira_scores(stat: Any, fit: GaussianFit, mode: str = "online") -> np.ndarray:
    """Scores of target models' statistics (n,) or (T, n) under the per-example fits."""
    x = as_float(stat, "stat", ndim=(1, 2))
    if x.shape[-1] != fit.mu_in.size:
        raise DataError(f"stat covers {x.shape[-1]} examples, the fit {fit.mu_in.size}")
    return LIRA_SCORES.get(mode)(x, fit)


def membership_probability(online_scores: Any) -> np.ndarray:
    """p = N_in / (N_in + N_out) = sigmoid(online log-likelihood ratio) (Deep Unlearn §3.8)."""
    return expit(as_float(online_scores, "online_scores"))


@dataclass(frozen=True)
class ULiraResult:
    """Held-out evaluation: metrics, the (T, n) scores (NaN where not IN/OUT), the fit."""

    metrics: AttackMetrics
    scores: np.ndarray
    labels: np.ndarray
    fit: GaussianFit
    mode: str


def evaluate_ulira(
    stat: Any,
    in_mask: Any,
    out_mask: Any | None = None,
    *,
    target_models: Sequence[int],
    config: LiraFitConfig | None = None,
    mode: str = "online",
    fprs: Sequence[float] = DEFAULT_FPRS,
) -> ULiraResult:
    """Fit on the shadow models (all but ``target_models``), attack the held-out targets.

    Each target entry that is IN (label 1) or OUT (label 0) is one attack trial. Balanced
    accuracy uses threshold 0 for ``online`` scores (the likelihood-ratio test). Offline
    scores have no natural threshold: their balanced accuracy is NaN, so use
    ``best_balanced_accuracy`` (threshold tuned on the targets, which is optimistic). Closer
    to 0.5 / chance is better.
    """
    s = as_float(stat, "stat", ndim=2)
    i, o = _masks(s, in_mask, out_mask)
    targets = np.unique(np.asarray(target_models, dtype=np.int64))
    if targets.size == 0 or targets.min() < 0 or targets.max() >= s.shape[0]:
        raise DataError(f"target_models must be non-empty indices in [0, {s.shape[0]})")
    shadow = np.setdiff1d(np.arange(s.shape[0]), targets)
    fit = fit_gaussians(s[shadow], i[shadow], o[shadow], config)
    scores = lira_scores(s[targets], fit, mode)
    trial = i[targets] | o[targets]
    scores = np.where(trial, scores, np.nan)
    labels = i[targets]
    threshold = 0.0 if mode == "online" else None
    metrics = attack_metrics(scores[trial], labels[trial], threshold=threshold, fprs=fprs)
    return ULiraResult(metrics, scores, labels, fit, mode)
