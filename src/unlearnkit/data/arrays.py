"""Turn numpy arrays into an :class:`~unlearnkit.data.base.ArrayDataset` with the dtypes we promise."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from unlearnkit.data.base import ArrayDataset, Task
from unlearnkit.tasks import get_task


def as_ids(values: Any) -> torch.Tensor:
    """Sorted-or-not ids as an int64 tensor (a fresh copy)."""
    return torch.from_numpy(np.array(values, dtype=np.int64, copy=True).reshape(-1))


def build_dataset(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    ids: np.ndarray,
    task: Task,
    classes: tuple[str, ...] | list[str],
    meta: dict[str, Any] | None = None,
) -> ArrayDataset:
    """An ArrayDataset with ``x`` float32, ``ids`` int64 and ``y`` in the task's label dtype
    (int64 class indices, float32 {0,1} attributes). Arrays are copied, so callers may keep caching theirs."""
    y_dtype = torch.empty(0, dtype=get_task(task).label_dtype).numpy().dtype
    return ArrayDataset(
        name=name,
        x=torch.from_numpy(np.array(x, dtype=np.float32, copy=True)),
        y=torch.from_numpy(np.array(y, dtype=y_dtype, copy=True)),
        ids=as_ids(ids),
        task=task,
        classes=tuple(str(c) for c in classes),
        meta=dict(meta or {}),
    )
