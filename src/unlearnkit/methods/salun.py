"""SalUn: saliency unlearning (Fan et al., ICLR 2024; Deep Unlearn, arXiv 2410.01276).

1. **Saliency mask.** In eval mode, with g_j the gradient of −mean CE on the j-th of the N
   forget batches (``batch_size``), for every trainable parameter tensor, the saliency is

   - ``saliency_sum="plain"`` (the default with ``faithful=False``): G = Σ_j g_j over the
     forget batches in order;
   - ``saliency_sum="cumulative"`` (Deep Unlearn's, the default with ``faithful=True``):
     G = Σ_{j=1}^{N} (N − j + 1)·g_j over the forget batches in a shuffled order
     (``randperm`` from the run's generator). The released ``save_gradient_ratio``
     (``munl/unlearning/salun.py``) adds ``param.grad`` to the running total after every
     backward, but its ``optimizer.zero_grad()`` zeroes the gradients of the model being
     unlearned, not of the copy whose gradients it reads, so after batch j ``param.grad`` holds
     g_1 + … + g_j and batch j's gradient is counted N − j + 1 times; its forget loader shuffles.

   Rank all P scalars by |G| globally; the mask is 1 on the top ⌊P·threshold⌋ entries, 0
   elsewhere, so ``threshold`` is the fraction of weights that may change.
2. **Relabel training.** ``num_epochs`` SRL epochs (train mode, retain ∪ randomly
   relabelled forget, SGD(lr, momentum, wd)); after each backward pass every gradient is
   multiplied element-wise by its mask before the step.

Differences from Deep Unlearn:

- ``faithful=False`` (default): the plain saliency sum; the whole update is masked: after every
  step the entries outside the mask are put back to their original values, so momentum and
  weight decay cannot move them (they stay bit-identical); random labels exclude the true
  label, as in the SalUn paper.
- ``faithful=True``: the cumulative saliency sum (above); only the gradient is masked; weight
  decay is added by the optimiser after the masking (and then carried by momentum), so with
  wd > 0 non-salient weights still move; random labels are uniform over all classes (the true
  label can be drawn) and the label RNG is re-seeded every epoch (see
  :mod:`unlearnkit.methods.srl`). ``saliency_sum`` picks either sum in either mode.
- ``mask_optimizer.*`` is not a hyper-parameter: the released code searches it but the mask
  pass never steps an optimiser.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.srl import relabel_epochs
from unlearnkit.methods.toolkit.batches import make_loader, model_device
from unlearnkit.methods.toolkit.loops import run_epoch, trainable_params
from unlearnkit.methods.toolkit.losses import ce_loss, ce_step_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space, u01_dist


class SalUnConfig(SGDLoopConfig):
    """Defaults: 10 epochs, batch 256, threshold 0.5, SGD lr 0.01, momentum 0, wd 0."""

    learning_rate: float = Field(0.01, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    num_epochs: int = Field(10, ge=1)
    threshold: float = Field(0.5, ge=0, le=1)
    faithful: bool = False
    saliency_sum: Literal["plain", "cumulative"] | None = Field(
        None,
        description="plain: Σ g_j; cumulative: Σ (N−j+1)·g_j over shuffled forget batches "
        "(Deep Unlearn); None: cumulative if faithful, else plain",
    )

    def saliency_rule(self) -> Literal["plain", "cumulative"]:
        """``saliency_sum``, or its default for the mode."""
        if self.saliency_sum is not None:
            return self.saliency_sum
        return "cumulative" if self.faithful else "plain"


def accumulated_gradient(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    rule: Literal["plain", "cumulative"] = "plain",
) -> list[torch.Tensor]:
    """Per trainable parameter, Σ_j g_j (``plain``) or Σ_j (g_1 + … + g_j) = Σ_j (N − j + 1)·g_j
    (``cumulative``) over ``batches`` in the given order, g_j = ∇(−mean CE) of batch j, in eval
    mode (the mode is restored)."""
    params = trainable_params(model)
    total = [torch.zeros_like(p) for p in params]
    running = [torch.zeros_like(p) for p in params]
    device = model_device(model)
    was_training = model.training
    model.eval()
    for x, y in batches:
        loss = -ce_loss(model(x.to(device)), y.to(device))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, run, g in zip(total, running, grads, strict=True):
            if g is None:
                g = torch.zeros_like(acc)
            if rule == "cumulative":
                run.add_(g)
                g = run
            acc.add_(g)
    model.train(was_training)
    return total


def forget_gradient(
    model: nn.Module,
    forget: ArrayDataset,
    batch_size: int,
    rule: Literal["plain", "cumulative"] = "plain",
    generator: torch.Generator | None = None,
) -> list[torch.Tensor]:
    """The saliency G of ``rule`` over the forget batches: in order for ``plain``, in the order
    ``randperm(len(forget), generator)`` for ``cumulative`` (Deep Unlearn's shuffled loader)."""
    shuffle = rule == "cumulative"
    loader = make_loader(forget, batch_size, shuffle=shuffle, generator=generator)
    return accumulated_gradient(model, loader, rule)


def saliency_mask(grads: list[torch.Tensor], threshold: float) -> list[torch.Tensor]:
    """Boolean masks: True on the ⌊P·threshold⌋ entries of largest |g| over all tensors."""
    scores = torch.cat([g.abs().flatten() for g in grads])
    k = int(scores.numel() * threshold)
    flat = torch.zeros_like(scores, dtype=torch.bool)
    if k > 0:
        flat[torch.topk(scores, k, sorted=False).indices] = True
    return [
        m.view_as(g) for m, g in zip(flat.split([g.numel() for g in grads]), grads, strict=True)
    ]


@METHODS.register("salun")
class SalUn(MulticlassUnlearner):
    """Random-label training restricted to the forget-salient weights."""

    name = "Saliency Unlearning"
    abbreviation = "SalUn"
    family = "literature"
    paper = "Fan et al., SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency, ICLR 2024"
    uses = ("retain", "forget")
    Config = SalUnConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5 + threshold: U01."""
        return {**sgd_loop_space(max_epochs), "threshold": u01_dist()}

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = SalUnConfig.model_validate(config.model_dump())
        params = trainable_params(model)
        grads = forget_gradient(
            model, data.forget, cfg.batch_size, cfg.saliency_rule(), generator=generator
        )
        masks = saliency_mask(grads, cfg.threshold)
        originals = [p.detach().clone() for p in params] if not cfg.faithful else []

        def mask_grads() -> None:
            for p, m in zip(params, masks, strict=True):
                if p.grad is not None:
                    p.grad.mul_(m)

        @torch.no_grad()
        def mask_update() -> None:
            for p, m, p0 in zip(params, masks, originals, strict=True):
                p.copy_(torch.where(m, p, p0))

        opt = make_sgd(params, cfg)
        epochs = relabel_epochs(data, cfg.batch_size, generator, cfg.faithful)
        model.train()
        for _ in range(cfg.num_epochs):
            run_epoch(
                model,
                next(epochs),
                ce_step_loss,
                opt,
                before_step=mask_grads,
                after_step=None if cfg.faithful else mask_update,
            )
        return model
