"""FT: fine-tune on the retain set (Deep Unlearn, arXiv 2410.01276).

Train mode; ``num_epochs`` shuffled passes over retain minimising mean cross-entropy with
SGD(lr, momentum, wd); CosineAnnealingLR with T_max = ``num_epochs`` stepped after each epoch
(the lr reaches about 0 at the end). The forget set is never read.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_step_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space


class FTConfig(SGDLoopConfig):
    """Defaults: 5 epochs, batch 256, lr 0.1, momentum 0.9, wd 5e-4."""


@METHODS.register("ft")
class FineTune(MulticlassUnlearner):
    """Fine-tune all parameters on retain with CE and a per-epoch cosine schedule."""

    name = "Fine-Tune"
    abbreviation = "FT"
    family = "baseline"
    paper = "fine-tuning baseline, e.g. Golatkar et al. 2020; Warnecke et al. 2023"
    uses = ("retain",)
    Config = FTConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5."""
        return sgd_loop_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = FTConfig.model_validate(config.model_dump())
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        opt = make_sgd(model.parameters(), cfg)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.num_epochs)
        model.train()
        for _ in range(cfg.num_epochs):
            run_epoch(model, loader, ce_step_loss, opt)
            sched.step()
        return model
