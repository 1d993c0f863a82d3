"""The dataset registry: ``load_dataset(name, **params)`` and ``dataset_info()``.

Every dataset is a :class:`DatasetEntry`: a loader, a pydantic model of its parameters and the
facts the CLI shows in ``unlearnkit data list``. Loaders live in their own modules
(:mod:`unlearnkit.data.mnist`, :mod:`~unlearnkit.data.attributes`, :mod:`~unlearnkit.data.cifar`,
:mod:`~unlearnkit.data.celeba`) and register themselves on import.

Conventions every loader keeps:

* ``x`` is float32, ``ids`` are int64 and stable across runs and machines (a sample's index in
  the canonical source order, or the number in its file name for CelebA).
* An official held-out split, when the source has one, is recorded by id in
  ``meta["official_test_ids"]`` (and ``meta["official_val_ids"]``) as sorted int64 tensors;
  :func:`unlearnkit.data.splits.train_val_test_split` honours it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from unlearnkit.data.base import ArrayDataset, Task
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.registry import Registry


class DatasetParams(BaseModel):
    """Base of every loader's parameter model: unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DatasetEntry:
    """One registered dataset: what it is, and how to load it."""

    name: str
    task: Task
    size: int
    input_shape: str
    num_outputs: int
    description: str
    params: type[DatasetParams]
    loader: Callable[[Any], ArrayDataset]

    def load(self, **params: Any) -> ArrayDataset:
        """Validate ``params`` against :attr:`params`, then load."""
        try:
            parsed = self.params(**params)
        except ValidationError as err:
            raise ConfigError(f"bad parameters for dataset {self.name!r}: {err}") from None
        return self.loader(parsed)


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    task: Task,
    size: int,
    input_shape: str,
    num_outputs: int,
    description: str,
    params: type[DatasetParams],
) -> Callable[[Callable[[Any], ArrayDataset]], Callable[[Any], ArrayDataset]]:
    """Decorator registering a loader ``f(params) -> ArrayDataset`` under ``name``."""

    def deco(loader: Callable[[Any], ArrayDataset]) -> Callable[[Any], ArrayDataset]:
        entry = DatasetEntry(
            name, task, size, input_shape, num_outputs, description, params, loader
        )
        DATASETS.register(name)(entry)
        return loader

    return deco


def load_dataset(name: str, **params: Any) -> ArrayDataset:
    """Load the registered dataset ``name`` with loader parameters ``params``.

    Unknown names and bad parameters raise :class:`~unlearnkit.errors.ConfigError`; missing or
    malformed files raise :class:`~unlearnkit.errors.DataError`.
    """
    return DATASETS.get(name).load(**params)


def expand_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """String parameters with ``$VAR``/``${VAR}`` and ``~`` expanded (e.g. a data root).

    Expansion happens where the data is loaded, so plans and run keys do not depend on local
    paths. An unset variable raises :class:`~unlearnkit.errors.DataError`.
    """
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, str):
            v = os.path.expanduser(os.path.expandvars(v))
            if "$" in v:
                raise DataError(f"dataset parameter {k}={v!r}: set the environment variable")
        out[k] = v
    return out


@lru_cache(maxsize=4)
def _load(name: str, params_json: str) -> ArrayDataset:
    return load_dataset(name, **json.loads(params_json))


def load_source(name: str, params: Mapping[str, Any]) -> ArrayDataset:
    """The registered dataset ``name`` with ``params`` (expanded), loaded once per process
    (the object is shared between callers: never modify its tensors in place)."""
    return _load(name, json.dumps(expand_params(params), sort_keys=True))


def dataset_info() -> list[dict[str, Any]]:
    """One row per registered dataset, for ``unlearnkit data list``.

    Keys: ``name``, ``task``, ``size`` (samples with default parameters, whole official
    release), ``input_shape``, ``num_outputs`` (classes or attributes), ``params`` (parameter
    names) and ``description``.
    """
    rows = []
    for name, entry in DATASETS.items():
        rows.append(
            {
                "name": name,
                "task": entry.task,
                "size": entry.size,
                "input_shape": entry.input_shape,
                "num_outputs": entry.num_outputs,
                "params": ", ".join(entry.params.model_fields),
                "description": entry.description,
            }
        )
    return rows
