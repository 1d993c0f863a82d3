"""One unlearned model against its original and its retrain: every per-model metric at once.

:func:`evaluate_unlearned` is what ``unlearnkit evaluate`` prints. For θ_u (unlearned), θ_o
(original) and θ_r (retrain) on the splits D_r (retain), D_f (forget), D_v (val), D_t (test)
it reports (spec/evaluation.md §3.1-§3.2 and "Deep Unlearn's own evaluation" §3.1-§3.5):

* ``accuracy[model]``: RA, FA, VA, TA and UA = 1 − FA (top-1; multi-label: mean per-attribute
  accuracy) for each of the three models. *Closer to retrain is better.*
* ``retention``: RR = RA_u/RA_r, FR = FA_u/FA_r, TR = TA_u/TA_r and RetDev = Σ|X − 1|
  (NaN where retrain's value is 0). Retention closer to 1, RetDev lower, is better.
* ``distance``: ‖θ_u − θ_r‖₂, ‖θ_o − θ_r‖₂ and the normalised ‖θ_u − θ_r‖ / ‖θ_o − θ_r‖
  (0 = retrain, 1 = as far as the original). Lower is better.
* ``mia[model]``: Deep Unlearn's population loss-LR MIA of D_f vs D_v ("val_mia") and vs D_t
  ("test_mia"), their indiscernibility 1 − |2·MIA − 1|, and SalUn's SVC MIA-efficacy on the
  confidence p_y (multi-class only). *Closer to retrain's value is better* (MIA ≈ 0.5).
* ``rte``: T_retrain / T_method when both times are given (higher = faster).

A metric that cannot be computed on these splits (fewer than 5 forget samples for the
population MIA, an empty split) is reported as ``None`` with the reason in ``notes``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError, NumericalError, UnlearnkitError
from unlearnkit.evaluation.distance import normalized_parameter_distance, parameter_distance
from unlearnkit.evaluation.efficiency import rte
from unlearnkit.evaluation.mia import indiscernibility, population_mia, svc_mia_efficacy
from unlearnkit.evaluation.retention import retention_deviation, retentions
from unlearnkit.evaluation.signals import true_class_confidence
from unlearnkit.tasks import per_sample_loss

SPLITS = ("retain", "forget", "val", "test")
ACC_NAMES = {"retain": "RA", "forget": "FA", "val": "VA", "test": "TA"}


def _accuracies(model: nn.Module, parts: dict[str, ArrayDataset]) -> dict[str, float | None]:
    from unlearnkit.training import evaluate_accuracy

    out: dict[str, float | None] = {
        ACC_NAMES[k]: (evaluate_accuracy(model, d) if len(d) else None) for k, d in parts.items()
    }
    fa = out.get("FA")
    out["UA"] = None if fa is None else 1.0 - fa
    return out


def _outputs(model: nn.Module, parts: dict[str, ArrayDataset]) -> dict[str, torch.Tensor]:
    from unlearnkit.training import predict_logits

    return {k: predict_logits(model, d).double() for k, d in parts.items() if len(d)}


def _attempt(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``None`` with a note when the metric is undefined on these splits."""
    try:
        return fn()
    except UnlearnkitError as e:
        notes.append(f"{what}: {e}")
        return None


def _mia(
    model: nn.Module, parts: dict[str, ArrayDataset], notes: list[str], name: str
) -> dict[str, float | None]:
    z = _outputs(model, parts)
    task = parts["forget"].task
    loss = {k: per_sample_loss(task, v, parts[k].y.to(v.device)).numpy() for k, v in z.items()}
    out: dict[str, float | None] = {}
    for col, holdout in (("val_mia", "val"), ("test_mia", "test")):
        value = None
        if "forget" in loss and holdout in loss:
            value = _attempt(
                notes, f"{name} {col}", lambda h=holdout: population_mia(loss["forget"], loss[h])
            )
        out[col] = value
        out[col.replace("mia", "indisc")] = None if value is None else indiscernibility(value)
    out["svc_mia_efficacy"] = None
    if task == "multiclass" and all(k in z for k in ("retain", "test", "forget")):
        sig = {k: true_class_confidence(z[k], parts[k].y) for k in ("retain", "test", "forget")}
        out["svc_mia_efficacy"] = _attempt(
            notes,
            f"{name} svc_mia_efficacy",
            lambda: svc_mia_efficacy(sig["retain"], sig["test"], sig["forget"]),
        )
    return out


def evaluate_unlearned(
    unlearned: nn.Module,
    original: nn.Module,
    retrain: nn.Module,
    parts: dict[str, ArrayDataset],
    *,
    method_seconds: float | None = None,
    retrain_seconds: float | None = None,
) -> dict[str, Any]:
    """Every per-model metric of θ_u vs θ_o and θ_r (see the module docstring).

    ``parts`` maps ``retain``, ``forget``, ``val``, ``test`` to datasets (``forget`` and
    ``retain`` are required). No model is modified (evaluation runs in eval mode and each
    model's train/eval mode is restored).
    """
    missing = [k for k in ("retain", "forget") if k not in parts or not len(parts[k])]
    if missing:
        raise DataError(f"evaluation needs non-empty {missing} split(s)")
    unknown = set(parts) - set(SPLITS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; use {list(SPLITS)}")
    notes: list[str] = []
    models = {"unlearned": unlearned, "original": original, "retrain": retrain}
    acc = {name: _accuracies(m, parts) for name, m in models.items()}
    ret: dict[str, float | None] = {"RR": None, "FR": None, "TR": None, "RetDev": None}
    keys = ("RA", "FA", "TA")
    if all(acc["unlearned"].get(k) is not None for k in keys):
        u = {k: float(acc["unlearned"][k]) for k in keys}  # type: ignore[arg-type]
        r = {k: float(acc["retrain"][k]) for k in keys}  # type: ignore[arg-type]
        ret.update(retentions(u, r, on_zero="nan"))
        ret["RetDev"] = retention_deviation(u, r, on_zero="nan")
    else:
        notes.append("retention: needs retain, forget and test accuracies")
    dist: dict[str, float | None] = {
        "unlearned_to_retrain": parameter_distance(unlearned, retrain),
        "original_to_retrain": parameter_distance(original, retrain),
        "unlearned_to_original": parameter_distance(unlearned, original),
        "normalized": None,
    }
    try:
        dist["normalized"] = float(normalized_parameter_distance(unlearned, retrain, original))
    except NumericalError as e:
        notes.append(f"normalized distance: {e}")
    mia = {name: _mia(m, parts, notes, name) for name, m in models.items()}
    out: dict[str, Any] = {
        "accuracy": acc,
        "retention": ret,
        "distance": dist,
        "mia": mia,
        "sizes": {k: len(d) for k, d in parts.items()},
        "rte": None,
        "seconds": {"method": method_seconds, "retrain": retrain_seconds},
    }
    if method_seconds is not None and retrain_seconds is not None:
        out["rte"] = _attempt(notes, "rte", lambda: rte(retrain_seconds, method_seconds))
    out["notes"] = notes
    return out
