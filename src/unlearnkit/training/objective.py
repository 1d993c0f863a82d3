"""The regularised empirical risk ``J(θ) = (1/n) Σ_i ℓ_i(θ) + (l2/2)·‖θ‖²`` and its gradient norm.

``J`` is the SSSE paper's objective (Peste, Alistarh & Lampert, arXiv 2107.03860, §3), whose
damping equals ``l2``; the L-BFGS recipe minimises it and both recipes can report ``‖∇J‖₂``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError
from unlearnkit.tasks import per_sample_loss
from unlearnkit.training.predict import chunks, param_device, param_dtype


def objective(
    model: nn.Module,
    data: ArrayDataset,
    l2: float = 0.0,
    chunk_size: int = 4096,
    backward: bool = True,
) -> float:
    """``J(θ) = (1/n) Σ_i ℓ_i(θ) + (l2/2)·‖θ‖²`` over all of ``data``, in the model's mode.

    Computed in chunks of ``chunk_size`` samples; with ``backward`` the gradient ``∇J`` is
    *accumulated* into ``p.grad`` (zero them first). Inputs are cast to the model's dtype.
    """
    n = len(data)
    if n == 0:
        raise DataError(f"{data.name}: cannot compute a loss on an empty dataset")
    device, dtype = param_device(model), param_dtype(model)
    total = 0.0
    for sl in chunks(n, chunk_size):
        xb = data.x[sl].to(device=device, dtype=dtype)
        yb = data.y[sl].to(device)
        yb = yb.to(dtype) if yb.is_floating_point() else yb
        with torch.set_grad_enabled(backward):
            chunk = per_sample_loss(data.task, model(xb), yb).sum() / n
            if backward:
                chunk.backward()
        total += float(chunk.detach())
    params = [p for p in model.parameters() if p.requires_grad]
    if l2 > 0:
        with torch.set_grad_enabled(backward):
            reg = 0.5 * l2 * sum((p * p).sum() for p in params)
            if backward:
                reg.backward()  # type: ignore[union-attr]
        total += float(reg.detach())  # type: ignore[union-attr]
    return total


def objective_grad_norm(
    model: nn.Module, data: ArrayDataset, l2: float = 0.0, chunk_size: int = 4096
) -> tuple[float, float]:
    """``(J(θ), ‖∇J(θ)‖₂)`` at the current weights (see :func:`objective`); grads are left clean.

    The model's ``.grad`` fields are restored afterwards, so this has no side effect.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        value = objective(model, data, l2, chunk_size, backward=True)
        sq = sum(float((p.grad.double() ** 2).sum()) for p in params if p.grad is not None)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    return value, math.sqrt(sq)
