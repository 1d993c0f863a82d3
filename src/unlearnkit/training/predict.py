"""Inference helpers: device resolution, batched logits and accuracy (eval mode, no grads)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError, DeviceError
from unlearnkit.tasks import predict


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """A device this machine has: ``cpu``, ``cuda``, ``cuda:N``, ``mps``; ``None`` or ``"auto"``
    mean CUDA when available, else CPU. A device the machine lacks raises
    :class:`~unlearnkit.errors.DeviceError` here, at the boundary, not deep inside torch."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise DeviceError(
            f"unknown device {device!r} ({e}); use cpu, cuda, cuda:N or auto"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type not in ("cpu", "mps"):
        raise DeviceError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return dev


def param_dtype(model: nn.Module) -> torch.dtype:
    """Dtype of the model's first parameter (the default dtype for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def param_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free model)."""
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def chunks(n: int, size: int) -> Iterator[slice]:
    """Consecutive slices ``[0, size), [size, 2·size), ...`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: ArrayDataset | torch.Tensor,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits of every sample, in eval mode, batched, without gradients; returned on the CPU.

    Inputs are cast to the model's dtype and moved to ``device`` (default: the model's). The
    model's train/eval mode is restored afterwards.
    """
    x = data.x if isinstance(data, ArrayDataset) else data
    dev = torch.device(device) if device is not None else param_device(model)
    dtype = param_dtype(model)
    was_training = model.training
    model.eval()
    try:
        outs = [model(x[sl].to(device=dev, dtype=dtype)).cpu() for sl in chunks(len(x), batch_size)]
    finally:
        model.train(was_training)
    if not outs:
        raise DataError("cannot predict on an empty dataset")
    return torch.cat(outs)


def evaluate_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1024) -> float:
    """Top-1 accuracy (multiclass) or mean per-attribute accuracy (multilabel), eval mode.

    Multilabel: ``(1/(n·A)) Σ_i Σ_a 1[1(z_ia > 0) = y_ia]``.
    """
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot evaluate accuracy on an empty dataset")
    pred = predict(data.task, predict_logits(model, data, batch_size))
    return float((pred == data.y.to(pred.dtype)).double().mean())
