"""What the facade accepts: devices, the user's data, and the split every verb works on.

* :func:`resolve_device`: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"auto"``; a device this
  machine lacks raises :class:`~unlearnkit.errors.DeviceError` at the boundary.
* :func:`as_dataset`: a ``torch.utils.data.Dataset``, a ``DataLoader`` or ``(x, y)`` tensors
  with sample ids (given, taken from a third item of each sample, or ``0..n-1``) become the
  in-memory :class:`~unlearnkit.data.base.ArrayDataset` today's engine needs. Wrong dtypes,
  labels out of range and repeated ids are refused with a :class:`DataError`.
* :class:`Split`: training data (retain ∪ forget), the forget ids, val / test; built from a
  registered dataset by :func:`plan` (the data plan of :mod:`unlearnkit.workflow`) or from the
  user's own data by :func:`split_of`.
* :func:`preserved_rng`: run a block and leave python / numpy / torch global RNGs as found.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import make_forget_spec, select_forget
from unlearnkit.errors import DataError, DeviceError
from unlearnkit.workflow import DataPlan, Materialised, materialise

TASKS = ("multiclass", "multilabel")


def resolve_device(device: str | torch.device | None = "cpu") -> torch.device:
    """A :class:`torch.device` this machine has; ``None``/``"auto"``: CUDA when present."""
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
    elif dev.type != "cpu" and dev.type != "mps":
        raise DeviceError(f"unsupported device {device!r}; use cpu, cuda, cuda:N or auto")
    return dev


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the global python, numpy and torch (CPU and CUDA) RNG states on exit.

    Methods and recipes seed the global generators (Deep Unlearn's ``setup_seed``); the
    facade runs them inside this block so a caller's later draws still follow its own seed.
    """
    py, npy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


# ----------------------------------------------------------------------------- user data


def _items(data: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stack ``(x, y[, id])`` samples of a Dataset / DataLoader / tensor pair."""
    if (
        isinstance(data, tuple | list)
        and len(data) in (2, 3)
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        return data[0], data[1], data[2] if len(data) == 3 else None
    if isinstance(data, TensorDataset):
        t = data.tensors
        if len(t) not in (2, 3):
            raise DataError(f"a TensorDataset needs (x, y) or (x, y, ids) tensors, got {len(t)}")
        return t[0], t[1], t[2] if len(t) == 3 else None
    if isinstance(data, DataLoader):
        batches = list(data)  # batches of a DataLoader, in its order
        if not batches:
            raise DataError("the DataLoader yields no batches")
        cols = list(
            zip(*[b if isinstance(b, tuple | list) else (b,) for b in batches], strict=True)
        )
        return _stack_columns([torch.cat([torch.as_tensor(c) for c in col]) for col in cols])
    if isinstance(data, Dataset):
        try:
            n = len(data)  # type: ignore[arg-type]
        except TypeError:
            raise DataError("a Dataset without __len__: pass a DataLoader instead") from None
        rows = [data[i] for i in range(n)]
        if not rows:
            raise DataError("the dataset is empty")
        cols = list(zip(*rows, strict=True))
        return _stack_columns([torch.stack([torch.as_tensor(v) for v in col]) for col in cols])
    raise DataError(
        f"cannot use {type(data).__name__} as data: pass a torch Dataset, a DataLoader, "
        "an (x, y) tensor pair or an ArrayDataset"
    )


def _stack_columns(
    cols: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    if len(cols) not in (2, 3):
        raise DataError(f"each sample must be (x, y) or (x, y, id), got {len(cols)} items")
    return cols[0], cols[1], cols[2] if len(cols) == 3 else None


def as_dataset(
    data: Any,
    ids: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    *,
    task: str = "multiclass",
    classes: Sequence[str] | int | None = None,
    name: str = "user",
) -> ArrayDataset:
    """The user's data as an :class:`ArrayDataset` (validated; an ArrayDataset is returned as is).

    ``ids``: stable int64 sample ids (deletion requests name them); default: the third item
    of each sample if there is one, else ``0..n-1``. ``classes``: names or a count; default
    ``max(y) + 1`` classes (multiclass) or one per label column (multilabel).
    """
    if isinstance(data, ArrayDataset):
        return data
    if task not in TASKS:
        raise DataError(f"task must be one of {TASKS}, got {task!r}")
    x, y, own_ids = _items(data)
    if ids is None:
        ids = own_ids if own_ids is not None else torch.arange(len(x))
    ids_t = torch.as_tensor(np.asarray(ids)).reshape(-1)
    if ids_t.dtype.is_floating_point or ids_t.dtype == torch.bool:
        raise DataError(f"{name}: sample ids must be integers, got {ids_t.dtype}")
    if not x.dtype.is_floating_point:
        raise DataError(f"{name}: inputs must be floating point, got {x.dtype}")
    if task == "multiclass":
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.dim() != 1:
            raise DataError(f"{name}: multiclass labels must be a 1-D integer tensor")
        y = y.long()
        n_classes = len(classes) if isinstance(classes, Sequence) else classes
        n_classes = int(n_classes if n_classes is not None else int(y.max()) + 1 if len(y) else 0)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
            raise DataError(
                f"{name}: labels must lie in [0, {n_classes}); got [{int(y.min())}, {int(y.max())}]"
            )
    else:
        if y.dim() != 2 or not bool(((y == 0) | (y == 1)).all()):
            raise DataError(f"{name}: multilabel labels must be an (n, attributes) 0/1 matrix")
        y = y.float()
        n_classes = y.shape[1] if classes is None or isinstance(classes, Sequence) else classes
    names = (
        tuple(str(c) for c in classes)
        if isinstance(classes, Sequence) and not isinstance(classes, str)
        else tuple(str(i) for i in range(int(n_classes)))
    )
    return ArrayDataset(name, x.float(), y, ids_t.long(), task, names)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class Split:
    """Training data (retain ∪ forget) with the forget ids, and optional val / test sets.

    ``plan`` is the data plan when the split was derived from a registered dataset (it is
    recorded in every manifest written from this split), ``None`` for the user's own data.
    """

    train: ArrayDataset
    val: ArrayDataset | None = None
    test: ArrayDataset | None = None
    forget_ids: torch.Tensor | None = None
    plan: DataPlan | None = None
    forget_spec: str | None = None
    forget_seed: int = 0

    @property
    def forget(self) -> ArrayDataset:
        if self.forget_ids is None:
            raise DataError("this split has no forget set; give forget= (a spec or ids)")
        return self.train.subset(self.forget_ids, name=f"{self.train.name}/forget")

    @property
    def retain(self) -> ArrayDataset:
        if self.forget_ids is None:
            return self.train
        keep = ~torch.isin(self.train.ids, self.forget_ids)
        return self.train.subset(self.train.ids[keep], name=f"{self.train.name}/retain")

    @property
    def holdout(self) -> ArrayDataset | None:
        """Data no model of this split trained on: val, else test."""
        return self.val if self.val is not None and len(self.val) else self.test

    def with_forget(self, forget: str | Sequence[int] | torch.Tensor, seed: int = 0) -> Split:
        """The same data with another forget set: a spec (``class:3``) or sample ids."""
        if isinstance(forget, str):
            spec = make_forget_spec(forget)
            fs = select_forget(self.train, spec, seed=seed)
            return replace(
                self, forget_ids=fs.forget_ids.clone(), forget_spec=spec.to_text(), forget_seed=seed
            )
        ids = torch.as_tensor(np.asarray(forget, dtype=np.int64)).reshape(-1)
        self.train.positions(ids)  # unknown ids raise UnknownIdsError
        text = "ids:" + ",".join(str(int(i)) for i in ids) if ids.numel() else None
        return replace(self, forget_ids=ids, forget_spec=text, forget_seed=seed)

    def parts(self) -> dict[str, ArrayDataset]:
        """``retain``, ``forget``, ``val``, ``test`` (those present): the evaluation splits."""
        out = {"retain": self.retain, "forget": self.forget}
        for k in ("val", "test"):
            d = getattr(self, k)
            if d is not None and len(d):
                out[k] = d
        return out


def plan(
    dataset: str,
    *,
    params: dict[str, Any] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    forget: str | None = None,
    forget_seed: int = 0,
) -> Split:
    """A registered dataset's train / val / test split (and forget set), from its data plan."""
    p = DataPlan(dataset, dict(params or {}), val_fraction, test_fraction, split_seed)
    return split_from_plan(p, forget, forget_seed)


def split_from_plan(p: DataPlan, forget: str | None = None, forget_seed: int = 0) -> Split:
    """The :class:`Split` of a data plan (``p.forget``, when set, is the forget set)."""
    forget = forget if forget is not None else p.forget
    forget_seed = forget_seed if p.forget is None else p.forget_seed
    base = replace(p, forget=None, forget_seed=0)
    mat: Materialised = materialise(base)
    split = Split(mat.train, mat.val, mat.test, plan=base)
    return split.with_forget(forget, forget_seed) if forget is not None else split


def split_of(
    train: Any,
    *,
    forget_ids: Sequence[int] | torch.Tensor | None = None,
    val: Any = None,
    test: Any = None,
    task: str = "multiclass",
    classes: Sequence[str] | int | None = None,
) -> Split:
    """A :class:`Split` over the user's own data (see :func:`as_dataset` for the forms)."""
    tr = as_dataset(train, task=task, classes=classes, name="train")
    n_cls = tr.classes

    def conv(d: Any, name: str) -> ArrayDataset | None:
        return None if d is None else as_dataset(d, task=task, classes=n_cls, name=name)

    split = Split(tr, conv(val, "val"), conv(test, "test"))
    return split.with_forget(forget_ids) if forget_ids is not None else split


def as_split(data: Any, forget_ids: Sequence[int] | torch.Tensor | None = None) -> Split:
    """A :class:`Split` from a Split (forget ids replaced when given) or training data."""
    if isinstance(data, Split):
        return data.with_forget(forget_ids) if forget_ids is not None else data
    return split_of(data, forget_ids=forget_ids)
