"""Hopeless search trials, and configurations that did nothing (issue 13).

**Pruning rule** (:class:`PruneRule`, applied to every trial of a study after its objective is
computed; the trial is told PRUNED, counts towards the budget and is never selected):

1. *non-finite*: an objective value, or one of the metrics it came from (RA, FA, VA, Val MIA),
   is NaN or infinite;
2. *collapsed*: the unlearned model's retain accuracy is no higher than that of the best
   constant predictor, RA_U ≤ max_c |{i ∈ D_r : y_i = c}| / |D_r| (it has lost the task it
   must keep);
3. *dominated by the Original*: o_U ≥ o_O in all four objectives, where
   o_O = (⅓|RA_O − RA_R|, ⅓|FA_O − FA_R|, ⅓|VA_O − VA_R|, 1 − Indisc(ValMIA_O)) is the
   objective vector of the Original itself (the do-nothing "unlearning"), so the trial is no
   better than doing nothing on any objective (equality included: a trial that reproduces the
   Original is pruned too).

**Indistinguishable from the Original** (:func:`indistinguishable`, the report's flag on a
method's chosen configuration in one setting): with the means over evaluation seeds of the
four objectives (against the Retrain of the same seed, as in the search, on the final
evaluation's numbers) and of the parameter movement ρ = ‖θ_U − θ_O‖₂ / ‖θ_O − θ_R‖₂,

    |ō_U,i − ō_O,i| ≤ :data:`OBJECTIVE_TOL` for i = 1..4   and   ρ̄ ≤ :data:`MOVEMENT_TOL`.

ρ needs the ``movement`` metric (``l2_to_original``) and ``l2_to_retrain`` of the Original;
without them the weaker necessary condition |D̄ − 1| ≤ MOVEMENT_TOL on
D = ‖θ_U − θ_R‖ / ‖θ_O − θ_R‖ (``dist_to_retrain``; |D − 1| ≤ ρ by the triangle inequality)
is used, and without any distance the objectives alone decide (the flag says which).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from unlearnkit.metrics import indiscernibility

#: Largest difference of a seed-mean objective from the Original's for the flag (⅓ of an
#: accuracy gap, so 0.005 is 1.5 accuracy points; or 0.005 of 1 − Indisc).
OBJECTIVE_TOL = 0.005
#: Largest mean movement ‖θ_U − θ_O‖ / ‖θ_O − θ_R‖ for the flag (1 % of the O-to-R distance).
MOVEMENT_TOL = 0.01
SEARCH_KEYS = ("RA", "FA", "VA", "val_mia")


def objectives(values: Mapping[str, float], retrain: Mapping[str, float]) -> tuple[float, ...]:
    """Deep Unlearn's four objectives of one model against the Retrain of its seed; NaN where
    a metric is missing or the MIA is out of range."""
    out = [
        abs(values.get(k, math.nan) - retrain.get(k, math.nan)) / 3.0 for k in ("RA", "FA", "VA")
    ]
    mia = values.get("val_mia", math.nan)
    out.append(1.0 - indiscernibility(mia) if 0.0 <= mia <= 1.0 else math.nan)
    return tuple(out)


def constant_accuracy(labels: Sequence[int] | np.ndarray) -> float:
    """Accuracy of the best constant predictor on ``labels``: the majority class's share."""
    y = np.asarray(labels).astype(np.int64).ravel()
    if y.size == 0:
        return math.nan
    return float(np.bincount(y - y.min()).max() / y.size)


@dataclass(frozen=True)
class PruneRule:
    """The module's pruning rule; ``None`` parts are skipped (no Original, unknown classes)."""

    original: tuple[float, ...] | None = None
    constant_accuracy: float | None = None

    def __call__(self, values: Sequence[float], metrics: Mapping[str, float]) -> str | None:
        """The reason to prune (``"non-finite"``, ``"collapsed"``, ``"dominated by the
        Original"``) or ``None``."""
        watched = [*values, *(metrics.get(k, 0.0) for k in SEARCH_KEYS)]
        if not all(math.isfinite(float(v)) for v in watched):
            return "non-finite"
        ra = metrics.get("RA")
        c = self.constant_accuracy
        if ra is not None and c is not None and math.isfinite(c) and ra <= c:
            return "collapsed"
        o = self.original
        if o is not None and all(math.isfinite(x) for x in o):
            if all(float(v) >= x for v, x in zip(values, o, strict=True)):
                return "dominated by the Original"
        return None


@dataclass(frozen=True)
class Flag:
    """The comparison of a method's chosen configuration with the Original in one setting."""

    flagged: bool
    max_objective_gap: float
    movement: float
    basis: str  # "objectives + ρ", "objectives + |D − 1|", "objectives only", "no data"


def _mean(xs: Sequence[float]) -> float:
    arr = np.asarray(xs, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def indistinguishable(
    method: Mapping[int, Mapping[str, float]],
    original: Mapping[int, Mapping[str, float]],
    retrain: Mapping[int, Mapping[str, float]],
    objective_tol: float = OBJECTIVE_TOL,
    movement_tol: float = MOVEMENT_TOL,
) -> Flag:
    """The module's flag from per-seed metric dicts (``{seed: values}``) of the method, the
    Original and the Retrain; only seeds present in all three count."""
    seeds = sorted(set(method) & set(original) & set(retrain))
    if not seeds:
        return Flag(False, math.nan, math.nan, "no data")
    o_u = np.array([objectives(method[s], retrain[s]) for s in seeds])
    o_o = np.array([objectives(original[s], retrain[s]) for s in seeds])
    gaps = [abs(_mean(o_u[:, i]) - _mean(o_o[:, i])) for i in range(4)]
    gap = max(gaps) if all(math.isfinite(g) for g in gaps) else math.nan
    rho = [
        method[s].get("l2_to_original", math.nan) / original[s].get("l2_to_retrain", math.nan)
        if original[s].get("l2_to_retrain", 0.0)
        else math.nan
        for s in seeds
    ]
    move, basis = _mean(rho), "objectives + ρ"
    if not math.isfinite(move):
        move = abs(_mean([method[s].get("dist_to_retrain", math.nan) for s in seeds]) - 1.0)
        basis = "objectives + |D − 1|"
    if not math.isfinite(move):
        move, basis = math.nan, "objectives only"
    if not math.isfinite(gap):
        return Flag(False, gap, move, "no data")
    flagged = gap <= objective_tol and (not math.isfinite(move) or move <= movement_tol)
    return Flag(flagged, gap, move, basis)
