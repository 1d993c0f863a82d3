"""Choosing ε in the deep reproduction: oracle criteria against the retrained model, the
retrain-free rules, and the grid refinement both share (see :mod:`unlearnkit.reproduce.deep`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from unlearnkit.data.base import concat
from unlearnkit.errors import ConfigError
from unlearnkit.registry import Registry
from unlearnkit.ssse.eps import (
    EpsChoice,
    accuracy_matching_rule,
    class_erased_rule,
    class_forgetting_rule,
    loss_matching_rule,
    retained_loss_rule,
)

SPLITS = ("retain", "forget", "test")
#: The issue's targets as tolerances on g_k (fractions of accuracy), per removal kind.
TOLERANCE: dict[str, dict[str, float]] = {
    "class": {"retain": 0.02, "forget": 0.05, "test": 0.02},
    "half": {"retain": 0.03, "forget": 0.03, "test": 0.03},
}
#: Slack when comparing a gap with its tolerance (accuracies are ratios of counts).
_SLACK = 1e-9

Criterion = Callable[[dict[str, np.ndarray], dict[str, float]], np.ndarray]
CRITERIA: Registry[Criterion] = Registry("oracle ε criterion")


@CRITERIA.register("worst_split")
def worst_split(gap: dict[str, np.ndarray], tol: dict[str, float]) -> np.ndarray:
    """max_k g_k / τ_k per ε (≤ 1 iff every split is within its tolerance)."""
    return np.max([np.asarray(gap[k]) / tol[k] for k in SPLITS], axis=0)


@CRITERIA.register("sum")
def summed_gap(gap: dict[str, np.ndarray], tol: dict[str, float]) -> np.ndarray:
    """Σ_k g_k per ε (the L1 distance to retrain in accuracy; tolerances unused)."""
    return np.sum([np.asarray(gap[k]) for k in SPLITS], axis=0)


def refine_points(grid: Sequence[float], i: int, n: int) -> list[float]:
    """``n`` log-spaced points strictly inside (grid[i−1], grid[i+1]) (clamped to the grid's
    ends), minus any that coincide with a grid point; rounded to 6 significant digits."""
    if n <= 0 or len(grid) < 2:
        return []
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    pts = np.logspace(math.log10(lo), math.log10(hi), n + 2)[1:-1]
    out = [float(f"{p:.6g}") for p in pts]
    return [p for p in out if lo < p < hi and not np.isclose(p, grid, rtol=1e-9, atol=0).any()]


def check_grid(grid: Sequence[float], refine: int) -> None:
    """The ε grid must be positive and strictly increasing; ``refine`` ≥ 0."""
    arr = np.asarray(grid, dtype=float)
    if arr.size == 0 or not np.all(arr > 0) or not np.all(np.diff(arr) > 0):
        raise ConfigError(f"the ε grid must be positive and strictly increasing, got {list(grid)}")
    if refine < 0:
        raise ConfigError(f"refine must be ≥ 0, got {refine}")


def met_interval(
    eps: Sequence[float], gap: dict[str, Sequence[float]], tol: dict[str, float], best: float
) -> list[float] | None:
    """The widest run of consecutive ``eps`` (sorted) around ``best`` at which every split is
    within its tolerance, as [ε_lo, ε_hi]; None when ``best`` itself misses a target. A
    measure of how sharply ε must be chosen."""
    ok = [all(gap[k][i] <= tol[k] + _SLACK for k in SPLITS) for i in range(len(eps))]
    b = list(eps).index(best)
    if not ok[b]:
        return None
    lo, hi = b, b
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    while hi < len(eps) - 1 and ok[hi + 1]:
        hi += 1
    return [eps[lo], eps[hi]]


def oracle_search(
    accuracy: Callable[[float], dict[str, float]],
    ref: dict[str, float],
    grid: Sequence[float],
    tol: dict[str, float],
    refine: int = 12,
    criterion: str = "worst_split",
) -> dict[str, Any]:
    """Coarse grid, then refinement around every criterion's coarse best, then each
    criterion's argmin over the union (sorted by ε; ties go to the smallest ε).

    ``accuracy(ε)`` gives {split: accuracy} of θ̂_ε; ``ref`` those of the retrained model.
    Returns the coarse arrays (``accuracy``, ``gap``), the ``refined`` points (eps, accuracy,
    gap, the brackets used) and, for ``criterion`` and every registered criterion under
    ``by_criterion``: best ε, its gaps, accuracies and score, and the coarse best ε; for
    ``criterion`` also the targets met there and :func:`met_interval` over the union.
    """
    check_grid(grid, refine)
    CRITERIA.get(criterion)
    grid = [float(e) for e in grid]

    def measure(eps: Sequence[float]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        acc: dict[str, list[float]] = {k: [] for k in SPLITS}
        for e in eps:
            a = accuracy(e)
            for k in SPLITS:
                acc[k].append(float(a[k]))
        return acc, {k: [abs(a - ref[k]) for a in acc[k]] for k in SPLITS}

    acc, gap = measure(grid)
    coarse_best = {c: int(np.argmin(fn(gap, tol))) for c, fn in CRITERIA.items()}
    brackets = {
        c: [grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]] for c, i in coarse_best.items()
    }
    fine = sorted({p for i in coarse_best.values() for p in refine_points(grid, i, refine)})
    facc, fgap = measure(fine)
    order = np.argsort(grid + fine, kind="stable")
    union = [(grid + fine)[o] for o in order]
    uacc = {k: [(acc[k] + facc[k])[o] for o in order] for k in SPLITS}
    ugap = {k: [(gap[k] + fgap[k])[o] for o in order] for k in SPLITS}
    by: dict[str, Any] = {}
    for c, fn in CRITERIA.items():
        score = fn(ugap, tol)
        b = int(np.argmin(score))
        by[c] = {
            "eps": union[b],
            "score": float(score[b]),
            "coarse_eps": grid[coarse_best[c]],
            "gap": {k: ugap[k][b] for k in SPLITS},
            "accuracy": {k: uacc[k][b] for k in SPLITS},
        }
    best = by[criterion]
    met = {k: best["gap"][k] <= tol[k] + _SLACK for k in SPLITS}
    return {
        "accuracy": acc,
        "gap": gap,
        "refined": {
            "eps": fine,
            "accuracy": facc,
            "gap": fgap,
            "brackets": brackets,
            "points": refine,
        },
        "criterion": criterion,
        "tolerance": dict(tol),
        "by_criterion": by,
        "best_eps": best["eps"],
        "coarse_best_eps": best["coarse_eps"],
        "score_at_best": best["score"],
        "gap_at_best": best["gap"],
        "accuracy_at_best": best["accuracy"],
        "targets_met": met,
        "all_targets_met": all(met.values()),
        "met_interval": met_interval(union, ugap, tol, best["eps"]),
    }


def free_search(
    rule: Callable[[Sequence[float]], EpsChoice],
    grid: Sequence[float],
    refine: int,
) -> EpsChoice:
    """A retrain-free rule on the coarse grid, then on the coarse grid plus ``refine`` points
    around its own coarse choice (the rule never sees the oracle's choice)."""
    coarse = rule(list(grid))
    fine = refine_points(list(grid), list(grid).index(coarse.eps), refine)
    if not fine:
        return coarse
    choice = rule(sorted([*grid, *fine]))
    choice.extra["coarse_eps"] = coarse.eps
    return choice


#: The retrain-free rule per removal kind: (request, forget, held-out, guard) → rule over a grid.
FREE_RULES: dict[str, Callable[..., Callable[[Sequence[float]], EpsChoice]]] = {
    "class": lambda req, forget, holdout, guard: (
        lambda g: class_forgetting_rule(req, holdout, g, guard)
    ),
    "half": lambda req, forget, holdout, guard: (
        lambda g: loss_matching_rule(req, forget, holdout, g, guard)
    ),
}


#: Retrain-free rules compared in every scenario (issue 15): name → builder
#: (request, forget, matched held-out, retained guard sample, held-out of the other classes)
#: → rule over a grid. ``retained_loss`` refines itself (golden section), the others are
#: refined by :func:`free_search`.
COMPARED_RULES: dict[str, Callable[..., Callable[[Sequence[float]], EpsChoice]]] = {
    "loss_matching": lambda req, forget, holdout, guard, other: (
        lambda g: loss_matching_rule(req, forget, holdout, g, guard)
    ),
    "retained_loss": lambda req, forget, holdout, guard, other: (
        lambda g: retained_loss_rule(req, guard, other, g)
    ),
    # as eps="auto" on a whole-class request: every sample of the removed classes at hand,
    # the held-out ones and the erased ones themselves (ErasureRequest._class_erased)
    "class_erased": lambda req, forget, holdout, guard, other: (
        lambda g: class_erased_rule(req, concat([holdout, forget]), g, guard)
    ),
    # the held-out samples of the removed classes only
    "class_erased_heldout": lambda req, forget, holdout, guard, other: (
        lambda g: class_erased_rule(req, holdout, g, guard)
    ),
    "accuracy_matching": lambda req, forget, holdout, guard, other: (
        lambda g: accuracy_matching_rule(req, forget, holdout, g, guard)
    ),
}
SELF_REFINING = frozenset(
    {"retained_loss", "class_erased", "class_erased_heldout", "accuracy_matching"}
)
#: Rules that apply to some removal kinds only (default: every kind).
RULE_KINDS: dict[str, frozenset[str]] = {
    "class_erased": frozenset({"class"}),
    "class_erased_heldout": frozenset({"class"}),
    "accuracy_matching": frozenset({"half"}),
}


def rule_outcome(
    accuracy: Callable[[float], dict[str, float]],
    ref: dict[str, float],
    tol: dict[str, float],
    choice: EpsChoice,
) -> dict[str, Any]:
    """A retrain-free choice judged against the retrained model: ε (and coarse ε), the
    accuracies and gaps there, and the targets met (every split within its tolerance)."""
    acc = accuracy(choice.eps)
    gap = {k: abs(acc[k] - ref[k]) for k in SPLITS}
    met = {k: gap[k] <= tol[k] + _SLACK for k in SPLITS}
    return {
        "eps": choice.eps,
        "coarse_eps": choice.extra.get("coarse_eps", choice.eps),
        "accuracy": acc,
        "gap": gap,
        "targets_met": met,
        "all_targets_met": all(met.values()),
        "evaluations": len(choice.grid),
    }
