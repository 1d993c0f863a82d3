"""Input checks shared by the evaluation metrics: arrays in, clear errors out.

Every metric converts its inputs with these helpers, so a NaN, an empty array or a shape
mismatch gives a :class:`~unlearnkit.errors.DataError` / :class:`~unlearnkit.errors.NumericalError`
that names the argument, instead of a NumPy warning deep inside a formula. Inputs are never
modified: the helpers return new float64 (or bool / int64) arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import DataError, NumericalError

ArrayLike = np.ndarray | torch.Tensor | Sequence[float] | Sequence[Sequence[float]]


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy view/copy of ``x`` (torch tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def as_float(
    x: Any,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    finite: bool = True,
    min_size: int = 1,
) -> np.ndarray:
    """``x`` as a new float64 array; check its rank, size and finiteness."""
    arr = np.array(to_numpy(x), dtype=np.float64, copy=True)
    _check_ndim(arr, name, ndim)
    if arr.size < min_size:
        raise DataError(f"{name} has {arr.size} values; at least {min_size} are needed")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise NumericalError(f"{name} contains {bad} NaN/Inf values; check the model outputs")
    return arr


def as_bool(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` as a new bool array; only 0/1 (or True/False) values are accepted."""
    arr = to_numpy(x)
    if arr.dtype != np.bool_:
        vals = np.unique(arr)
        if not np.all(np.isin(vals, (0, 1))):
            raise DataError(f"{name} must hold only 0/1 or booleans; found values {vals[:5]}")
    out = np.array(arr, dtype=bool, copy=True)
    _check_ndim(out, name, ndim)
    return out


def as_int(x: Any, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``x`` as a new int64 array (float input must hold whole numbers)."""
    arr = to_numpy(x)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{name} must hold integer class labels")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{name} must be an integer array, got dtype {arr.dtype}")
    out = np.array(arr, dtype=np.int64, copy=True)
    _check_ndim(out, name, ndim)
    return out


def same_shape(*pairs: tuple[str, np.ndarray]) -> None:
    """Raise a :class:`DataError` unless all named arrays have one shape."""
    shapes = {name: a.shape for name, a in pairs}
    if len(set(shapes.values())) > 1:
        desc = ", ".join(f"{n}{tuple(s)}" for n, s in shapes.items())
        raise DataError(f"shape mismatch: {desc}")


def _check_ndim(arr: np.ndarray, name: str, ndim: int | tuple[int, ...] | None) -> None:
    if ndim is None:
        return
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in allowed:
        raise DataError(
            f"{name} must have {' or '.join(map(str, allowed))} dimension(s); got shape {arr.shape}"
        )
