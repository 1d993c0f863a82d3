"""Losses of the zoo methods: cross-entropy and temperature-scaled KL distillation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy."""
    return F.cross_entropy(logits, y)


def ce_step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CE of ``model(x)`` against ``y`` (a :data:`LossFn`)."""
    return ce_loss(model(x), y)


def kl_distill(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: Literal["batchmean", "mean", "sum"] = "batchmean",
    t_squared: bool = False,
) -> torch.Tensor:
    """KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), the distillation loss of Hinton et al. 2015.

    ``reduction="batchmean"`` sums over classes and averages over the batch; ``"mean"`` divides
    the total by B·C (PyTorch's element-wise mean, used by BT); ``t_squared`` multiplies by τ²
    (SCRUB). The teacher side is detached.
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    total = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True)
    loss = _reduce(total, student_logits, reduction)
    return loss * temperature**2 if t_squared else loss


def _reduce(total: torch.Tensor, logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """Divide a summed loss by B ("batchmean"), B·C ("mean") or 1 ("sum")."""
    divisor = {"batchmean": logits.shape[0], "mean": logits.numel(), "sum": 1}[reduction]
    return total / max(divisor, 1)


def kl_to_probs(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 1.0,
    reduction: Literal["batchmean", "mean", "sum"] = "batchmean",
) -> torch.Tensor:
    """KL(q ‖ softmax(z_S/τ)) for given target probabilities ``q`` (detached)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    total = F.kl_div(log_p_s, target_probs.detach(), reduction="sum")
    return _reduce(total, student_logits, reduction)
