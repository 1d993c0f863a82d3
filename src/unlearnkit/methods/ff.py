"""FF: Fisher forgetting (Golatkar et al., CVPR 2020; the "fisher_new" variant of Unlearn-Sparse,
Jia et al. 2023; Deep Unlearn, arXiv 2410.01276). No gradient steps, only noise.

1. **Diagonal Fisher on retain** (eval mode, batches of ``batch_size`` in order): per batch,
   logits z and p = softmax(z); for every class y = 0..C−1, with L_y = mean over the batch of
   CE(z, y) (label y for all samples) and g = ∇_θ L_y, add mean_batch(p_y)·g² to F. Finally
   F /= number of batches. (With ``batch_size = 1`` this is the exact diagonal of the true
   Fisher (1/n)·Σ_i E_{y∼p(·|x_i)}[∇ℓ(x_i, y)²]; larger batches square batch-mean gradients.)
2. **Noise variance per tensor**: v = min(1/(F + 1e-8), 1e3); for classifier tensors clamp
   v at 1e2; v ← α·v; for tensors with ≥ 2 dims replace v by its mean over dim 1, broadcast
   back; for classifier tensors and 1-D tensors, v ← 10·v.
3. θ ← θ_O + √v ⊙ ε, ε ∼ N(0, I), drawn tensor by tensor in parameter order from the run's
   generator (on the CPU, then moved to the parameter's device).

Difference from Deep Unlearn: ``faithful=False`` (default) takes the classifier tensors to be
the parameters of the classifier head (found by ``find_classifier_head`` or named with
``head=``); ``faithful=True`` treats
every tensor whose first dimension equals C as a classifier tensor, as the released code does
(so any other tensor of size C along dim 0, e.g. a C-channel BatchNorm, is caught too).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader, model_device, num_classes
from unlearnkit.methods.toolkit.loops import trainable_params
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, bs_dist, u01_dist
from unlearnkit.models import find_classifier_head

FISHER_EPS = 1e-8
MAX_VAR = 1e3
MAX_VAR_CLASSIFIER = 1e2
CLASSIFIER_AND_BIAS_BOOST = 10.0


class FFConfig(MethodConfig):
    """Defaults: batch 64, α 0.2."""

    batch_size: int = Field(64, ge=1)
    alpha: float = Field(0.2, ge=0)
    faithful: bool = False


@torch.no_grad()
def _add_weighted_square(acc: list[torch.Tensor], grads: tuple, weight: torch.Tensor) -> None:
    for a, g in zip(acc, grads, strict=True):
        if g is not None:
            a.add_(weight * g * g)


def diag_fisher(
    model: nn.Module, ds: ArrayDataset, batch_size: int, n_classes: int
) -> list[torch.Tensor]:
    """The batched diagonal Fisher F of step 1, one tensor per trainable parameter.

    Eval mode during the pass; the previous mode is restored.
    """
    params = trainable_params(model)
    fisher = [torch.zeros_like(p) for p in params]
    device = model_device(model)
    was_training = model.training
    model.eval()
    n_batches = 0
    for x, _ in make_loader(ds, batch_size, shuffle=False):
        z = model(x.to(device))
        p = torch.softmax(z.detach(), dim=1)
        for y in range(n_classes):
            target = torch.full((z.shape[0],), y, dtype=torch.long, device=device)
            grads = torch.autograd.grad(
                F.cross_entropy(z, target),
                params,
                retain_graph=y < n_classes - 1,
                allow_unused=True,
            )
            _add_weighted_square(fisher, grads, p[:, y].mean())
        n_batches += 1
    model.train(was_training)
    return [f / max(n_batches, 1) for f in fisher]


def noise_variance(fisher: torch.Tensor, is_classifier: bool, alpha: float) -> torch.Tensor:
    """Step 2 for one tensor: the clamped, scaled, row-averaged inverse-Fisher variance."""
    v = (1.0 / (fisher + FISHER_EPS)).clamp(max=MAX_VAR)
    if is_classifier:
        v = v.clamp(max=MAX_VAR_CLASSIFIER)
    v = alpha * v
    if v.dim() >= 2:
        v = v.mean(dim=1, keepdim=True).expand_as(v).clone()
    if is_classifier or v.dim() == 1:
        v = CLASSIFIER_AND_BIAS_BOOST * v
    return v


def classifier_flags(
    model: nn.Module, n_classes: int, faithful: bool, head: str | None = None
) -> list[bool]:
    """Which trainable tensors count as classifier tensors (see the module docstring).

    Corrected: the parameters of the classifier head (named by ``head`` or found by
    :func:`~unlearnkit.models.find_classifier_head`).
    """
    params = trainable_params(model)
    if faithful:
        return [p.dim() >= 1 and p.shape[0] == n_classes for p in params]
    _, linear = find_classifier_head(model, head, n_classes)
    head_ids = {id(p) for p in linear.parameters()}
    return [id(p) in head_ids for p in params]


@METHODS.register("ff")
class FisherForgetting(MulticlassUnlearner):
    """Add Gaussian noise scaled by the inverse diagonal Fisher of the retain set."""

    name = "Fisher Forgetting"
    abbreviation = "FF"
    family = "literature"
    paper = "Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020"
    uses = ("retain",)
    Config = FFConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """batch_size: BS, alpha: U01."""
        return {"batch_size": bs_dist(), "alpha": u01_dist()}

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = FFConfig.model_validate(config.model_dump())
        c = num_classes(data)
        flags = classifier_flags(model, c, cfg.faithful, self.head)
        fisher = diag_fisher(model, data.retain, cfg.batch_size, c)
        with torch.no_grad():
            for p, f, cls in zip(trainable_params(model), fisher, flags, strict=True):
                eps = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
                p.add_(noise_variance(f, cls, cfg.alpha).sqrt() * eps)
        model.eval()
        return model
