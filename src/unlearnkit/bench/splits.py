"""The split stage's artifact: train / val / test / retain / forget ids of one dataset.

``make_split`` loads the dataset, splits it with :func:`unlearnkit.data.train_val_test_split`
and draws the forget set from the training split with
:func:`unlearnkit.data.select_forget`. ``write_split`` stores the five id sets as safetensors
(``<path>.safetensors``) with a JSON sidecar (dataset, task, classes, input shape, sizes and the
SHA-256 of the tensor file). When the dataset's arrays are small (at most ``CACHE_BYTES``),
``x`` and ``y`` of the split samples are stored too, so workers never regenerate a dataset
(MNIST-1D takes seconds to generate); larger datasets (CIFAR-10) are reloaded from their source
files by each worker, once per process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from unlearnkit.bench.config import DatasetConfig
from unlearnkit.data import ArrayDataset, load_dataset, select_forget, train_val_test_split
from unlearnkit.errors import DataError, StateMismatchError, UnsupportedError
from unlearnkit.io import atomic_write_json, load_tensors, save_tensors

CACHE_BYTES = 256 * 2**20
PARTS = ("train", "val", "test", "retain", "forget")


@dataclass(frozen=True)
class SplitData:
    """The five parts of a split, as datasets (retain ∪ forget = train)."""

    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    retain: ArrayDataset
    forget: ArrayDataset

    def part(self, name: str) -> ArrayDataset:
        return getattr(self, name)


@lru_cache(maxsize=4)
def _load(name: str, params_json: str) -> ArrayDataset:
    return load_dataset(name, **json.loads(params_json))


def expand_params(params: dict[str, Any]) -> dict[str, Any]:
    """String parameters with ``$VAR``/``${VAR}`` and ``~`` expanded (e.g. a data root).

    Expansion happens where the data is loaded, so run keys do not depend on local paths.
    """
    out: dict[str, Any] = {}
    for k, v in params.items():
        if isinstance(v, str):
            v = os.path.expanduser(os.path.expandvars(v))
            if "$" in v:
                raise DataError(f"dataset parameter {k}={v!r}: set the environment variable")
        out[k] = v
    return out


def load_source(cfg: DatasetConfig) -> ArrayDataset:
    """The dataset ``cfg`` names, loaded once per process."""
    return _load(cfg.name, json.dumps(expand_params(cfg.params), sort_keys=True))


def make_split(cfg: DatasetConfig, forget: str | dict[str, Any], forget_seed: int) -> SplitData:
    """Split ``cfg``'s dataset and select the forget set (deterministic)."""
    ds = load_source(cfg)
    if ds.task != "multiclass":
        raise UnsupportedError(
            f"the benchmark harness handles multi-class datasets; {cfg.name!r} is {ds.task}"
        )
    sp = train_val_test_split(
        ds,
        val_fraction=cfg.val_fraction,
        test_fraction=cfg.test_fraction,
        seed=cfg.split_seed,
        stratify=cfg.stratify,
        use_official=cfg.use_official,
    )
    fs = select_forget(sp.train, forget, seed=forget_seed)
    return SplitData(sp.train, sp.val, sp.test, fs.retain(sp.train), fs.forget(sp.train))


def write_split(path: Path, split: SplitData, cfg: DatasetConfig) -> dict[str, Any]:
    """Write ``path.safetensors`` and ``path.json``; return the facts recorded in the sidecar."""
    tensors = {f"{p}_ids": split.part(p).ids for p in PARTS}
    union = [split.train, split.val, split.test]
    nbytes = sum(d.x.element_size() * d.x.numel() for d in union)
    cached = nbytes <= CACHE_BYTES
    if cached:
        tensors["x"] = torch.cat([d.x for d in union])
        tensors["y"] = torch.cat([d.y for d in union])
        tensors["ids"] = torch.cat([d.ids for d in union])
    digest = save_tensors(path.with_suffix(".safetensors"), tensors)
    info = {
        "dataset": cfg.model_dump(mode="json"),
        "task": split.train.task,
        "classes": list(split.train.classes),
        "input_shape": list(split.train.input_shape),
        "num_outputs": split.train.num_outputs,
        "sizes": {p: len(split.part(p)) for p in PARTS},
        "cached_arrays": cached,
        "sha256": digest,
    }
    atomic_write_json(path.with_suffix(".json"), info)
    return info


@lru_cache(maxsize=8)
def read_split(path: str) -> SplitData:
    """Rebuild a :class:`SplitData` from :func:`write_split`'s files (cached per process)."""
    base = Path(path)
    try:
        info = json.loads(base.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise StateMismatchError(f"cannot read split sidecar {base}.json: {err}") from None
    tensors = load_tensors(base.with_suffix(".safetensors"), info["sha256"])
    cfg = DatasetConfig.model_validate(info["dataset"])
    if info["cached_arrays"]:
        source = ArrayDataset(
            name=cfg.tag,
            x=tensors["x"],
            y=tensors["y"],
            ids=tensors["ids"],
            task=info["task"],
            classes=tuple(info["classes"]),
        )
    else:
        source = load_source(cfg)
    parts = {p: source.subset(tensors[f"{p}_ids"], name=f"{cfg.tag}:{p}") for p in PARTS}
    return SplitData(**parts)
