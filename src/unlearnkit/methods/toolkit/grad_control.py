"""Temporary training state that is always undone: frozen parameters, gradient multipliers,
saved buffers. The returned model carries neither flags nor hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def frozen_except(model: nn.Module, trainable: list[nn.Parameter]) -> Iterator[None]:
    """Set ``requires_grad`` to True exactly on ``trainable``; restore every flag on exit."""
    keep = {id(p) for p in trainable}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextlib.contextmanager
def grad_multipliers(scales: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
    """Multiply each parameter's loss gradient by a fixed tensor while the context is open.

    The hook acts during backpropagation, before the gradient reaches ``.grad``; weight decay
    and momentum, which the optimizer adds later, are therefore not scaled (MSG).
    """
    handles = []
    try:
        for p, m in scales.items():
            handles.append(p.register_hook(lambda g, m=m: g * m))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (e.g. BatchNorm running statistics) to its value on entry."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)
