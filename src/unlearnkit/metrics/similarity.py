"""SSSE's AUC similarity ratio γ_S (SSSE paper, "Evaluation Method", eq. 5).

For a removed set S with |A| binary attributes and a model θ, α_i(θ) is the ROC AUC of
attribute i computed on S (``sklearn.metrics.roc_auc_score``). The paper sets the AUC of an
*absent* attribute to 0 by convention. Here "absent" means the AUC is undefined on S: the
attribute has no positive sample in S, **or** no negative sample (every sample has it), so
only one class is present. Such attributes get α_i = 0 for every model, so they add
nothing to any distance.

    D_S(θ1, θ2) = Σ_i |α_i(θ1) − α_i(θ2)|
    γ_S(θ̂; θ*, θ*_{−S}) = D_S(θ̂, θ*) / (D_S(θ̂, θ*) + D_S(θ̂, θ*_{−S}))

θ* is the original model (trained on S), θ*_{−S} the retrained one (S unseen). The paper's
printed numerator reads D_S(θ_ε, θ*), a typo for D_S(θ̂_ε, θ*).

Direction: *higher is better*, in [0, 1]. γ > 0.5 means θ̂ is closer (in AUC) to the retrained
model than to the original; γ = 0.8 means four times closer. SSSE picks ε* = argmax_ε γ.

0/0 case: if D_S(θ̂, θ*) = D_S(θ̂, θ*_{−S}) = 0 (θ̂, θ* and θ*_{−S} have identical AUCs on S),
θ̂ is equally close to both references. γ is then defined as 0.5, the value of every
equidistant point.

Exact ties: on n₊ positives and n₋ negatives an AUC is k / (2 n₊ n₋) for an integer k (each
positive-negative pair counts 1 when ordered, ½ when tied). ``roc_auc_score`` sums trapezoids
in floating point, so two models with the same true AUC can differ by one rounding unit, and
γ would come out 0 or 1 instead of 0.5. :func:`attribute_aucs` therefore snaps every AUC to
that grid (exact, because the rounding error is far below the grid step 1 / (2 n₊ n₋) for any
S that fits in memory); equal true AUCs are then equal floats and the 0/0 convention holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from unlearnkit.errors import DataError
from unlearnkit.metrics._arrays import as_bool, as_float
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.metrics.registry import Direction, metric

#: γ_S when θ̂, θ* and θ*_{−S} have identical per-attribute AUCs on S (0/0).
GAMMA_ALL_EQUAL = 0.5


def present_attributes(labels: Any) -> np.ndarray:
    """Bool mask (A,): attribute i has both a positive and a negative sample in S."""
    y = as_bool(labels, "labels", ndim=2)
    pos = y.sum(axis=0)
    return (pos > 0) & (pos < y.shape[0])


def attribute_aucs(scores: Any, labels: Any) -> np.ndarray:
    """α(θ) ∈ [0, 1]^A: per-attribute ROC AUC on S; absent attributes (one class only) get 0.

    Args:
        scores: (n_S, A) real-valued scores (logits or probabilities) of one model on S.
        labels: (n_S, A) binary attribute labels of S.
    """
    s = as_float(scores, "scores", ndim=2)
    y = as_bool(labels, "labels", ndim=2)
    if s.shape != y.shape:
        raise DataError(f"scores {s.shape} and labels {y.shape} must have the same shape")
    keep = present_attributes(y)
    out = np.zeros(s.shape[1], dtype=np.float64)
    if keep.any():
        raw = roc_auc_score(y[:, keep].astype(np.int64), s[:, keep], average=None)
        n_pos = y[:, keep].sum(axis=0).astype(np.float64)
        pairs2 = 2.0 * n_pos * (y.shape[0] - n_pos)  # the AUC is an integer over this
        out[keep] = np.rint(np.asarray(raw) * pairs2) / pairs2
    return out


def auc_distance(alpha_1: Any, alpha_2: Any) -> float | np.ndarray:
    """D_S = Σ_i |α_i(θ1) − α_i(θ2)| along the last axis (broadcasts over leading axes)."""
    a1, a2 = as_float(alpha_1, "alpha_1"), as_float(alpha_2, "alpha_2")
    d = np.abs(a1 - a2).sum(axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def _gamma(d_orig: np.ndarray, d_retr: np.ndarray) -> np.ndarray:
    den = d_orig + d_retr
    safe = np.where(den > 0, den, 1.0)
    return np.where(den > 0, d_orig / safe, GAMMA_ALL_EQUAL)


def similarity_ratio(
    scores_unlearned: Any, scores_original: Any, scores_retrained: Any, labels: Any
) -> float:
    """γ_S(θ̂; θ*, θ*_{−S}) from the three models' (n_S, A) scores on S and the (n_S, A) labels.

    Higher is better (closer to retrain); see the module docstring for the formula and the
    0/0 convention (0.5).
    """
    return float(
        similarity_ratio_grid([scores_unlearned], scores_original, scores_retrained, labels)[0]
    )


def similarity_ratio_grid(
    scores_unlearned: Sequence[Any], scores_original: Any, scores_retrained: Any, labels: Any
) -> np.ndarray:
    """γ_S for each candidate θ̂_ε of a grid: a list of (n_S, A) score matrices -> (k,) array.

    The original's and the retrained model's AUCs are computed once.
    """
    if len(scores_unlearned) == 0:
        raise DataError("scores_unlearned is empty: give one (n_S, A) score matrix per ε")
    a_orig = attribute_aucs(scores_original, labels)
    a_retr = attribute_aucs(scores_retrained, labels)
    a_hat = np.stack([attribute_aucs(s, labels) for s in scores_unlearned])
    d_orig = np.abs(a_hat - a_orig[None, :]).sum(axis=1)
    d_retr = np.abs(a_hat - a_retr[None, :]).sum(axis=1)
    return _gamma(d_orig, d_retr)


@metric(
    "gamma_S",
    label="γ_S",
    direction=Direction.HIGHER,
    needs=("task:multilabel", "model:forget", "original:forget", "retrain:forget"),
    group="similarity",
)
def gamma_s_metric(x: MetricInputs) -> float:
    """γ_S on the forget set from the three models' attribute logits (eq. 5 above).
    Higher is better."""
    return float(
        similarity_ratio(
            x.model.logits["forget"],
            x.outputs("original").logits["forget"],
            x.outputs("retrain").logits["forget"],
            x.model.labels["forget"],
        )
    )
