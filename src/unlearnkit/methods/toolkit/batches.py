"""Seeded batches over :class:`ArrayDataset` for the method zoo.

Loaders stay on the CPU and batches are moved per step (:func:`to_device`), so methods work
unchanged on CUDA. Every shuffle draws from the ``torch.Generator`` the method was given, never
from the global RNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler, TensorDataset

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import UnlearnData

Batch = tuple[torch.Tensor, torch.Tensor]


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def num_classes(data: UnlearnData) -> int:
    """Number of classes C (from the retain set's class names)."""
    return data.retain.num_outputs


class PermutationSampler(Sampler[int]):
    """Each pass yields ``torch.randperm(n, generator=generator)``: exactly one draw per pass.

    (``RandomSampler`` also draws one extra permutation when a pass ends.) Without a generator,
    one is seeded from the global torch RNG.
    """

    def __init__(self, n: int, generator: torch.Generator | None = None) -> None:
        self.n = n
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.n, generator=self.generator).tolist()

    def __len__(self) -> int:
        return self.n


def make_loader(
    ds: ArrayDataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding ``(x, y)`` CPU batches of ``ds``.

    Batches are gathered with one tensor index per batch (a ``BatchSampler`` as sampler), not
    one sample at a time. With ``shuffle=True`` every pass reads the samples in the order
    ``torch.randperm(len(ds), generator=generator)`` (one draw per pass, see
    :class:`PermutationSampler`), so a seeded generator gives reproducible epochs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tds = TensorDataset(ds.x, ds.y)
    base = PermutationSampler(len(tds), generator) if shuffle else SequentialSampler(tds)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(tds, sampler=sampler, batch_size=None)


def union_batches(
    first: ArrayDataset, second: ArrayDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled pass over ``first ∪ second``: batches ``(x, y, from_second)``.

    The order is ``randperm(n_1 + n_2)`` drawn from ``generator``; ``from_second`` is a bool
    mask (e.g. "is a forget sample"). Batches are gathered without materialising the
    concatenation.
    """
    n1, n2 = len(first), len(second)
    perm = torch.randperm(n1 + n2, generator=generator)
    for start in range(0, n1 + n2, batch_size):
        idx = perm[start : start + batch_size]
        sec = idx >= n1
        x = first.x.new_empty((idx.numel(), *first.x.shape[1:]))
        y = first.y.new_empty((idx.numel(), *first.y.shape[1:]))
        x[~sec], y[~sec] = first.x[idx[~sec]], first.y[idx[~sec]]
        x[sec], y[sec] = second.x[idx[sec] - n1], second.y[idx[sec] - n1]
        yield x, y, sec


def to_device(batch: Iterable[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Move every tensor of a batch to ``device``."""
    return tuple(t.to(device, non_blocking=True) for t in batch)


def cycle(loader: Iterable[Batch], cache: bool = False) -> Iterator[Batch]:
    """Endless iteration over ``loader``.

    ``cache=False`` re-iterates the loader each pass (a shuffled loader gives a new order);
    ``cache=True`` replays the batches of the first pass, as ``itertools.cycle`` does.
    """
    if cache:
        seen: list[Batch] = []
        for b in loader:
            seen.append(b)
            yield b
        if not seen:
            return
        while True:
            yield from seen
    while True:
        empty = True
        for b in loader:
            empty = False
            yield b
        if empty:
            return
