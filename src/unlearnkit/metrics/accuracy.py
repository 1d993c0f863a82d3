"""Top-1 accuracy and the per-split accuracies RA / FA / UA / VA / TA.

Source: docs/evaluation.md (standard definitions) and the Deep Unlearn code (§3.1 of
its own evaluation): RA = Acc(θ_u; D_r), FA = Acc(θ_u; D_f), UA = 1 − FA,
VA = Acc(θ_u; D_v), TA = Acc(θ_u; D_t).

Direction: none of these is "higher is better" on its own. The target is the retrained
model's value: *closer to retrain is better* (see :mod:`unlearnkit.metrics.gaps`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import DataError
from unlearnkit.metrics._arrays import as_float, as_int, to_numpy
from unlearnkit.metrics.inputs import MetricInputs, ModelOutputs
from unlearnkit.metrics.registry import Direction, metric

#: Names of the splits, in the order Deep Unlearn reports them, and their metric names.
SPLIT_METRICS: dict[str, str] = {"retain": "RA", "forget": "FA", "val": "VA", "test": "TA"}


def predicted_labels(outputs: Any) -> np.ndarray:
    """Class predictions from logits/probabilities of shape (n, C), or labels of shape (n,).

    For (n, C) input the prediction is ``argmax`` over the last axis (ties: lowest index,
    as ``torch.argmax``/``np.argmax``).
    """
    arr = to_numpy(outputs)
    if arr.ndim == 2:
        scores = as_float(arr, "outputs", ndim=2)
        return np.argmax(scores, axis=1)
    return as_int(arr, "predictions", ndim=1)


def accuracy(outputs: Any, labels: Any) -> float:
    """Top-1 accuracy Acc = (1/n) Σ_i 1[ŷ_i = y_i].

    Args:
        outputs: logits or probabilities (n, C), or predicted class labels (n,).
        labels: true class labels (n,).

    Returns:
        The fraction of correct predictions, in [0, 1].
    """
    pred = predicted_labels(outputs)
    y = as_int(labels, "labels", ndim=1)
    if pred.shape != y.shape:
        raise DataError(f"{pred.shape[0]} predictions for {y.shape[0]} labels")
    if y.size == 0:
        raise DataError("accuracy of an empty split is undefined; the split has no samples")
    return float(np.mean(pred == y))


def multilabel_accuracy(scores: Any, labels: Any, threshold: float = 0.0) -> float:
    """Element-wise accuracy for multi-label outputs: mean over (i, a) of 1[(s_ia > t) = y_ia].

    ``threshold`` is 0 for logits and 0.5 for probabilities.
    """
    s = as_float(scores, "scores", ndim=2)
    y = as_float(labels, "labels", ndim=2)
    if s.shape != y.shape:
        raise DataError(f"scores {s.shape} and labels {y.shape} differ in shape")
    return float(np.mean((s > threshold) == (y > 0.5)))


def split_accuracies(outputs: Mapping[str, tuple[Any, Any]]) -> dict[str, float]:
    """RA/FA/VA/TA (and UA = 1 − FA) from ``{split: (outputs, labels)}``.

    Split names are ``retain``, ``forget``, ``val``, ``test`` (any subset). Example:
    ``split_accuracies({"retain": (logits_r, y_r), "forget": (logits_f, y_f)})`` returns
    ``{"RA": ..., "FA": ..., "UA": ...}``.
    """
    unknown = set(outputs) - set(SPLIT_METRICS)
    if unknown:
        raise DataError(f"unknown split(s) {sorted(unknown)}; use {sorted(SPLIT_METRICS)}")
    out: dict[str, float] = {}
    for split, (pred, labels) in outputs.items():
        out[SPLIT_METRICS[split]] = accuracy(pred, labels)
    if "FA" in out:
        out["UA"] = 1.0 - out["FA"]
    return out


def outputs_accuracy(out: ModelOutputs, part: str) -> float:
    """Accuracy of one model's outputs on ``part`` under the suite's input convention
    (top-1 for multiclass, :func:`multilabel_accuracy`'s element-wise mean for multilabel;
    a non-finite logit row counts as wrong)."""
    y = out.labels[part]
    if out.task == "multilabel":
        return float((out.predictions(part) == y.to(torch.float64)).double().mean().item())
    return accuracy(out.predictions(part), y)


def _split_metric(part: str) -> Callable[[MetricInputs], float]:
    def fn(x: MetricInputs) -> float:
        return outputs_accuracy(x.model, part)

    fn.__doc__ = (
        f"Acc(θ; D_{part}) = (1/n) Σ_i 1[ŷ_i = y_i] on the {part} split. Closer to retrain."
    )
    return fn


for _part, _name in SPLIT_METRICS.items():
    metric(
        _name,
        label=f"{_part} acc",
        direction=Direction.CLOSER_TO_RETRAIN,
        needs=(f"model:{_part}",),
        group="accuracy",
    )(_split_metric(_part))


@metric(
    "UA",
    label="forget error",
    direction=Direction.CLOSER_TO_RETRAIN,
    needs=("model:forget",),
    group="derived",
)
def unlearning_accuracy(x: MetricInputs) -> float:
    """UA = 1 − FA (Deep Unlearn §3.1). Closer to retrain is better."""
    return 1.0 - outputs_accuracy(x.model, "forget")


@metric("nonfinite", label="non-finite", direction=Direction.LOWER, needs=(), group="accuracy")
def nonfinite_fraction(x: MetricInputs) -> float:
    """Fraction of evaluated samples (all splits) whose logit row is not finite. Lower is better."""
    parts = list(x.model.logits)
    total = sum(len(x.model.logits[p]) for p in parts)
    if total == 0:
        raise DataError("no evaluated samples")
    return sum(int((~x.model.finite(p)).sum()) for p in parts) / total
