"""NG+: negative gradient plus (Kurmanji et al. 2023, the SCRUB paper; Deep Unlearn, arXiv 2410.01276).

One epoch = one shuffled pass over retain; each retain batch is paired with the next forget
batch, cycling the forget loader (``itertools.cycle`` semantics: after the first pass of an
epoch the same forget batches are replayed in the same order). Per step

    L = α·[CE(S(x_r), y_r) + (λ/2)·‖θ − θ_O‖²] − (1 − α)·CE(S(x_f), y_f),

one SGD(lr, momentum, wd) step, no schedule. The model is in **eval mode** while training
(BatchNorm statistics frozen, dropout off), as in Deep Unlearn.

Difference from Deep Unlearn (``faithful=False``, the default): the L2-to-original coefficient
λ (``l2_weight``) is a real, searchable hyper-parameter (default 0). In the released code it is
an unannotated config attribute stuck at 0; ``faithful=True`` forces λ = 0 whatever the config
says, and ``search_space_for(E*, faithful=True)`` does not sample it. In Deep Unlearn's
``munl/unlearning/neggradplus.py`` the coefficient of ``l2_penalty`` is ``cfg.weight_decay``,
an unannotated class attribute of ``DefaultNegGradPlusUnlearningConfig`` (0.0), so not a
config field; the search samples ``optimizer.weight_decay`` (our ``weight_decay``) instead.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import cycle, make_loader, model_device, to_device
from unlearnkit.methods.toolkit.losses import ce_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    sgd_loop_space,
    u01_dist,
    wd_dist,
)


class NGPlusConfig(SGDLoopConfig):
    """Defaults: 10 epochs, batch 256, α 0.95, lr 0.01, momentum 0.9, wd 0, λ 0."""

    learning_rate: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    num_epochs: int = Field(10, ge=1)
    alpha: float = Field(0.95, ge=0, le=1)
    l2_weight: float = Field(0.0, ge=0)
    faithful: bool = False


def ngplus_loss(
    model: nn.Module,
    batch_r: tuple[torch.Tensor, torch.Tensor],
    batch_f: tuple[torch.Tensor, torch.Tensor],
    alpha: float,
    l2_weight: float,
    anchor: list[torch.Tensor] | None,
) -> torch.Tensor:
    """α·[CE_r + (λ/2)·‖θ − θ_O‖²] − (1 − α)·CE_f (the anchor θ_O is used only when λ > 0)."""
    loss_r = ce_loss(model(batch_r[0]), batch_r[1])
    if l2_weight > 0 and anchor is not None:
        sq = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
        loss_r = loss_r + 0.5 * l2_weight * sq
    loss_f = ce_loss(model(batch_f[0]), batch_f[1])
    return alpha * loss_r - (1.0 - alpha) * loss_f


@METHODS.register("ngplus")
class NegGradPlus(MulticlassUnlearner):
    """Descend on retain CE while ascending on forget CE, weighted by α and 1 − α."""

    name = "Negative Gradient Plus"
    abbreviation = "NG+"
    family = "baseline"
    paper = "Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023"
    uses = ("retain", "forget")
    Config = NGPlusConfig

    inert_when_faithful = ("l2_weight",)

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5 + alpha: U01 + l2_weight: WD (not sampled with ``faithful=True``, where it has no
        effect: :meth:`search_space_for`)."""
        return {**sgd_loop_space(max_epochs), "alpha": u01_dist(), "l2_weight": wd_dist()}

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = NGPlusConfig.model_validate(config.model_dump())
        l2 = 0.0 if cfg.faithful else cfg.l2_weight
        anchor = [p.detach().clone() for p in model.parameters()] if l2 > 0 else None
        retain = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        forget = make_loader(data.forget, cfg.batch_size, shuffle=True, generator=generator)
        opt = make_sgd(model.parameters(), cfg)
        device = model_device(model)
        model.eval()
        for _ in range(cfg.num_epochs):
            for batch_r, batch_f in zip(retain, cycle(forget, cache=True), strict=False):
                b_r, b_f = to_device(batch_r, device), to_device(batch_f, device)
                opt.zero_grad(set_to_none=True)
                ngplus_loss(model, b_r, b_f, cfg.alpha, l2, anchor).backward()
                opt.step()
        return model
