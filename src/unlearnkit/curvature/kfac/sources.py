"""Where a stream of samples comes from: ``(x, y, ids)`` batches of a dataset, an in-memory
dataset or a ``DataLoader``, and the progress bar shown while reading them.

Sources (:func:`iter_batches`): a dataset with ``batches(batch_size)`` yielding ``(x, y, ids)``
(:class:`~unlearnkit.ssse.rows.SampleData`), a dataset with in-memory ``x``/``y``/``ids``
(sliced), or any iterable of ``(x, y[, ids])`` batches such as a ``DataLoader`` (its own batch
size; without ids, the samples' positions 0, 1, … in arrival order are their ids).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from unlearnkit.errors import DataError

Batch = tuple[Tensor, Tensor, Tensor]


def _normalise(batch: Any, start: int) -> Batch:
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        raise DataError("batches must be (x, y) or (x, y, ids) tuples")
    x, y = batch[0], batch[1]
    b = int(x.shape[0])
    if int(y.shape[0]) != b:
        raise DataError(f"a batch has {b} inputs and {int(y.shape[0])} labels")
    ids = torch.arange(start, start + b) if len(batch) == 2 else batch[2]
    return x, y, torch.as_tensor(ids, dtype=torch.int64).reshape(-1)


def iter_batches(data: Any, batch_size: int) -> Iterator[Batch]:
    """``(x, y, ids)`` batches of ``data`` (module docstring); ``batch_size`` is used where the
    source lets us choose it."""
    if hasattr(data, "batches"):
        source: Iterable[Any] = data.batches(batch_size)
    elif hasattr(data, "x") and hasattr(data, "y"):
        x, y, ids = data.x, data.y, getattr(data, "ids", None)
        n = int(x.shape[0])
        ids = torch.arange(n) if ids is None else ids
        source = (
            (x[s : s + batch_size], y[s : s + batch_size], ids[s : s + batch_size])
            for s in range(0, n, batch_size)
        )
    else:
        source = data
    start = 0
    for batch in source:
        out = _normalise(batch, start)
        start += int(out[0].shape[0])
        yield out


def source_length(data: Any) -> int | None:
    """Number of samples of ``data`` when it can be told without reading it."""
    if hasattr(data, "batches") or hasattr(data, "x"):
        return len(data)
    try:
        # a DataLoader yields what its sampler picks (a subset, a DistributedSampler's shard),
        # less the last partial batch with drop_last
        if getattr(data, "drop_last", False) and getattr(data, "batch_size", None):
            return len(data) * int(data.batch_size)
        sampler = getattr(data, "sampler", None)
        if sampler is not None:
            return len(sampler)
        inner = getattr(data, "dataset", None)
        return len(inner) if inner is not None else None
    except TypeError:  # an iterable-style dataset or sampler without a length
        return None


def first_input(data: Any) -> Tensor:
    """One sample's input ``(1, ...)`` (reads one batch of one sample where possible)."""
    x = getattr(data, "x", None)
    if x is not None:
        return x[:1]
    xb = next(iter_batches(data, 1))[0]
    return xb[:1]


@contextmanager
def read_progress(total: int | None, what: str, enabled: bool | None) -> Iterator[Any]:
    show = sys.stderr.isatty() if enabled is None else enabled
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(
        *columns,
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not show,
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda k: bar.advance(task, k)
