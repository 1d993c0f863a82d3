"""Train many small models at once: K copies of one architecture as one batched computation.

Oracle ensembles (many retrains on D∖S), original pools and shadow pools (random halves of D)
need dozens of trainings of the same small model. :func:`train_many` stacks the K models'
parameters (``torch.func.stack_module_state``) and runs SGD on all of them with one ``vmap``
over ``functional_call`` per step. Each copy keeps everything that makes it its own model:

* its initial weights (one ``model_factory(seed_k)`` call per copy),
* its training subset ``I_k`` (ids of the shared dataset; a shadow model's half, a retrain's
  retained set),
* its data order: ``torch.randperm(|I_k|, generator=g_k)`` per epoch with ``g_k`` seeded by
  ``seed_k``, exactly as :class:`~unlearnkit.training.SGDRecipe` draws it.

The update is :class:`torch.optim.SGD`'s, written out per copy (Sutskever momentum, coupled
weight decay, optional Nesterov), with the recipe's per-epoch cosine schedule
``lr_e = lr·(1 + cos(π e / E))/2``:

    d = ∇L_B(θ) + wd·θ;   b ← d (first step) or μ·b + d;   θ ← θ − lr_e·(d + μ·b if Nesterov else b)

where L_B is the mean loss over the copy's mini-batch. Copies whose subsets differ in size
take different numbers of steps per epoch; a copy that has no batch left at a step is padded
with zero-weight samples and its parameters and momentum are left unchanged. So copy k equals
``train(model_factory(seed_k), data.subset(I_k), recipe, seed_k)`` up to floating-point
reduction order (``tests/test_training_batched.py`` checks it in fp64).

Not supported (clear error): BatchNorm in training mode (its running statistics are buffers
that ``vmap`` cannot update in place per copy), augmentations, ``drop_last``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, NumericalError, UnsupportedError
from unlearnkit.tasks import get_task
from unlearnkit.training.recipes import SGDRecipe


@dataclass
class BatchedFit:
    """K trained models and their per-epoch mean training losses, shape (epochs, K)."""

    models: list[nn.Module]
    losses: torch.Tensor


def _check(model: nn.Module, recipe: SGDRecipe) -> None:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise UnsupportedError(
            "train_many cannot train models with BatchNorm (per-copy running statistics); "
            "train them one by one with unlearnkit.training.train"
        )
    if recipe.augment or recipe.drop_last:
        raise UnsupportedError("train_many supports neither augmentations nor drop_last")


def _batch_plan(
    subsets: list[torch.Tensor], gens: list[torch.Generator], batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset positions (steps, K, B) and weights (steps, K, B) for one epoch.

    Copy k visits ``subsets[k][randperm(|I_k|, g_k)]`` in chunks of ``batch_size``; shorter
    copies are padded with position 0 at weight 0.
    """
    orders = [s[torch.randperm(len(s), generator=g)] for s, g in zip(subsets, gens, strict=True)]
    steps = max(math.ceil(len(o) / batch_size) for o in orders)
    pos = torch.zeros(steps, len(orders), batch_size, dtype=torch.int64)
    weight = torch.zeros(steps, len(orders), batch_size)
    for k, order in enumerate(orders):
        for j in range(math.ceil(len(order) / batch_size)):
            chunk = order[j * batch_size : (j + 1) * batch_size]
            pos[j, k, : len(chunk)] = chunk
            weight[j, k, : len(chunk)] = 1.0
    return pos, weight


def train_many(
    model_factory: Callable[[int], nn.Module],
    data: ArrayDataset,
    subsets: Sequence[Sequence[int] | torch.Tensor],
    seeds: Sequence[int],
    recipe: SGDRecipe,
) -> BatchedFit:
    """Train ``len(seeds)`` copies at once; copy k starts from ``model_factory(seeds[k])``,
    trains on the samples with ids ``subsets[k]`` of ``data`` with ``recipe``, seed ``seeds[k]``.

    Returns the K models (ordinary ``nn.Module``s, in eval mode) and the per-epoch losses.
    """
    if len(subsets) != len(seeds) or not seeds:
        raise ConfigError(f"need one subset per seed (got {len(subsets)} and {len(seeds)})")
    models = [model_factory(int(s)) for s in seeds]
    _check(models[0], recipe)
    dtype = next(models[0].parameters()).dtype
    positions = [data.positions(torch.as_tensor(s, dtype=torch.int64)) for s in subsets]
    if any(len(p) == 0 for p in positions):
        raise ConfigError("every copy needs at least one training sample")
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    params, buffers = stack_module_state(models)
    names = list(params)
    momentum = {n: torch.zeros_like(p) for n, p in params.items()}
    base = models[0]
    x_all = data.x.to(dtype)
    y_all = data.y.to(dtype) if data.y.is_floating_point() else data.y
    task = get_task(data.task)
    task.check_targets(data.y, data.num_outputs)  # once: the vmapped loss below skips checks
    per_sample = vmap(task.sample_loss)  # ℓ(z_i, y_i) for a batch, vmappable

    def batch_loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
        out = functional_call(base, (p, b), (x,))
        return (per_sample(out, y) * w).sum() / w.sum().clamp(min=1.0)

    step_grad = vmap(grad_and_value(batch_loss), in_dims=(0, 0, 0, 0, 0))
    k = len(seeds)
    losses = torch.zeros(recipe.epochs, k, dtype=torch.float64)
    first = torch.ones(k, dtype=torch.bool)
    mu, wd = recipe.momentum, recipe.weight_decay
    for epoch in range(recipe.epochs):
        lr = recipe.lr
        if recipe.scheduler == "cosine":
            lr = recipe.lr * (1 + math.cos(math.pi * epoch / recipe.epochs)) / 2
        pos, weight = _batch_plan(positions, gens, recipe.batch_size)
        total = torch.zeros(k, dtype=torch.float64)
        for j in range(pos.shape[0]):
            x = x_all[pos[j]]  # (K, B, ...)
            y = y_all[pos[j]]
            w = weight[j].to(dtype)
            active = w.sum(dim=1) > 0
            grads, mean = step_grad(params, buffers, x, y, w)  # one forward + backward
            total += (mean.detach() * w.sum(dim=1)).double()
            with torch.no_grad():
                for n in names:
                    p, g = params[n], grads[n]
                    shape = (k,) + (1,) * (p.dim() - 1)
                    d = g + wd * p if wd else g
                    if mu:
                        fresh = first.view(shape)
                        buf = torch.where(fresh, d, mu * momentum[n] + d)
                        momentum[n] = torch.where(active.view(shape), buf, momentum[n])
                        d = d + mu * momentum[n] if recipe.nesterov else momentum[n]
                    params[n] = torch.where(active.view(shape), p - lr * d, p)
            first = first & ~active
        sizes = torch.tensor([len(p) for p in positions], dtype=torch.float64)
        losses[epoch] = total / sizes
        if not torch.isfinite(losses[epoch]).all():
            bad = [
                int(s) for s, ok in zip(seeds, torch.isfinite(losses[epoch]), strict=True) if not ok
            ]
            raise NumericalError(f"training diverged in epoch {epoch + 1} for seeds {bad}")
    for i, model in enumerate(models):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(params[n][i])
        model.eval()
    return BatchedFit(models=models, losses=losses)
