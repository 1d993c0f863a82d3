"""CF-k: Catastrophically Forgetting the last k layers (Goel et al. 2022; arXiv 2410.01276).

Freeze everything except the last ``k`` blocks and the classifier (see
:func:`~unlearnkit.methods.toolkit.layout.model_layout` for what a block is: ``layer1..layer4``
of a ResNet, the transformer stages of a TinyViT, else the model's top-level children), then
fine-tune those on the retain set in **eval mode** (BatchNorm statistics frozen) with

    L = CE(f(x), y) + (λ/2)·‖θ_train − θ_O,train‖²,      λ = ``sgda_weight_decay``,

plain SGD (momentum 0, weight decay 0) and the SCRUB step decay: at the start of 0-based epoch
e, lr = lr0 · r^{#{d ∈ [⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋] : e > d}}, r = ``sgda_decay_rate``.
The stem is never trained; ``k`` larger than the number of blocks means all blocks.

Search space: Deep Unlearn also samples ``sgda_learning_rate`` and ``momentum``, which the code
never reads; they are left out here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import optuna.distributions as od
import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import Batch, make_loader
from unlearnkit.methods.toolkit.grad_control import frozen_except
from unlearnkit.methods.toolkit.layout import Layout, model_layout
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_loss
from unlearnkit.methods.toolkit.optim import set_lr, step_decay_factor
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    bs_dist,
    ep_dist,
    int10_dist,
    lr_dist,
    u01_dist,
    wd_dist,
)


class CFkConfig(MethodConfig):
    """Deep Unlearn's defaults: E 10, batch 256, k 1, lr 0.01, r 0.1, λ 0.1."""

    num_epochs: int = Field(10, ge=0)
    batch_size: int = Field(256, ge=1)
    num_blocks: int = Field(1, ge=0, description="k: how many of the last blocks to train")
    learning_rate: float = Field(0.01, ge=0)
    sgda_decay_rate: float = Field(0.1, ge=0, description="r: step-decay factor")
    sgda_weight_decay: float = Field(0.1, ge=0, description="λ: L2 pull towards θ_O")


def trained_modules(layout: Layout, k: int) -> list[nn.Module]:
    """The last ``k`` blocks followed by the classifier."""
    return [m for _, m in layout.last_blocks(k)] + [layout.classifier[1]]


def unique_params(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """Parameters of ``modules``, each once, in order."""
    seen: set[int] = set()
    out: list[nn.Parameter] = []
    for m in modules:
        for p in m.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
    return out


def train_last_blocks(
    model: nn.Module,
    params: list[nn.Parameter],
    batches: Callable[[], Iterable[Batch]],
    cfg: CFkConfig,
) -> None:
    """The CF-k/EU-k training loop on ``params`` (everything else frozen).

    ``batches()`` returns the batches of one epoch. The model's train/eval modes are the
    caller's choice.
    """
    anchor = [p.detach().clone() for p in params]
    lam = cfg.sgda_weight_decay

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = ce_loss(m(x), y)
        if lam:
            dist = sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))
            loss = loss + 0.5 * lam * dist
        return loss

    opt = torch.optim.SGD(params, lr=cfg.learning_rate, momentum=0.0, weight_decay=0.0)
    with frozen_except(model, params):
        for epoch in range(cfg.num_epochs):
            set_lr(
                opt,
                cfg.learning_rate * step_decay_factor(epoch, cfg.num_epochs, cfg.sgda_decay_rate),
            )
            run_epoch(model, batches(), loss_fn, opt)


def cfk_space(max_epochs: int) -> dict[str, od.BaseDistribution]:
    """CF-k's behaviour-changing hyper-parameters."""
    return {
        "num_epochs": ep_dist(max_epochs),
        "batch_size": bs_dist(),
        "sgda_decay_rate": u01_dist(),
        "learning_rate": lr_dist(),
        "sgda_weight_decay": wd_dist(),
        "num_blocks": int10_dist(),
    }


@METHODS.register("cfk")
class CFk(MulticlassUnlearner):
    """Fine-tune only the last k blocks and the classifier, in eval mode, with an L2 anchor."""

    name = "Catastrophically Forgetting the last k layers"
    abbreviation = "CF-k"
    family = "literature"
    paper = "Goel et al. 2022, Towards Adversarial Evaluations for Inexact Machine Unlearning"
    uses = ("retain",)
    requires = ("classifier",)
    Config = CFkConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return cfk_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, CFkConfig) else CFkConfig(**config.model_dump())
        params = unique_params(
            trained_modules(model_layout(model, self.head, data.retain.num_outputs), cfg.num_blocks)
        )
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)

        def batches() -> Iterator[Batch]:
            return iter(loader)

        model.eval()
        train_last_blocks(model, params, batches, cfg)
        return model
