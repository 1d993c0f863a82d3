"""CT: Convolution Transpose (challenge solution #5, ``kgltop5``; Deep Unlearn, arXiv 2410.01276).

1. Replace every Conv2d weight W (out × in × k × k) by its spatial transpose
   W′[o, i, a, b] = W[o, i, b, a]: each kernel is mirrored about its main diagonal. 1×1 kernels,
   biases, BN and Linear layers are unchanged.
2. Fine-tune all parameters on retain with CE: train mode, SGD(lr, momentum, wd),
   CosineAnnealingLR (T_max = E) stepped per epoch.

A deterministic weight permutation followed by plain fine-tuning. Non-square kernels cannot be
transposed in place, so such models are refused (:class:`UnsupportedError`) before any work.
No quirk to correct, so no ``faithful`` switch.
"""

from __future__ import annotations

import optuna.distributions as od
import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader
from unlearnkit.methods.toolkit.layout import conv_layers
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_step_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, cosine_factor, make_sgd, set_lr
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space


class CTConfig(SGDLoopConfig):
    """Deep Unlearn's defaults: E 3, batch 64, lr 1e-3, momentum 0.9, wd 5e-4."""

    learning_rate: float = Field(1e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    num_epochs: int = Field(3, ge=0)


@torch.no_grad()
def transpose_kernels(model: nn.Module) -> None:
    """W ← Wᵀ over the two spatial axes, for every Conv2d weight."""
    for _, conv in conv_layers(model):
        conv.weight.copy_(conv.weight.transpose(-1, -2).clone())


@METHODS.register("ct")
class CT(MulticlassUnlearner):
    """Transpose every conv kernel, then fine-tune on retain."""

    name = "Convolution Transpose (Kaggle #5)"
    abbreviation = "CT"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, solution #5 (via Cadet et al. 2024)"
    uses = ("retain",)
    requires = ("square_conv2d",)
    Config = CTConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return sgd_loop_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, CTConfig) else CTConfig(**config.model_dump())
        transpose_kernels(model)
        model.train()
        opt = make_sgd(model.parameters(), cfg)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        for epoch in range(cfg.num_epochs):
            set_lr(opt, cfg.learning_rate * cosine_factor(epoch, cfg.num_epochs))
            run_epoch(model, loader, ce_step_loss, opt)
        return model
