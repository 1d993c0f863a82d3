"""The split stage's artifact: train / val / test / retain / forget ids of one dataset.

``make_split`` materialises the :class:`~unlearnkit.data.plan.DataPlan` that
:meth:`DatasetConfig.plan <unlearnkit.bench.config.DatasetConfig.plan>` builds (the one data
plan of the package: split, then the forget set drawn from the training split).
``write_split`` stores the five id sets as safetensors (``<path>.safetensors``) with a JSON
sidecar (dataset, data plan, task, classes, input shape, sizes and the SHA-256 of the tensor
file). When the dataset's arrays are small (at most ``CACHE_BYTES``), ``x`` and ``y`` of the
split samples are stored too, so workers never regenerate a dataset (MNIST-1D takes seconds to
generate); larger datasets (CIFAR-10) are reloaded from their source files by each worker,
once per process.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from unlearnkit.bench.config import DatasetConfig
from unlearnkit.data import ArrayDataset
from unlearnkit.data.plan import PARTS, Split
from unlearnkit.data.registry import load_source
from unlearnkit.errors import StateMismatchError, UnsupportedError
from unlearnkit.io import atomic_write_json, load_tensors, save_tensors

CACHE_BYTES = 256 * 2**20


def make_split(cfg: DatasetConfig, forget: str | dict[str, Any], forget_seed: int) -> Split:
    """Split ``cfg``'s dataset and select the forget set (deterministic)."""
    split = cfg.plan(forget, forget_seed).materialise()
    if split.train.task != "multiclass":
        raise UnsupportedError(
            f"the benchmark harness handles multi-class datasets; {cfg.name!r} is "
            f"{split.train.task}"
        )
    return split


def write_split(path: Path, split: Split, cfg: DatasetConfig) -> dict[str, Any]:
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
        "plan": split.plan.to_dict() if split.plan is not None else None,
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
def read_split(path: str) -> Split:
    """Rebuild a :class:`~unlearnkit.data.plan.Split` from :func:`write_split`'s files (cached per process)."""
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
        source = load_source(cfg.name, cfg.params)
    parts = {p: source.subset(tensors[f"{p}_ids"], name=f"{cfg.tag}:{p}") for p in PARTS}
    return Split(**parts)
