"""Choosing SSSE's scale ε: an oracle rule that needs a retrained model, and rules that don't.

The direction Δ = F⁻¹v does not depend on ε (SSSE eq. 4), so every rule evaluates the whole
grid from one :class:`~unlearnkit.ssse.state.ErasureRequest` with forward passes only.

Rules (registry :data:`EPS_RULES`):

* ``gamma`` (oracle; SSSE paper §3): ε* = argmax_ε γ_S(θ̂_ε; θ*, θ*_{−S}), the AUC similarity
  ratio of eq. 5 on S. Needs the retrained model θ*_{−S}: a benchmark tool, not something a
  user facing a deletion request can run.
* ``accuracy_gap`` (oracle, multiclass): ε* = argmin_ε Σ_split |Acc(θ̂_ε) − Acc(θ*_{−S})| over
  the given splits (the paper's Figure 2 quantity).
* ``loss_matching`` (**no retrained model**): after a perfect erasure S is unseen data, so its
  per-sample losses should be distributed like those of held-out samples of the same kind
  (test samples of the same classes / having the same attribute). ε* = argmin_ε of the
  two-sample Kolmogorov–Smirnov statistic between the losses of θ̂_ε on S and on the
  held-out set (scipy.stats.ks_2samp). This is exactly the signal a population membership
  attack uses (docs/evaluation.md), so minimising it targets an attack at chance.
* ``class_erased`` (**no retrained model**, whole classes): the smallest ε at which the model
  no longer predicts the removed classes on their held-out samples (a model retrained without
  them never does), utility-guarded; bisection in log₁₀ ε.
* ``retained_loss`` (**no retrained model**): retraining minimises the retained objective
  J_R(θ) = (1/|R|)Σ_{i∈R} ℓ_i(θ) + (l2/2)‖θ‖², and Δ is a preconditioned descent direction on
  it (at θ*, ∇L_D ≈ 0 gives ∇L_R ≈ −(k/(n−k))·∇L_S, so Δ ∝ −F⁻¹∇L_R). ε* = argmin_ε J_R(θ̂_ε)
  on a seeded retained sample — an exact line search along eq. 4's direction, which recovers
  ε = 1 when F is the Hessian and the loss quadratic and absorbs a wrong Fisher scale
  otherwise — among the ε whose held-out loss is ≤ (1 + max_holdout_rise)·(held-out loss at
  ε = 0). Coarse log grid, then golden-section search in log₁₀ ε inside the bracket around
  the coarse best; forward passes only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from scipy.stats import ks_2samp
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UtilityBudgetError
from unlearnkit.metrics.similarity import similarity_ratio
from unlearnkit.registry import Registry
from unlearnkit.tasks import get_task, per_sample_loss
from unlearnkit.training import evaluate_accuracy, predict_logits


class ErasureRequest(Protocol):
    """What the rules need of a request (:class:`unlearnkit.ssse.request.ErasureRequest`):
    the model after a step of size ε along its fixed direction."""

    def apply(self, eps: float) -> nn.Module: ...


DEFAULT_GRID: tuple[float, ...] = tuple(float(x) for x in np.round(np.logspace(-4, 2, 25), 7))


@dataclass
class EpsChoice:
    """The chosen ε, the rule's score for every grid point (lower is better for argmin rules)."""

    rule: str
    eps: float
    grid: list[float]
    scores: list[float]
    maximise: bool
    extra: dict[str, Any] = field(default_factory=dict)


EpsRule = Callable[..., EpsChoice]
EPS_RULES: Registry[EpsRule] = Registry("ε selection rule")


def _pick(
    rule: str, grid: Sequence[float], scores: Sequence[float], maximise: bool, **extra: Any
) -> EpsChoice:
    arr = np.asarray(scores, dtype=float)
    if not np.isfinite(arr).any():
        raise ConfigError(f"ε rule {rule!r}: no grid point gave a finite score")
    arr = np.where(np.isfinite(arr), arr, -np.inf if maximise else np.inf)
    i = int(np.argmax(arr) if maximise else np.argmin(arr))
    return EpsChoice(
        rule, float(grid[i]), [float(g) for g in grid], [float(s) for s in scores], maximise, extra
    )


def _losses(model: nn.Module, data: ArrayDataset) -> np.ndarray:
    logits = predict_logits(model, data)
    return per_sample_loss(data.task, logits, data.y).double().numpy()


@EPS_RULES.register("gamma")
def gamma_rule(
    request: ErasureRequest,
    forget: ArrayDataset,
    original: nn.Module,
    retrained: nn.Module,
    grid: Sequence[float] = DEFAULT_GRID,
) -> EpsChoice:
    """argmax_ε γ_S (SSSE eq. 5) on the forget set (multilabel scores = logits)."""
    s_o = predict_logits(original, forget).numpy()
    s_r = predict_logits(retrained, forget).numpy()
    labels = forget.y.numpy()
    scores = [
        similarity_ratio(predict_logits(request.apply(e), forget).numpy(), s_o, s_r, labels)
        for e in grid
    ]
    return _pick("gamma", grid, scores, maximise=True)


@EPS_RULES.register("accuracy_gap")
def accuracy_gap_rule(
    request: ErasureRequest,
    splits: dict[str, ArrayDataset],
    retrained: nn.Module,
    grid: Sequence[float] = DEFAULT_GRID,
) -> EpsChoice:
    """argmin_ε Σ_split |Acc(θ̂_ε) − Acc(θ*_{−S})| over ``splits``."""
    ref = {k: evaluate_accuracy(retrained, d) for k, d in splits.items()}
    scores = []
    for e in grid:
        m = request.apply(e)
        scores.append(sum(abs(evaluate_accuracy(m, d) - ref[k]) for k, d in splits.items()))
    return _pick("accuracy_gap", grid, scores, maximise=False)


def _guard(
    request: ErasureRequest, grid: Sequence[float], retain: ArrayDataset | None, max_drop: float
) -> tuple[list[bool], list[float]]:
    """Eligible grid points: retained accuracy ≥ (accuracy at ε = 0) − max_drop."""
    if retain is None:
        return [True] * len(grid), []
    base = evaluate_accuracy(request.apply(0.0), retain)
    accs = [evaluate_accuracy(request.apply(e), retain) for e in grid]
    return [a >= base - max_drop for a in accs], accs


@EPS_RULES.register("loss_matching")
def loss_matching_rule(
    request: ErasureRequest,
    forget: ArrayDataset,
    holdout: ArrayDataset,
    grid: Sequence[float] = DEFAULT_GRID,
    retain: ArrayDataset | None = None,
    max_retain_drop: float = 0.01,
) -> EpsChoice:
    """argmin_ε KS(losses of θ̂_ε on S, losses of θ̂_ε on held-out data) over the grid points
    that pass the utility guard; no retrained model."""
    if len(holdout) == 0:
        raise ConfigError("loss_matching needs a non-empty held-out set")
    ok, accs = _guard(request, grid, retain, max_retain_drop)
    scores = []
    for e, eligible in zip(grid, ok, strict=True):
        if not eligible:
            scores.append(float("nan"))
            continue
        m = request.apply(e)
        scores.append(float(ks_2samp(_losses(m, forget), _losses(m, holdout)).statistic))
    return _pick("loss_matching", grid, scores, maximise=False, retain_accuracy=accs)


@EPS_RULES.register("class_forgetting")
def class_forgetting_rule(
    request: ErasureRequest,
    holdout_of_classes: ArrayDataset,
    grid: Sequence[float] = DEFAULT_GRID,
    retain: ArrayDataset | None = None,
    max_retain_drop: float = 0.01,
) -> EpsChoice:
    """argmin_ε accuracy on held-out samples of the removed classes (utility-guarded)."""
    if len(holdout_of_classes) == 0:
        raise ConfigError("class_forgetting needs held-out samples of the removed classes")
    ok, accs = _guard(request, grid, retain, max_retain_drop)
    scores = [
        evaluate_accuracy(request.apply(e), holdout_of_classes) if eligible else float("nan")
        for e, eligible in zip(grid, ok, strict=True)
    ]
    return _pick("class_forgetting", grid, scores, maximise=False, retain_accuracy=accs)


def _first_crossing(
    rule: str,
    request: ErasureRequest,
    gap: Callable[[nn.Module], float],
    grid: Sequence[float],
    retain: ArrayDataset | None,
    max_retain_drop: float,
    tol: float,
    **extra: Any,
) -> EpsChoice:
    """The smallest ε with ``gap(θ̂_ε)`` ≤ 0 among the guarded ones (retained accuracy ≥ its
    value at ε = 0 minus ``max_retain_drop``): the ascending log ``grid`` up to its first
    eligible point with gap ≤ 0, then bisection in log₁₀ ε between it and the grid point
    before until the bracket is ≤ ``tol`` decades; the upper end (which meets the target) is
    returned. No eligible point reaches it: the gap is minimised instead (``reached`` False).
    Assumes the gap falls with ε (checked only at the evaluated points)."""
    arr = np.asarray(grid, dtype=float)
    if arr.size < 1 or not np.all(arr > 0) or not np.all(np.diff(arr) > 0):
        raise ConfigError(f"{rule} needs a positive increasing grid, got {list(grid)}")
    base = evaluate_accuracy(request.apply(0.0), retain) if retain is not None else None
    seen: dict[float, float] = {}

    def score(e: float) -> float:
        if e not in seen:
            m = request.apply(e)
            if base is not None and evaluate_accuracy(m, retain) < base - max_retain_drop:
                seen[e] = float("nan")  # refused by the guard
            else:
                seen[e] = gap(m)
        return seen[e]

    info: dict[str, Any] = {**extra, "max_retain_drop": max_retain_drop, "tol": tol}
    i = next((j for j, e in enumerate(arr) if score(float(e)) <= 0.0), None)
    if i is None:
        order = sorted(seen)
        return _pick(rule, order, [seen[e] for e in order], False, reached=False, **info)
    lo, hi = (float(arr[i - 1]) if i > 0 else 0.0), float(arr[i])
    while lo > 0.0 and math.log10(hi / lo) > tol:
        mid = math.sqrt(lo * hi)
        if score(mid) <= 0.0:
            hi = mid
        else:
            lo = mid
    order = sorted(seen)
    info.update(reached=True, coarse_eps=float(arr[i]), bracket=[lo, hi])
    return EpsChoice(rule, hi, order, [seen[e] for e in order], False, info)


@EPS_RULES.register("class_erased")
def class_erased_rule(
    request: ErasureRequest,
    holdout_of_classes: ArrayDataset,
    grid: Sequence[float] = DEFAULT_GRID,
    retain: ArrayDataset | None = None,
    max_retain_drop: float = 0.02,
    level: float = 0.0,
    tol: float = 0.01,
) -> EpsChoice:
    """ε* = min{ε : Acc(θ̂_ε; held-out samples of the removed classes) ≤ ``level``}, for
    whole-class removal, with no retrained model.

    A model retrained without the classes has never seen their labels and does not predict
    them: its accuracy on their held-out samples is 0 (``level`` = 0, a known answer, not a
    tuned threshold). Take the *smallest* step that brings the model there: every further
    step moves the retained classes further from θ*. Search and guard:
    :func:`_first_crossing`; the scores are the accuracies minus ``level``. When no
    eligible point reaches ``level`` the held-out accuracy is minimised instead
    (``extra["reached"] = False``), as ``class_forgetting``."""
    if len(holdout_of_classes) == 0:
        raise ConfigError("class_erased needs held-out samples of the removed classes")
    return _first_crossing(
        "class_erased",
        request,
        lambda m: evaluate_accuracy(m, holdout_of_classes) - level,
        grid,
        retain,
        max_retain_drop,
        tol,
        level=level,
    )


@EPS_RULES.register("accuracy_matching")
def accuracy_matching_rule(
    request: ErasureRequest,
    forget: ArrayDataset,
    holdout: ArrayDataset,
    grid: Sequence[float] = DEFAULT_GRID,
    retain: ArrayDataset | None = None,
    max_retain_drop: float = 0.02,
    tol: float = 0.01,
) -> EpsChoice:
    """ε* = min{ε : Acc(θ̂_ε; S) ≤ Acc(θ̂_ε; H)}, H = held-out samples of the same kind as S
    (same classes), with no retrained model.

    After retraining, S is unseen data of its kind, so its accuracy falls to about that of
    held-out data of the same kind (class_erased is the case where that accuracy is 0).
    Take the smallest step at which the erased samples are no better predicted than held-out
    ones. Search and guard: :func:`_first_crossing`; scores Acc(S) − Acc(H)."""
    if len(holdout) == 0 or len(forget) == 0:
        raise ConfigError("accuracy_matching needs erased and held-out samples of the same kind")
    return _first_crossing(
        "accuracy_matching",
        request,
        lambda m: evaluate_accuracy(m, forget) - evaluate_accuracy(m, holdout),
        grid,
        retain,
        max_retain_drop,
        tol,
    )


#: 1/φ, the golden-section ratio.
_INVPHI = (math.sqrt(5.0) - 1.0) / 2.0


def _golden(f: Callable[[float], float], a: float, b: float, tol: float) -> None:
    """Golden-section search for a minimum of ``f`` on [a, b] until b − a ≤ ``tol``; the
    caller keeps every evaluation (a unimodal f has its minimiser within ``tol`` of the best
    evaluated point)."""
    c, d = b - _INVPHI * (b - a), a + _INVPHI * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _INVPHI * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _INVPHI * (b - a)
            fd = f(d)


@EPS_RULES.register("retained_loss")
def retained_loss_rule(
    request: ErasureRequest,
    retain: ArrayDataset,
    holdout: ArrayDataset | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    max_holdout_rise: float = 0.05,
    tol: float = 0.01,
    l2: float = 0.0,
) -> EpsChoice:
    """ε* = argmin_ε J_R(θ̂_ε), J_R = mean loss on ``retain`` + (l2/2)‖θ̂_ε‖² (minimised; the
    objective retraining minimises), over ε ∈ [min grid, max grid] with
    L_H(θ̂_ε) ≤ (1 + ``max_holdout_rise``)·L_H(θ̂_0) on ``holdout`` (held-out samples *not* of
    the erased kind: their loss must not rise; no guard when None).

    The coarse log ``grid`` brackets the minimiser; golden-section search in u = log₁₀ ε on
    (grid[i−1], grid[i+1]) around the coarse best i stops when the bracket is ≤ ``tol``
    decades, so the returned ε is within ``tol`` decades of the line minimiser when J_R is
    unimodal there. Refused (guard) points score NaN. ``extra`` holds the diagnostics."""
    arr = np.asarray(grid, dtype=float)
    if arr.size < 1 or not np.all(arr > 0) or not np.all(np.diff(arr) > 0):
        raise ConfigError(f"retained_loss needs a positive increasing grid, got {list(grid)}")
    if len(retain) == 0:
        raise ConfigError("retained_loss needs a non-empty retained sample")
    if not (tol > 0 and max_holdout_rise >= 0 and l2 >= 0):
        raise ConfigError(
            f"retained_loss needs tol > 0, max_holdout_rise ≥ 0, l2 ≥ 0; got {tol}, "
            f"{max_holdout_rise}, {l2}"
        )
    seen: dict[float, tuple[float, float]] = {}

    def measure(e: float) -> tuple[float, float]:
        if e not in seen:
            m = request.apply(e)
            r = float(_losses(m, retain).mean())
            if l2 > 0:
                r += 0.5 * l2 * float(sum((p.detach().double() ** 2).sum() for p in m.parameters()))
            h = float(_losses(m, holdout).mean()) if holdout is not None else float("nan")
            seen[e] = (r, h)
        return seen[e]

    r0, h0 = measure(0.0)
    limit = h0 * (1.0 + max_holdout_rise) if holdout is not None else float("inf")

    def score(e: float) -> float:
        r, h = measure(e)
        return r if not h > limit else float("inf")

    coarse = [score(float(e)) for e in arr]
    if not np.isfinite(coarse).any():
        raise UtilityBudgetError(
            f"retained_loss: every ε in [{arr[0]:g}, {arr[-1]:g}] raises the held-out loss by more "
            f"than {max_holdout_rise:.0%} over ε = 0 ({h0:.4g})"
        )
    i = int(np.argmin(coarse))
    lo, hi = math.log10(arr[max(i - 1, 0)]), math.log10(arr[min(i + 1, arr.size - 1)])
    if hi > lo:  # a one-point grid is only evaluated
        _golden(lambda u: score(float(f"{10.0**u:.7g}")), lo, hi, tol)
    eps = sorted(e for e in seen if e > 0)
    scores = [score(e) for e in eps]
    r_best, h_best = seen[eps[int(np.argmin(scores))]]  # _pick's choice (ties: smallest ε)
    guarded = holdout is not None
    return _pick(
        "retained_loss",
        eps,
        [s if np.isfinite(s) else float("nan") for s in scores],
        maximise=False,
        criterion="argmin_eps J_R(theta+eps*Delta) = mean retained loss + l2/2 |theta|^2, "
        "s.t. held-out loss <= (1 + max_holdout_rise) * held-out loss at eps=0",
        direction="minimise",
        search_range=[float(arr[0]), float(arr[-1])],
        coarse_eps=float(arr[i]),
        bracket=[10.0**lo, 10.0**hi],
        tol_log10=tol,
        evaluations=len(seen),
        refused=int(sum(not np.isfinite(s) for s in scores)),
        retain_loss={"eps0": r0, "chosen": r_best},
        holdout_loss={"eps0": h0, "chosen": h_best, "limit": limit} if guarded else None,
        max_holdout_rise=max_holdout_rise,
        n_retain=len(retain),
        n_holdout=len(holdout) if guarded else 0,
        l2=l2,
    )


def guard_sample(retain: ArrayDataset, size: int = 1000, seed: int = 0) -> ArrayDataset:
    """A seeded random subset of the retained data for the utility guard."""
    if len(retain) <= size:
        return retain
    g = torch.Generator().manual_seed(seed)
    return retain.subset(retain.ids[torch.randperm(len(retain), generator=g)[:size]])


def matched_holdout(
    forget: ArrayDataset, holdout: ArrayDataset, attribute: int | None = None
) -> ArrayDataset:
    """Held-out samples of the same kind as S: same classes (multiclass) or having
    ``attribute`` (multilabel); all of ``holdout`` when neither applies."""
    keep = get_task(forget.task).same_kind(forget.y, holdout.y, attribute)
    if bool(keep.all()):
        return holdout
    return holdout.subset(holdout.ids[keep])
