"""Label corruption recorded in a data plan: a seeded, reproducible poisoning of training labels.

A :class:`Relabel` step names a set of training samples with a forget spec
(:mod:`unlearnkit.data.forget`, drawn with its own seed from the *clean* training part) and the
class every one of them is relabelled to. :meth:`DataPlan.materialise
<unlearnkit.data.plan.DataPlan.materialise>` applies the steps after the train / val / test
split (which is drawn on the clean labels, so val and test stay clean and the split is the one
the plan without relabelling gives) and before the forget steps::

    DataPlan("mnist5k", relabel=[{"spec": "class_fraction:7:0.35", "seed": 0, "to": 1}])

relabels ``round(0.35 · n_7)`` of the training samples of class 7 as class 1: the
"mislabelled / poisoned training data" scenario of Koh & Liang (2017, *Understanding black-box
predictions via influence functions*, §5.4), where the erasure request names exactly the
corrupted ids (:func:`relabelled_ids`). Steps apply in order, each drawing from the labels the
previous ones left. Multi-class data only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import ForgetSpec, make_forget_spec
from unlearnkit.errors import ConfigError, DataError


@dataclass(frozen=True)
class Relabel:
    """One corruption step: the samples ``spec`` selects (with ``seed``) get class ``to``."""

    spec: str
    to: int | str
    seed: int = 0

    @classmethod
    def make(cls, value: Any) -> Relabel:
        """A step from a :class:`Relabel` or a ``{"spec", "to"[, "seed"]}`` dict; the spec is
        validated and stored in canonical text form."""
        if isinstance(value, Relabel):
            return value
        if not isinstance(value, Mapping) or not {"spec", "to"} <= set(value):
            raise ConfigError(
                f"a relabel step needs 'spec' and 'to' (and optionally 'seed'), got {value!r}"
            )
        unknown = sorted(set(value) - {"spec", "to", "seed"})
        if unknown:
            raise ConfigError(f"unknown relabel keys {unknown}")
        spec = value["spec"]
        text = make_forget_spec(spec if isinstance(spec, ForgetSpec | dict) else str(spec))
        to = value["to"]
        if not isinstance(to, int | str) or isinstance(to, bool):
            raise ConfigError(f"relabel 'to' must be a class index or name, got {to!r}")
        if isinstance(to, str) and to.isdigit():
            to = int(to)  # one canonical form, so equal plans have equal keys
        return cls(text.to_text(), to, int(value.get("seed", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "to": self.to, "seed": self.seed}


def relabel_steps(value: Any) -> tuple[Relabel, ...]:
    """Normalise None, one step or a sequence of steps to a tuple of :class:`Relabel`."""
    if value is None:
        return ()
    if isinstance(value, Relabel | Mapping):
        return (Relabel.make(value),)
    if isinstance(value, Iterable) and not isinstance(value, str):
        return tuple(Relabel.make(v) for v in value)
    raise ConfigError(f"relabel must be a step or a list of steps, not {value!r}")


def _class_index(dataset: ArrayDataset, to: int | str) -> int:
    if isinstance(to, str) and to in dataset.classes:
        return dataset.classes.index(to)
    try:
        index = int(to)
    except ValueError:
        raise DataError(f"unknown class {to!r}; known: {', '.join(dataset.classes)}") from None
    if not 0 <= index < len(dataset.classes):
        raise DataError(f"class index {index} out of range 0..{len(dataset.classes) - 1}")
    return index


def apply_relabel(train: Any, steps: tuple[Relabel, ...]) -> tuple[Any, torch.Tensor]:
    """``train`` with the steps' samples relabelled (a new dataset: the input is never changed)
    and the relabelled ids (sorted int64). No steps: ``train`` itself and no ids."""
    if not steps:
        return train, torch.zeros(0, dtype=torch.int64)
    if not isinstance(train, ArrayDataset) or train.task != "multiclass":
        raise DataError("relabelling needs an in-memory multi-class dataset")
    y = train.y.clone()
    changed: list[np.ndarray] = []
    for step in steps:
        current = dataclasses.replace(train, y=y)
        ids = make_forget_spec(step.spec).select(current, seed=step.seed).forget_ids
        y[train.positions(ids)] = _class_index(train, step.to)
        changed.append(ids.numpy())
    out = dataclasses.replace(train, y=y)
    return out, torch.from_numpy(np.unique(np.concatenate(changed)).astype(np.int64))


def relabel_in(dataset: ArrayDataset, source: ArrayDataset) -> ArrayDataset:
    """``dataset`` (a superset of ``source``'s ids) with ``source``'s labels on those ids."""
    y = dataset.y.clone()
    y[dataset.positions(source.ids)] = source.y
    return dataclasses.replace(dataset, y=y)


def relabelled_ids(train_clean: Any, steps: tuple[Relabel, ...]) -> torch.Tensor:
    """The sorted ids the steps relabel in the clean training part (the poisoned samples)."""
    return apply_relabel(train_clean, steps)[1]


__all__ = ["Relabel", "apply_relabel", "relabel_in", "relabel_steps", "relabelled_ids"]
