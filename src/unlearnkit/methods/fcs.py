"""FCS: NeurIPS 2023 unlearning challenge solution #1 (Deep Unlearn's ``kgltop1``).

The name (Forget-Contrast-Strengthen) is the spec author's reading of the code's structure.
Train mode throughout; z = the network's logits; C classes; U = uniform distribution.

1. **Forget**: one pass over forget with loss KL(U ‖ softmax(z_f)) (batch mean), optimizer
   O₁ = SGD(``learning_rate``, ``momentum``, ``weight_decay``).
2. Repeat E = ``num_epochs`` times:

   a. **Contrast**: iterate over pairs (forget batch, retain batch) from two shuffled loaders of
      the same batch size, stopping when forget (or retain) is exhausted. With Z_f = S(x_f)
      (gradient) and Z_r = S(x_r) (detached), M = Z_f Z_rᵀ / τ and

          loss = −(1/(B_f·B_r)) Σ_{i,j} log_softmax_j(M)_{ij},

      i.e. cross-entropy against a uniform target over the retain columns. Optimizer
      O_f = SGD(``forget_optimizer``), cosine-annealed over (#forget batches)·E steps down to
      ``eta_min``, stepped after every forget batch.
   b. **Strengthen**: a full shuffled pass over retain with CE and O_r = SGD(``retain_optimizer``)
      whose lr is ``retain_optimizer.learning_rate × batch_size / 64``.

Deep Unlearn's code has no quirk here that we change, so there is no ``faithful`` switch.
"""

from __future__ import annotations

import math

import optuna.distributions as od
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader, model_device, to_device
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_step_loss
from unlearnkit.methods.toolkit.optim import OptimConfig, SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    eta_dist,
    optim_space,
    sgd_loop_space,
    temp_dist,
)


class FCSConfig(SGDLoopConfig):
    """Deep Unlearn's defaults. G5 is O₁'s lr/momentum/wd, the batch size and E."""

    learning_rate: float = Field(5e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1)
    num_epochs: int = Field(8, ge=0)
    temperature: float = Field(1.15, gt=0, description="τ of the contrast logits")
    eta_min: float = Field(1e-6, ge=0, description="floor of O_f's cosine schedule")
    retain_optimizer: OptimConfig = OptimConfig(learning_rate=1e-3, momentum=0.9, weight_decay=1e-2)
    forget_optimizer: OptimConfig = OptimConfig(learning_rate=3e-4, momentum=0.9, weight_decay=0.0)


def uniform_kl_loss(logits: torch.Tensor) -> torch.Tensor:
    """KL(U ‖ softmax(z)) averaged over the batch: (1/B) Σ_i Σ_c (1/C)(log(1/C) − log p_ic)."""
    log_p = F.log_softmax(logits, dim=1)
    return (-math.log(logits.shape[1]) - log_p.mean(dim=1)).mean()


def contrast_loss(z_f: torch.Tensor, z_r: torch.Tensor, temperature: float) -> torch.Tensor:
    """−mean_{i,j} log_softmax_j(Z_f Z_rᵀ/τ)_{ij}, with Z_r detached."""
    m = z_f @ z_r.detach().T / temperature
    return -F.log_softmax(m, dim=1).mean()


@METHODS.register("fcs")
class FCS(MulticlassUnlearner):
    """Push forget predictions to uniform, contrast forget against retain logits, re-fit retain."""

    name = "Kaggle #1 (Forget-Contrast-Strengthen)"
    abbreviation = "FCS"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, solution #1 (via Cadet et al. 2024)"
    uses = ("retain", "forget")
    Config = FCSConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return {
            **optim_space("retain_optimizer"),
            **optim_space("forget_optimizer"),
            "temperature": temp_dist(),
            "eta_min": eta_dist(),
            **sgd_loop_space(max_epochs),
        }

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, FCSConfig) else FCSConfig(**config.model_dump())
        device = model_device(model)
        bs = cfg.batch_size
        forget = make_loader(data.forget, bs, shuffle=True, generator=generator)
        retain = make_loader(data.retain, bs, shuffle=True, generator=generator)
        retain_pairs = make_loader(data.retain, bs, shuffle=True, generator=generator)
        model.train()

        # Stage 1: forget predictions towards uniform.
        run_epoch(
            model, forget, lambda m, x, _y: uniform_kl_loss(m(x)), make_sgd(model.parameters(), cfg)
        )

        opt_f = make_sgd(model.parameters(), cfg.forget_optimizer)
        total_steps = max(len(forget) * cfg.num_epochs, 1)
        sched_f = torch.optim.lr_scheduler.CosineAnnealingLR(
            opt_f, T_max=total_steps, eta_min=cfg.eta_min
        )
        retain_cfg = cfg.retain_optimizer.model_copy(
            update={"learning_rate": cfg.retain_optimizer.learning_rate * bs / 64}
        )
        opt_r = make_sgd(model.parameters(), retain_cfg)
        for _ in range(cfg.num_epochs):
            # (a) contrast round
            for (xf, _yf), (xr, _yr) in zip(forget, retain_pairs, strict=False):
                xf, xr = to_device((xf, xr), device)
                opt_f.zero_grad(set_to_none=True)
                z_f = model(xf)
                with torch.no_grad():
                    z_r = model(xr)
                contrast_loss(z_f, z_r, cfg.temperature).backward()
                opt_f.step()
                sched_f.step()
            # (b) strengthen round
            run_epoch(model, retain, ce_step_loss, opt_r)
        return model
