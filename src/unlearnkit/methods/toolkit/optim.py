"""SGD settings and learning-rate schedules shared by the zoo methods.

:class:`SGDLoopConfig` holds the generic hyper-parameters of an SGD fine-tuning loop (Deep
Unlearn's G5 set: learning rate, momentum, weight decay, batch size, epochs; Cadet et al.,
arXiv 2410.01276); :class:`OptimConfig` a secondary optimiser nested in a method's config.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from unlearnkit.methods.base import MethodConfig


class OptimConfig(BaseModel):
    """SGD settings of a secondary optimizer (nested in a method config)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


class SGDLoopConfig(MethodConfig):
    """The generic hyper-parameters of an SGD loop (Deep Unlearn's G5) with their defaults.

    lr 0.1, momentum 0.9, wd 5e-4 (arXiv 2304.04934) and batch size 256 (arXiv 2310.12508);
    5 epochs (FT's default). Methods override the defaults their source uses.
    """

    learning_rate: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(256, ge=1)
    num_epochs: int = Field(5, ge=1)


class _HasSGD(Protocol):
    learning_rate: float
    momentum: float
    weight_decay: float


def make_sgd(params: Iterable[Any], cfg: _HasSGD) -> torch.optim.SGD:
    """``SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)``."""
    return torch.optim.SGD(
        list(params), lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def step_decay_factor(epoch: int, num_epochs: int, rate: float) -> float:
    """``rate ** #{d ∈ D : epoch > d}`` with D = [⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋] (SCRUB, CF-k).

    D is a list, as in the SCRUB notebook's ``np.sum(epoch > np.asarray(lr_decay_epochs))``:
    equal milestones (small E) each count.
    """
    milestones = [int(0.5 * num_epochs), int(0.8 * num_epochs), int(0.9 * num_epochs)]
    return rate ** sum(epoch > d for d in milestones)


def cosine_factor(epoch: int, num_epochs: int) -> float:
    """``(1 + cos(π·epoch/T))/2``: CosineAnnealingLR (eta_min 0, T_max = T) at 0-based ``epoch``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))
