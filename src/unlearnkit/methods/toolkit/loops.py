"""The generic epoch loop and the model copies it needs (teachers, snapshots)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import nn

from unlearnkit.methods.toolkit.batches import Batch, model_device, to_device
from unlearnkit.methods.toolkit.losses import LossFn


def run_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass: per batch, zero grads, ``loss_fn(model, x, y).backward()``, optional hook
    (e.g. gradient masking), ``optimizer.step()``, optional hook (e.g. projecting the update).
    Batches go to the model's device.

    Returns the mean batch loss (NaN for an empty loader). The model's train/eval mode is
    the caller's choice.
    """
    device = model_device(model)
    total, count = 0.0, 0
    for batch in loader:
        x, y = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, y)
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach())
        count += 1
    return total / count if count else float("nan")


@torch.no_grad()
def error_rate(model: nn.Module, loader: Iterable[Batch]) -> float:
    """Top-1 error of ``model`` in eval mode over ``loader``; restores the previous mode."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    wrong, n = 0, 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=1)
        wrong += int((pred != y.to(device)).sum())
        n += int(y.shape[0])
    model.train(was_training)
    return wrong / n if n else float("nan")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with ``requires_grad=False`` everywhere (a teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`snapshot` back into ``model`` (on the model's device)."""
    model.load_state_dict(state)


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]
