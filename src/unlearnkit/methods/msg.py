"""MSG: Masked Small Gradients (challenge solution #2, Deep Unlearn's ``kgltop2``).

1. **Gradient.** In train mode, accumulate

       G = Σ_b ∇ CE(R′_b) − Σ_b ∇ CE(F_b),

   where R′ is a random subset of retain with |R′| = |forget| (min with |retain|) passed in
   shuffled batches of ``subset_batch_size`` (64, hard-coded in Deep Unlearn) and F_b are the
   shuffled forget batches of ``batch_size``; each term is a batch-mean CE.
2. **Re-initialise** each convolution independently: with n = weight.numel(),
   k = round(init_rate·n) (Python rounding), S = the k entries with the smallest |G| (stable
   order on ties) get fresh Kaiming-normal values N(0, 2/fan_out), fan_out = C_out·k_h·k_w;
   the other entries are kept. Deep Unlearn's models only have Conv2d; we treat Conv1d/Conv3d
   the same way (fan_out = C_out·kernel size), so MSG also runs on 1-D conv nets.
   A conv bias, if any, is redrawn with PyTorch's default U(±1/√fan_in). A gradient multiplier
   M (1 on S, ``kept_grad_scale`` = 0.1 elsewhere) scales the weight's *loss* gradient for the
   rest of the method (weight decay and momentum are not scaled). BN and Linear layers are
   untouched.
3. **Fine-tune** all parameters on retain with CE, train mode, SGD(lr, momentum, wd) and the
   triangular per-epoch schedule A = ⌊(E+1)/2⌋, T = E+1: lr_e = lr0·e/A for e ≤ A, else
   lr0·(T−e)/(T−A) (1-based e; E = 5 gives 1/3, 2/3, 1, 2/3, 1/3).

Difference from Deep Unlearn (``faithful=False``, the default): their gradient pass runs in
train mode and so also updates the BatchNorm running statistics with R′ and *forget* batches
(see docs/methods.md). We compute the same train-mode gradients but restore every buffer afterwards, so
step 1 has no side effect; ``faithful=True`` keeps their side effect.
"""

from __future__ import annotations

import contextlib
import math

import optuna.distributions as od
import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader, model_device, to_device
from unlearnkit.methods.toolkit.grad_control import grad_multipliers, preserved_buffers
from unlearnkit.methods.toolkit.layout import CONV_TYPES, conv_layers
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_loss, ce_step_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd, set_lr
from unlearnkit.methods.toolkit.reinit import fan_in, fan_out, uniform_fill_
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space, u01_dist


class MSGConfig(SGDLoopConfig):
    """Deep Unlearn's defaults: E 5, batch 64, init_rate 0.3, lr 1e-3, momentum 0.9, wd 5e-4."""

    learning_rate: float = Field(1e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    num_epochs: int = Field(5, ge=0)
    init_rate: float = Field(0.3, ge=0, le=1, description="fraction of each conv re-initialised")
    subset_batch_size: int = Field(64, ge=1, description="batch size of the retain-subset pass")
    kept_grad_scale: float = Field(0.1, ge=0, description="gradient multiplier of kept entries")
    faithful: bool = Field(False, description="let the gradient pass update BN statistics")


def triangular_factor(epoch: int, num_epochs: int) -> float:
    """lr factor of 1-based ``epoch``: e/A up to A = ⌊(E+1)/2⌋, then (T−e)/(T−A), T = E+1."""
    a, t = (num_epochs + 1) // 2, num_epochs + 1
    return epoch / a if epoch <= a else (t - epoch) / (t - a)


def collect_gradient(
    model: nn.Module, data: UnlearnData, cfg: MSGConfig, generator: torch.Generator
) -> dict[nn.Module, torch.Tensor]:
    """G for every conv weight (zeros where a conv got no gradient); grads are cleared after."""
    device = model_device(model)
    retain = data.retain
    n_sub = min(len(data.forget), len(retain))
    pick = torch.randperm(len(retain), generator=generator)[:n_sub]
    subset = retain.subset(retain.ids[pick], name=f"{retain.name}-msg-subset")
    model.zero_grad(set_to_none=True)
    for x, y in make_loader(subset, cfg.subset_batch_size, shuffle=True, generator=generator):
        x, y = to_device((x, y), device)
        ce_loss(model(x), y).backward()
    for x, y in make_loader(data.forget, cfg.batch_size, shuffle=True, generator=generator):
        x, y = to_device((x, y), device)
        (-ce_loss(model(x), y)).backward()
    grads = {
        conv: conv.weight.grad.detach().clone()
        if conv.weight.grad is not None
        else torch.zeros_like(conv.weight)
        for _, conv in conv_layers(model, CONV_TYPES)
    }
    model.zero_grad(set_to_none=True)
    return grads


@torch.no_grad()
def reinit_small_gradients(
    conv: nn.Module, grad: torch.Tensor, cfg: MSGConfig, generator: torch.Generator
) -> torch.Tensor:
    """Redraw the round(rate·n) smallest-|G| entries of ``conv.weight``; return the multiplier."""
    w = conv.weight
    n = w.numel()
    k = round(cfg.init_rate * n)
    chosen = torch.argsort(grad.abs().flatten().cpu(), stable=True)[:k]
    fresh = torch.randn(n, generator=generator) * math.sqrt(2.0 / fan_out(w))
    flat = w.detach().view(-1)
    chosen_dev = chosen.to(w.device)
    flat[chosen_dev] = fresh[chosen].to(w.device, w.dtype)
    if getattr(conv, "bias", None) is not None:
        uniform_fill_(conv.bias, 1.0 / math.sqrt(fan_in(w)), generator)
    mult = torch.full((n,), cfg.kept_grad_scale, dtype=w.dtype, device=w.device)
    mult[chosen_dev] = 1.0
    return mult.view_as(w)


@METHODS.register("msg")
class MSG(MulticlassUnlearner):
    """Re-initialise the conv weights with the smallest forget-vs-retain gradient, then fine-tune."""

    name = "Masked Small Gradients (Kaggle #2)"
    abbreviation = "MSG"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, solution #2 (via Cadet et al. 2024)"
    uses = ("retain", "forget")
    requires = ("convnd",)
    Config = MSGConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return {"init_rate": u01_dist(), **sgd_loop_space(max_epochs)}

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, MSGConfig) else MSGConfig(**config.model_dump())
        model.train()
        side_effects = contextlib.nullcontext() if cfg.faithful else preserved_buffers(model)
        with side_effects:
            grads = collect_gradient(model, data, cfg, generator)
        multipliers = {
            conv.weight: reinit_small_gradients(conv, g, cfg, generator)
            for conv, g in grads.items()
        }
        opt = make_sgd(model.parameters(), cfg)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        with grad_multipliers(multipliers):
            for epoch in range(1, cfg.num_epochs + 1):
                set_lr(opt, cfg.learning_rate * triangular_factor(epoch, cfg.num_epochs))
                run_epoch(model, loader, ce_step_loss, opt)
        return model
