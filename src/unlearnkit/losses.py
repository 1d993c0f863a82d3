"""Per-task losses and predictions, in a registry keyed by the dataset's task.

``multiclass`` (targets: int64 class indices ``y_i ∈ {0..K-1}``, logits ``z_i ∈ R^K``)::

    ℓ(z_i, y_i) = -log softmax(z_i)[y_i] = logsumexp(z_i) - z_{i, y_i}        (cross-entropy)
    predict(z_i) = argmax_k z_{i,k}

``multilabel`` (targets: float matrix ``y_i ∈ {0,1}^A``, logits ``z_i ∈ R^A``; one
independent logistic model per attribute, as in the SSSE paper's CelebA experiment)::

    ℓ(z_i, y_i) = Σ_a [ softplus(z_{i,a}) - y_{i,a} z_{i,a} ]
                = -Σ_a [ y_{i,a} log σ(z_{i,a}) + (1 - y_{i,a}) log(1 - σ(z_{i,a})) ]
    predict(z_i) = 1[z_{i,a} > 0]   (i.e. σ(z) > 1/2), as a float matrix

The binary cross-entropy is **summed** over attributes per sample (not averaged), so that the
objective of the 40-attribute linear model is the sum of 40 independent logistic losses and its
Fisher is block diagonal with one block per attribute (SSSE §5.1). :func:`mean_loss` averages
the per-sample losses over the batch: ``L = (1/n) Σ_i ℓ(z_i, y_i)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnkit.errors import DataError
from unlearnkit.registry import Registry


@dataclass(frozen=True)
class TaskLoss:
    """The loss of one task: per-sample loss, prediction rule and target dtype."""

    per_sample: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor]
    check: Callable[[torch.Tensor, torch.Tensor], None]
    description: str


LOSSES: Registry[TaskLoss] = Registry("task")


def _check_multiclass(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise DataError(f"multiclass logits must be (n, classes), got shape {tuple(logits.shape)}")
    if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != logits.shape[0]:
        raise DataError(
            f"multiclass targets must be int64 of shape ({logits.shape[0]},), "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )


def _check_multilabel(logits: torch.Tensor, y: torch.Tensor) -> None:
    if logits.dim() != 2:
        raise DataError(f"multilabel logits must be (n, attributes), got {tuple(logits.shape)}")
    if not y.is_floating_point() or y.shape != logits.shape:
        raise DataError(
            f"multilabel targets must be a float matrix of shape {tuple(logits.shape)}, "
            f"got {y.dtype} of shape {tuple(y.shape)}"
        )


def _ce_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _bce_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    y = y.to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(dim=1)


LOSSES.register("multiclass")(
    TaskLoss(
        per_sample=_ce_per_sample,
        predict=lambda z: z.argmax(dim=1),
        check=_check_multiclass,
        description="softmax cross-entropy; prediction = argmax",
    )
)
LOSSES.register("multilabel")(
    TaskLoss(
        per_sample=_bce_per_sample,
        predict=lambda z: (z > 0).to(z.dtype),
        check=_check_multilabel,
        description="binary cross-entropy with logits, summed over attributes; prediction = z > 0",
    )
)


def per_sample_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each sample, shape ``(n,)`` (formulas in the module docstring)."""
    spec = LOSSES.get(task)
    spec.check(logits, y)
    return spec.per_sample(logits, y)


def mean_loss(task: str, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``(1/n) Σ_i ℓ(z_i, y_i)``: the batch mean of :func:`per_sample_loss`."""
    return per_sample_loss(task, logits, y).mean()


def predict(task: str, logits: torch.Tensor) -> torch.Tensor:
    """Predicted labels: class indices (multiclass) or a {0,1} float matrix (multilabel)."""
    return LOSSES.get(task).predict(logits)
