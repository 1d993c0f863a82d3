"""Bring your own data: :func:`as_dataset` turns a user's data into the dataset interface.

Accepted (:func:`as_dataset`): an :class:`~unlearnkit.data.base.ArrayDataset`; tensors or
arrays ``(x, y)`` or ``(x, y, ids)``; a map-style ``torch.utils.data.Dataset`` whose items are
``(x, y)``, ``(x, y, id)`` or dicts (inputs under ``x``/``input``/``inputs``/``pixel_values``/
``image``, labels under ``y``/``label``/``labels``/``target``, ids under ``id``/``ids``/
``idx``/``index``/``sample_id``); a ``DataLoader`` (its ``dataset`` is used; its batching,
shuffling and sampler are ignored).

Sample ids, in this order of precedence: the ``ids`` argument; ids carried by the items; an
``ids`` attribute of the dataset; else the positions ``0 .. n-1`` as int64 (then a deletion
request names positions of the dataset as given, so keep its order stable). Ids given in two
places must agree.

Checked at the boundary (:class:`~unlearnkit.errors.DataError` saying what to fix): equal
lengths; ids integer, unique, converted to int64; inputs floating point and of one shape;
``multiclass`` labels integers in ``[0, K)`` with ``K = len(classes)`` or ``classes`` itself when
it is a count (default: max label + 1);
``multilabel`` labels an ``(n, A)`` matrix of 0/1 (stored as float32). Without ``task``, integer
labels of one dimension mean ``multiclass`` and a 0/1 matrix ``multilabel``.

Memory: when ``n · (bytes of one input)`` fits ``memory_budget_bytes`` (default
:data:`DEFAULT_MEMORY_BUDGET`), the inputs are stacked into an ArrayDataset. Otherwise a
:class:`StreamingDataset` is returned: labels and ids in memory (read in one pass over the
items), inputs read from the user's Dataset batch by batch and never concatenated.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from unlearnkit.data.base import ArrayDataset, Task, positions_of
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.tasks import get_task, infer_task

#: Inputs up to this many bytes are materialised in memory.
DEFAULT_MEMORY_BUDGET = 2**30

_X_KEYS = ("x", "input", "inputs", "pixel_values", "image")
_Y_KEYS = ("y", "label", "labels", "target")
_ID_KEYS = ("id", "ids", "idx", "index", "sample_id")


def _pick(item: Mapping[str, Any], keys: tuple[str, ...], what: str, required: bool) -> Any:
    for k in keys:
        if k in item:
            return item[k]
    if required:
        raise DataError(f"dict items need {what} under one of {list(keys)}; got {sorted(item)}")
    return None


def parse_item(item: Any) -> tuple[Any, Any, Any]:
    """``(x, y, id or None)`` of one dataset item (see the module docstring)."""
    if isinstance(item, Mapping):
        return (
            _pick(item, _X_KEYS, "inputs", True),
            _pick(item, _Y_KEYS, "labels", True),
            _pick(item, _ID_KEYS, "ids", False),
        )
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) in (2, 3):
        return item[0], item[1], item[2] if len(item) == 3 else None
    raise DataError(f"dataset items must be (x, y), (x, y, id) or dicts, got {type(item).__name__}")


def _input(x: Any, position: int, shape: tuple[int, ...] | None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if not t.is_floating_point():
        raise DataError(
            f"inputs must be floating point, item {position} has {t.dtype}; convert them "
            "(e.g. x.float() / 255) in the dataset"
        )
    if shape is not None and tuple(t.shape) != shape:
        raise DataError(f"inputs differ in shape: item {position} is {tuple(t.shape)}, not {shape}")
    return t


def _ids(values: Any, n: int, where: str) -> torch.Tensor:
    arr = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{where}: {arr.shape[0] if arr.ndim else 0} ids for {n} samples")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{where}: sample ids must be integers, got {arr.dtype}")
    ids = torch.from_numpy(arr.astype(np.int64, copy=True))
    if torch.unique(ids).numel() != n:
        raise DataError(f"{where}: sample ids are not unique")
    return ids


def _labels(
    y: torch.Tensor, task: Task | None, classes: Sequence[str] | int | None
) -> tuple[torch.Tensor, Task, tuple[str, ...]]:
    """Validated labels, the task and the class (attribute) names: the task object checks and
    converts them (:meth:`unlearnkit.tasks.Task.coerce_targets`)."""
    if isinstance(classes, int) and not isinstance(classes, bool):
        classes = tuple(str(i) for i in range(classes))  # a count of classes
    names = tuple(str(c) for c in classes) if classes is not None else None
    try:
        spec = infer_task(y) if task is None else get_task(task)
    except ConfigError as err:
        raise DataError(str(err)) from None
    labels, names = spec.coerce_targets(y, names)
    return labels, spec.name, names  # type: ignore[return-value]


class StreamingDataset:
    """A user's map-style Dataset read lazily: ``ids`` and ``y`` in memory, inputs batch by
    batch (same read interface as ArrayDataset; :func:`as_dataset` builds it).

    ``source_positions[i]`` is the index in the user's Dataset of this view's sample ``i``.
    """

    def __init__(
        self,
        name: str,
        source: Dataset,
        source_positions: np.ndarray,
        y: torch.Tensor,
        ids: torch.Tensor,
        task: Task,
        classes: tuple[str, ...],
        input_shape: tuple[int, ...],
    ) -> None:
        if not len(source_positions) == len(y) == len(ids):
            raise DataError(f"{name}: positions, labels and ids disagree in length")
        self.name = name
        self.source = source
        self.source_positions = np.asarray(source_positions, dtype=np.int64)
        self.y = y
        self.ids = ids
        self.task: Task = task
        self.classes = classes
        self._input_shape = input_shape
        self.meta: dict[str, Any] = {}

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __repr__(self) -> str:
        return f"StreamingDataset({self.name!r}, n={len(self)}, task={self.task!r})"

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_i, y_i)``, read from the user's dataset: a map-style torch Dataset too."""
        return self.read_inputs(i, i + 1)[0], self.y[i]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._input_shape

    @property
    def num_outputs(self) -> int:
        return len(self.classes)

    def positions(self, ids: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """Positions of ``ids`` in this dataset, in the order given; unknown ids raise."""
        return positions_of(self.ids, ids, self.name)

    def subset(
        self, ids: torch.Tensor | np.ndarray | list[int], name: str | None = None
    ) -> StreamingDataset:
        """The samples with these ids (in the order given), still streamed."""
        pos = self.positions(ids)
        return StreamingDataset(
            name or self.name,
            self.source,
            self.source_positions[pos.numpy()],
            self.y[pos],
            self.ids[pos],
            self.task,
            self.classes,
            self._input_shape,
        )

    def read_inputs(self, start: int, stop: int) -> torch.Tensor:
        """Inputs of samples ``start .. stop-1``, stacked (only these are read)."""
        xs = []
        for i in range(start, min(stop, len(self))):
            pos = int(self.source_positions[i])
            xs.append(_input(parse_item(self.source[pos])[0], pos, self._input_shape))
        return torch.stack(xs) if xs else torch.zeros((0, *self._input_shape))

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``(x, y, ids)`` of consecutive samples, as :meth:`ArrayDataset.batches`."""
        if batch_size < 1:
            raise DataError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, len(self), batch_size):
            stop = start + batch_size
            yield self.read_inputs(start, stop), self.y[start:stop], self.ids[start:stop]

    def to_array(self) -> ArrayDataset:
        """This view in memory (for small subsets, e.g. a forget set)."""
        return ArrayDataset(
            self.name, self.read_inputs(0, len(self)), self.y, self.ids, self.task, self.classes
        )

    def targets_for_class(self) -> torch.Tensor:
        """Class index per sample (multiclass only)."""
        if self.task != "multiclass":
            raise DataError(f"{self.name} is multi-label; it has no single class per sample")
        return self.y


def _from_tensors(x: Any, y: Any, item_ids: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y)
    if xt.ndim == 0 or yt.ndim == 0 or xt.shape[0] != yt.shape[0]:
        nx, ny = (xt.shape[0] if xt.ndim else 0), (yt.shape[0] if yt.ndim else 0)
        raise DataError(f"x and y disagree in length ({nx} vs {ny})")
    if not xt.is_floating_point():
        raise DataError(f"inputs must be floating point, got {xt.dtype}; convert them first")
    return xt, yt, item_ids


def _merge_ids(given: Any, carried: Any, attr: Any, n: int) -> torch.Tensor:
    """The ids by precedence (module docstring); ids from two sources must agree."""
    sources = [
        (where, _ids(v, n, where))
        for where, v in (("ids", given), ("item ids", carried), ("dataset.ids", attr))
        if v is not None
    ]
    if not sources:
        return torch.arange(n, dtype=torch.int64)
    first_where, first = sources[0]
    for where, other in sources[1:]:
        if not torch.equal(first, other):
            raise DataError(f"{first_where} and {where} name different sample ids")
    return first


def as_dataset(
    data: Any,
    *,
    ids: Any = None,
    task: Task | None = None,
    classes: Sequence[str] | int | None = None,
    name: str = "user",
    memory_budget_bytes: int | None = None,
) -> ArrayDataset | StreamingDataset:
    """The user's data as an ArrayDataset (fits the budget) or a StreamingDataset.

    See the module docstring for what is accepted, where ids come from and what is checked.
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
    if isinstance(data, ArrayDataset):
        if task is not None and task != data.task:
            raise DataError(f"{data.name} is {data.task}, not {task}")
        if isinstance(classes, int) and not isinstance(classes, bool):
            classes = tuple(str(i) for i in range(classes))
        if classes is not None and tuple(map(str, classes)) != data.classes:
            raise DataError(f"{data.name} has classes {data.classes}, not {tuple(classes)}")
        if ids is None:
            return data
        return ArrayDataset(
            data.name, data.x, data.y, _ids(ids, len(data), "ids"), data.task, data.classes
        )
    if isinstance(data, DataLoader):
        data = data.dataset
    if isinstance(data, IterableDataset):
        raise DataError(
            "an IterableDataset has no random access; give a map-style Dataset (__getitem__ "
            "and __len__) or tensors"
        )
    if isinstance(data, TensorDataset):
        data = tuple(data.tensors)
    if isinstance(data, tuple | list) and len(data) in (2, 3) and not isinstance(data, Dataset):
        x, y, carried = _from_tensors(data[0], data[1], data[2] if len(data) == 3 else None)
        return _finish(name, x, y, _merge_ids(ids, carried, None, len(x)), task, classes)
    if not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise DataError(
            f"cannot use {type(data).__name__} as data: give an ArrayDataset, a map-style "
            "torch Dataset, a DataLoader, or tensors (x, y)"
        )
    return _from_dataset(data, ids, task, classes, name, budget)


def _finish(
    name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    ids: torch.Tensor,
    task: Task | None,
    classes: Sequence[str] | None,
) -> ArrayDataset:
    if len(x) == 0:
        raise DataError(f"{name}: the data is empty")
    labels, task, names = _labels(y, task, classes)
    return ArrayDataset(name, x, labels, ids, task, names)


def _from_dataset(
    data: Dataset,
    ids: Any,
    task: Task | None,
    classes: Sequence[str] | None,
    name: str,
    budget: int,
) -> ArrayDataset | StreamingDataset:
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise DataError(f"{name}: the data is empty")
    x0 = _input(parse_item(data[0])[0], 0, None)
    shape = tuple(x0.shape)
    fits = n * x0.numel() * x0.element_size() <= budget
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    carried: list[Any] = []
    for i in range(n):
        x, y, item_id = parse_item(data[i])
        if fits:
            xs.append(_input(x, i, shape))
        ys.append(torch.as_tensor(y))
        carried.append(item_id)
    if any(c is None for c in carried) and not all(c is None for c in carried):
        raise DataError("some items carry an id and others do not")
    item_ids = None if carried[0] is None else torch.stack([torch.as_tensor(c) for c in carried])
    all_ids = _merge_ids(ids, item_ids, getattr(data, "ids", None), n)
    try:
        y_all = torch.stack(ys)
    except RuntimeError as err:
        raise DataError(f"labels differ in shape across items: {err}") from None
    if fits:
        return _finish(name, torch.stack(xs), y_all, all_ids, task, classes)
    labels, task, names = _labels(y_all, task, classes)
    return StreamingDataset(name, data, np.arange(n), labels, all_ids, task, names, shape)
