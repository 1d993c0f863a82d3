"""KDE: reset stem and head, then distil (challenge notebook "unlearning by resetting layers",
7th on the private leaderboard; Deep Unlearn's ``kgltop6``, arXiv 2410.01276).

1. **Teacher** T = a frozen copy of O (eval mode).
2. **Reset** the stem ``conv1`` (if the model has that attribute) and the classifier head
   (found by ``find_classifier_head``, or named with ``head=``) with PyTorch's default
   initialisation, drawn from the run's generator. Models
   without ``conv1`` (TinyViT, MLPs) only get their head reset, as in Deep Unlearn.
3. **Warm-up** for E_w = ``num_epochs`` epochs over the **validation inputs** in order (held-out
   data outside retain; **labels are never read**), train mode, SGD(G5 optimizer), no schedule:
   L = KL(softmax(z_T/τ) ‖ softmax(z_S/τ)) (batch mean, no τ²).
4. **Retain phase** for E_r = ``retain_num_epochs`` epochs over shuffled retain, train mode,
   SGD(``retain_optimizer``), CosineAnnealingLR(T_max = E_r) stepped per epoch:

       L = SoftCE + CE(z_S, y) + KL_τ(T ‖ S),
       SoftCE = −(1/B) Σ_i Σ_c softmax(z_T,i/τ)_c · log softmax(z_S,i/τ)_c.

Data requirement: the unlabelled ``val`` split (declared in ``uses``/``unlabelled``).
No quirk to correct, so no ``faithful`` switch.
"""

from __future__ import annotations

from collections.abc import Iterator

import optuna.distributions as od
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader
from unlearnkit.methods.toolkit.loops import frozen_copy, run_epoch
from unlearnkit.methods.toolkit.losses import ce_loss, kl_distill
from unlearnkit.methods.toolkit.optim import (
    OptimConfig,
    SGDLoopConfig,
    cosine_factor,
    make_sgd,
    set_lr,
)
from unlearnkit.methods.toolkit.reinit import default_reset
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    ep_dist,
    optim_space,
    sgd_loop_space,
    temp_dist,
)
from unlearnkit.models import find_classifier_head


class KDEConfig(SGDLoopConfig):
    """Deep Unlearn's defaults: warm-up E_w 3 (lr 9e-4, momentum 0.9, wd 5e-4), retain E_r 3 (lr 1e-3,
    momentum 0.9, wd 5e-4), τ 5, batch 64."""

    learning_rate: float = Field(9e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    num_epochs: int = Field(3, ge=0, description="E_w: warm-up epochs over val inputs")
    retain_num_epochs: int = Field(3, ge=0, description="E_r: epochs over retain")
    retain_optimizer: OptimConfig = OptimConfig(learning_rate=1e-3, momentum=0.9, weight_decay=5e-4)
    temperature: float = Field(5.0, gt=0, description="τ of the distillation terms")


def soft_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """−mean_i Σ_c softmax(z_T/τ)_c · log softmax(z_S/τ)_c (teacher detached)."""
    q = F.softmax(teacher_logits.detach() / tau, dim=1)
    return -(q * F.log_softmax(student_logits / tau, dim=1)).sum(dim=1).mean()


def input_batches(x: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Unshuffled batches of inputs only, as ``(x, x)`` pairs for :func:`run_epoch`'s ``(x, y)``.

    The second element is a placeholder so that labels are never touched.
    """
    for xb in torch.split(x, batch_size):
        yield xb, xb


@METHODS.register("kde")
class KDE(MulticlassUnlearner):
    """Reset stem and head, distil the original on validation inputs, then on retain."""

    name = "Kaggle #6 (reset layers + knowledge distillation)"
    abbreviation = "KDE"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, 7th-place notebook (via Cadet et al. 2024)"
    uses = ("retain", "val")
    unlabelled = ("val",)
    requires = ("classifier",)
    Config = KDEConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return {
            "temperature": temp_dist(),
            "retain_num_epochs": ep_dist(max_epochs),
            **optim_space("retain_optimizer"),
            **sgd_loop_space(max_epochs),
        }

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, KDEConfig) else KDEConfig(**config.model_dump())
        assert data.val is not None  # checked before
        tau = cfg.temperature
        teacher = frozen_copy(model)
        stem = getattr(model, "conv1", None)
        if isinstance(stem, nn.Module):
            default_reset(stem, generator)
        default_reset(find_classifier_head(model, self.head, data.retain.num_outputs)[1], generator)
        model.train()

        def warm_loss(m: nn.Module, x: torch.Tensor, _unused: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                z_t = teacher(x)
            return kl_distill(m(x), z_t, tau)

        opt_w = make_sgd(model.parameters(), cfg)
        val_x = data.val.x
        for _ in range(cfg.num_epochs):
            run_epoch(model, input_batches(val_x, cfg.batch_size), warm_loss, opt_w)

        def retain_loss(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            z_s = m(x)
            with torch.no_grad():
                z_t = teacher(x)
            return soft_ce(z_s, z_t, tau) + ce_loss(z_s, y) + kl_distill(z_s, z_t, tau)

        opt_r = make_sgd(model.parameters(), cfg.retain_optimizer)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        for epoch in range(cfg.retain_num_epochs):
            set_lr(
                opt_r,
                cfg.retain_optimizer.learning_rate * cosine_factor(epoch, cfg.retain_num_epochs),
            )
            run_epoch(model, loader, retain_loss, opt_r)
        return model
