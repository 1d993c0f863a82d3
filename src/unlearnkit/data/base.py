"""The dataset interface everything else leans on.

A :class:`ArrayDataset` holds inputs ``x``, labels ``y`` and stable int64 sample ``ids``.
Deletion requests name ids, never positions. Labels are int64 class indices for
``task="multiclass"`` and a float {0,1} matrix (n, n_attributes) for ``task="multilabel"``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import torch

from unlearnkit.errors import DataError, UnknownIdsError

Task = Literal["multiclass", "multilabel"]


class DatasetLike(Protocol):
    """The read interface shared by :class:`ArrayDataset` (in memory) and
    :class:`~unlearnkit.data.user.StreamingDataset` (items read lazily from a user's Dataset):
    labels and ids in memory, inputs only batch by batch."""

    name: str
    task: Task
    classes: tuple[str, ...]
    ids: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def num_outputs(self) -> int: ...

    def positions(self, ids: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor: ...

    def subset(
        self, ids: torch.Tensor | np.ndarray | list[int], name: str | None = None
    ) -> DatasetLike: ...

    def batches(
        self, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]: ...

    def targets_for_class(self) -> torch.Tensor: ...


def positions_of(
    all_ids: torch.Tensor, ids: torch.Tensor | np.ndarray | list[int], name: str
) -> torch.Tensor:
    """Positions in ``all_ids`` (unique int64) of ``ids``, in the order given; ids not in
    ``all_ids`` raise :class:`~unlearnkit.errors.UnknownIdsError` naming dataset ``name``."""
    # a contiguous copy: never a view sharing memory with the caller's (possibly strided) array
    want = torch.tensor(np.ascontiguousarray(ids, dtype=np.int64))
    order = torch.argsort(all_ids)
    sorted_ids = all_ids[order]
    idx = torch.searchsorted(sorted_ids, want)
    idx = idx.clamp(max=max(len(sorted_ids) - 1, 0))
    found = (
        (sorted_ids[idx] == want) if len(sorted_ids) else torch.zeros_like(want, dtype=torch.bool)
    )
    if not bool(found.all()):
        missing = want[~found][:10].tolist()
        raise UnknownIdsError(
            f"{int((~found).sum())} id(s) not in dataset {name!r} (first: {missing})"
        )
    return order[idx]


@dataclass(frozen=True)
class ArrayDataset:
    """In-memory dataset: ``x`` (n, *shape) float32, ``y`` labels, ``ids`` (n,) int64 unique.

    ``classes`` names the classes (multiclass) or attributes (multilabel).
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    ids: torch.Tensor
    task: Task
    classes: tuple[str, ...]
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape[0] != n or self.ids.shape[0] != n:
            raise DataError(
                f"{self.name}: x, y and ids disagree in length ({n}, {self.y.shape[0]}, {self.ids.shape[0]})"
            )
        if self.ids.dtype != torch.int64:
            raise DataError(f"{self.name}: ids must be int64, got {self.ids.dtype}")
        if torch.unique(self.ids).numel() != n:
            raise DataError(f"{self.name}: sample ids are not unique")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_i, y_i)``: an ArrayDataset is a map-style torch Dataset (wrap it in a
        ``DataLoader`` in a training function)."""
        return self.x[i], self.y[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_outputs(self) -> int:
        """Number of classes (multiclass) or attributes (multilabel)."""
        return len(self.classes)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(x, y, ids)`` of consecutive samples, ``batch_size`` at a time, in dataset order.

        The last batch holds the remaining ``len(self) % batch_size`` samples when that is not
        zero; an empty dataset yields nothing. The tensors are views, not copies.
        """
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.x[start:stop], self.y[start:stop], self.ids[start:stop]

    def positions(self, ids: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Positions of ``ids`` in this dataset, in the order given; unknown ids raise."""
        return positions_of(self.ids, ids, self.name)

    def subset(
        self, ids: torch.Tensor | np.ndarray | list[int], name: str | None = None
    ) -> ArrayDataset:
        """The samples with these ids (in the order given)."""
        pos = self.positions(ids)
        return ArrayDataset(
            name=name or self.name,
            x=self.x[pos],
            y=self.y[pos],
            ids=self.ids[pos],
            task=self.task,
            classes=self.classes,
            meta=self.meta,
        )

    def targets_for_class(self) -> torch.Tensor:
        """Class index per sample (multiclass only)."""
        if self.task != "multiclass":
            raise DataError(f"{self.name} is multi-label; it has no single class per sample")
        return self.y


def concat(datasets: list[ArrayDataset], name: str | None = None) -> ArrayDataset:
    """The samples of several datasets of the same task and classes, in order (ids stay unique)."""
    if not datasets:
        raise DataError("concat needs at least one dataset")
    first = datasets[0]
    for d in datasets[1:]:
        if d.task != first.task or d.classes != first.classes:
            raise DataError(
                f"cannot concatenate {d.name!r} with {first.name!r}: task or classes differ"
            )
    return ArrayDataset(
        name=name or first.name,
        x=torch.cat([d.x for d in datasets]),
        y=torch.cat([d.y for d in datasets]),
        ids=torch.cat([d.ids for d in datasets]),
        task=first.task,
        classes=first.classes,
        meta=first.meta,
    )
