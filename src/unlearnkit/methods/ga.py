"""GA: gradient ascent on the forget set (Deep Unlearn, arXiv 2410.01276).

Train mode; ``num_epochs`` shuffled passes over forget; per batch the loss is
``-mean CE(f(x_f), y_f)`` and SGD(lr, momentum, wd) takes a step. No schedule, no retain term,
no clipping: the loss is unbounded, so the search must find a small lr or few epochs.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space


class GAConfig(SGDLoopConfig):
    """Defaults: 10 epochs, batch 256, lr 0.01, momentum 0.9, wd 5e-4."""

    learning_rate: float = Field(0.01, gt=0)
    num_epochs: int = Field(10, ge=1)


def negative_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``-mean CE(model(x), y)``."""
    return -ce_loss(model(x), y)


@METHODS.register("ga")
class GradientAscent(MulticlassUnlearner):
    """Maximise the forget-set cross-entropy by SGD on its negative."""

    name = "Gradient Ascent"
    abbreviation = "GA"
    family = "baseline"
    paper = "Thudi et al. 2022; Graves et al. 2021 (Amnesiac Machine Learning)"
    uses = ("forget",)
    Config = GAConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5."""
        return sgd_loop_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = GAConfig.model_validate(config.model_dump())
        loader = make_loader(data.forget, cfg.batch_size, shuffle=True, generator=generator)
        opt = make_sgd(model.parameters(), cfg)
        model.train()
        for _ in range(cfg.num_epochs):
            run_epoch(model, loader, negative_ce, opt)
        return model
