"""RNI: head reset + noise on random tensors + partial fine-tuning (challenge solution #7,
Deep Unlearn's ``kgltop7``, arXiv 2410.01276). The expansion (Random Noise Injection) is
the spec author's reading.

Notation: E = ``num_epochs``, E_f = ``fine_num_epochs``, E_reset = ``reset_num_epochs``,
K = ``num_random_tensors`` (9, fixed in Deep Unlearn), ρ = ``noise_ratio``, σ = ``origin_noise``.

Reset the classifier head (found by ``find_classifier_head``, or named with ``head=``) with
PyTorch's default initialisation. Then for each 0-based epoch e:

- **noisy phase** (e < E − E_f): the trainable set is every *norm* tensor plus K tensors drawn
  without replacement from the other tensors. If e ≥ E_reset, ⌊ρ·K⌋ of those K are picked at
  random and each picked tensor that is not *skipped* gets W ← W + σ·ε, ε ~ N(0, I). Everything
  else is frozen and a new SGD(lr, momentum, wd) over the trainable set is built (momentum
  buffers reset). ``noise_skip`` says which picked tensors are skipped:

  - ``"selected_before"`` (Deep Unlearn's rule, the default with ``faithful=True``): a tensor
    that was among the K trainable tensors of *any earlier epoch*, epochs before E_reset
    included, whether or not it was noised then. The released code (``munl/unlearning/
    kgltop7.py``, ``KGLTop7.unlearn``) grows ``already_select`` by every epoch's trainable keys
    after noising and skips a picked key found in it, so noise gets rarer as epochs go by;
  - ``"noised_before"`` (the default with ``faithful=False``): a tensor noised in an earlier
    epoch, so every tensor is noised at most once but a tensor trained earlier can still be
    noised (on a ResNet-18 this noises about twice as many tensors);
- **fine phase** (e ≥ E − E_f): every tensor trains, no noise; a new SGD per epoch with
  ``fine_optimizer``'s settings, whose ``learning_rate`` is a scalar or a per-fine-epoch list
  (default [2e-4, 2e-4, 2e-4, 1e-3, 1e-3, 1e-4]).

Every epoch is one shuffled pass over retain with CE in train mode. The whole random plan
(which tensors train and which get noise, per epoch) is drawn up front by :func:`noise_plan`.

Differences from Deep Unlearn (``faithful=False``, the default): their "norm tensors" are the
tensors whose *name* contains "bn", which misses torchvision's downsample BatchNorm
(``downsample.1.*``) and treats it as an ordinary tensor that may get noise. We
select the parameters of normalisation modules (BatchNorm, LayerNorm, GroupNorm) by type;
``faithful=True`` uses the name rule, and ``noise_skip`` defaults to their "selected before"
rule (above). Their per-epoch validation-accuracy pass (``KGLTop7.unlearn``, inside Deep
Unlearn's timed region) is run only with ``faithful=True`` and when val data is given; its
seconds are reported as ``info["official_extra_seconds"]``
(:mod:`unlearnkit.methods.toolkit.official_work`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import optuna.distributions as od
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader, model_device
from unlearnkit.methods.toolkit.grad_control import frozen_except
from unlearnkit.methods.toolkit.layout import is_norm
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_step_loss
from unlearnkit.methods.toolkit.official_work import OfficialWork
from unlearnkit.methods.toolkit.optim import SGDLoopConfig
from unlearnkit.methods.toolkit.reinit import default_reset
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    ep_dist,
    optim_space,
    sgd_loop_space,
    u01_dist,
)
from unlearnkit.models import find_classifier_head

DEFAULT_FINE_LRS: tuple[float, ...] = (2e-4, 2e-4, 2e-4, 1e-3, 1e-3, 1e-4)


class FineOptimConfig(BaseModel):
    """SGD settings of the fine phase; ``learning_rate`` is a scalar or one value per fine epoch."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float | list[float] = Field(default_factory=lambda: list(DEFAULT_FINE_LRS))
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)

    def lr(self, fine_epoch: int) -> float:
        lrs = self.learning_rate
        return float(lrs[fine_epoch]) if isinstance(lrs, list) else float(lrs)


class RNIConfig(SGDLoopConfig):
    """Deep Unlearn's defaults: E 9, E_f 4, E_reset 1, lr 2e-4, momentum 0.9, wd 5e-4, ρ 0.7, σ 0.04,
    batch 64, K 9."""

    learning_rate: float = Field(2e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    num_epochs: int = Field(9, ge=0, description="E: all epochs (noisy + fine)")
    fine_num_epochs: int = Field(4, ge=0, description="E_f: final epochs training everything")
    reset_num_epochs: int = Field(1, ge=0, description="E_reset: first epoch that may add noise")
    fine_optimizer: FineOptimConfig = Field(default_factory=FineOptimConfig)
    noise_ratio: float = Field(0.7, ge=0, le=1, description="ρ: fraction of the K tensors noised")
    origin_noise: float = Field(0.04, ge=0, description="σ: std of the added noise")
    num_random_tensors: int = Field(9, ge=0, description="K: random non-norm tensors per epoch")
    faithful: bool = Field(False, description="norm tensors = names containing 'bn'")
    noise_skip: Literal["selected_before", "noised_before"] | None = Field(
        None,
        description="skip noising a tensor trained (selected_before) or noised (noised_before) "
        "in an earlier epoch; None: selected_before if faithful, else noised_before",
    )

    def skip_rule(self) -> Literal["selected_before", "noised_before"]:
        """``noise_skip``, or its default for the mode."""
        if self.noise_skip is not None:
            return self.noise_skip
        return "selected_before" if self.faithful else "noised_before"

    @model_validator(mode="after")
    def _enough_fine_lrs(self) -> RNIConfig:
        lrs = self.fine_optimizer.learning_rate
        n_fine = min(self.fine_num_epochs, self.num_epochs)
        if isinstance(lrs, list) and len(lrs) < n_fine:
            raise ValueError(
                f"fine_optimizer.learning_rate lists {len(lrs)} values but {n_fine} fine epochs run; "
                "give one per fine epoch or a scalar"
            )
        if any(v < 0 for v in (lrs if isinstance(lrs, list) else [lrs])):
            raise ValueError("fine_optimizer.learning_rate must be >= 0")
        return self


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch does: ``fine`` (all tensors train) or the trainable and noised names."""

    fine: bool
    trainable: tuple[str, ...]
    noised: tuple[str, ...]


def norm_param_names(model: nn.Module, faithful: bool) -> set[str]:
    """Names of the "bn" tensors: by name (faithful) or by normalisation-module type."""
    if faithful:
        return {n for n, _ in model.named_parameters() if "bn" in n}
    out: set[str] = set()
    for mname, m in model.named_modules():
        if is_norm(m):
            out |= {f"{mname}.{p}" if mname else p for p, _ in m.named_parameters(recurse=False)}
    return out


def noised_per_epoch(
    draws: list[tuple[tuple[str, ...], tuple[str, ...]] | None],
    rule: Literal["selected_before", "noised_before"],
) -> list[tuple[str, ...]]:
    """The tensors noised in each epoch, given per noisy epoch the K ``chosen`` (trainable)
    tensors and the ``picked`` ones (``()`` before E_reset), ``None`` for a fine epoch.

    A picked tensor is noised unless it was chosen (``"selected_before"``) or noised
    (``"noised_before"``) in an earlier epoch; the current epoch's choice counts only after it.
    """
    seen: set[str] = set()
    out: list[tuple[str, ...]] = []
    for draw in draws:
        if draw is None:
            out.append(())
            continue
        chosen, picked = draw
        noised = tuple(n for n in picked if n not in seen)
        seen |= set(chosen) if rule == "selected_before" else set(noised)
        out.append(noised)
    return out


def draw_selection(
    others: list[str], cfg: RNIConfig, generator: torch.Generator
) -> list[tuple[tuple[str, ...], tuple[str, ...]] | None]:
    """Per epoch: ``(chosen, picked)`` drawn from ``generator`` (K of ``others``, then ⌊ρ·K⌋ of
    those from epoch E_reset on), ``None`` for a fine epoch."""
    draws: list[tuple[tuple[str, ...], tuple[str, ...]] | None] = []
    n_pick = math.floor(cfg.noise_ratio * cfg.num_random_tensors)
    first_fine = cfg.num_epochs - cfg.fine_num_epochs
    for epoch in range(cfg.num_epochs):
        if epoch >= first_fine:
            draws.append(None)
            continue
        order = torch.randperm(len(others), generator=generator)[: cfg.num_random_tensors]
        chosen = tuple(others[i] for i in order.tolist())
        picked: tuple[str, ...] = ()
        if epoch >= cfg.reset_num_epochs:
            pick = torch.randperm(len(chosen), generator=generator)[:n_pick]
            picked = tuple(chosen[i] for i in pick.tolist())
        draws.append((chosen, picked))
    return draws


def noise_plan(
    norm: list[str], others: list[str], cfg: RNIConfig, generator: torch.Generator
) -> list[EpochPlan]:
    """The per-epoch plan of RNI, drawn from ``generator``; noise skipped by ``cfg.skip_rule()``."""
    draws = draw_selection(others, cfg, generator)
    noised = noised_per_epoch(draws, cfg.skip_rule())
    return [
        EpochPlan(True, (), ()) if d is None else EpochPlan(False, (*norm, *d[0]), nz)
        for d, nz in zip(draws, noised, strict=True)
    ]


@METHODS.register("rni")
class RNI(MulticlassUnlearner):
    """Reset the head, noise random tensors while training a few, then fine-tune everything."""

    name = "Kaggle #7 (Random Noise Injection)"
    abbreviation = "RNI"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, solution #7 (via Cadet et al. 2024)"
    uses = ("retain",)
    requires = ("classifier",)
    Config = RNIConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return {
            "fine_num_epochs": ep_dist(max_epochs),
            "reset_num_epochs": ep_dist(max_epochs),
            **optim_space("fine_optimizer"),
            "noise_ratio": u01_dist(),
            "origin_noise": u01_dist(),
            **sgd_loop_space(max_epochs),
        }

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, RNIConfig) else RNIConfig(**config.model_dump())
        default_reset(find_classifier_head(model, self.head, data.retain.num_outputs)[1], generator)
        params = dict(model.named_parameters())
        norm_set = norm_param_names(model, cfg.faithful)
        norm = [n for n in params if n in norm_set]
        others = [n for n in params if n not in norm_set]
        plans = noise_plan(norm, others, cfg, generator)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        first_fine = max(cfg.num_epochs - cfg.fine_num_epochs, 0)
        extra = OfficialWork(cfg.faithful, model_device(model))
        val_eval = None if data.val is None else make_loader(data.val, cfg.batch_size, False)
        model.train()
        for epoch, plan in enumerate(plans):
            if plan.fine:
                trainable = list(params.values())
                fo = cfg.fine_optimizer
                lr, mom, wd = fo.lr(epoch - first_fine), fo.momentum, fo.weight_decay
            else:
                with torch.no_grad():
                    for name in plan.noised:
                        p = params[name]
                        noise = torch.randn(p.shape, generator=generator) * cfg.origin_noise
                        p.add_(noise.to(p.device, p.dtype))
                trainable = [params[n] for n in plan.trainable]
                lr, mom, wd = cfg.learning_rate, cfg.momentum, cfg.weight_decay
            if trainable:
                opt = torch.optim.SGD(trainable, lr=lr, momentum=mom, weight_decay=wd)
                with frozen_except(model, trainable):
                    run_epoch(model, loader, ce_step_loss, opt)
            if val_eval is not None:
                extra.evaluate(model, val_eval)
        self.run_info.update(extra.info())
        return model
