"""The memorisation pre-stage: a pool of models on random halves, and its leave-out scores.

A memorisation-stratified forget set (``memorised:FRACTION``, :mod:`unlearnkit.data.memorised`)
must be known before the Original is trained, so its scores come from a separate pool
trained here (Feldman & Zhang 2020, "What neural networks memorize and why"):

1. ``models`` (even) models in complementary pairs: pair j draws a random half ``H_j`` of the
   dataset (``numpy.random.default_rng(seed + j).permutation(n)[: n // 2]``); model ``2j``
   trains on ``H_j``, model ``2j + 1`` on the rest. So every example is IN for exactly half the
   models and OUT for the other half.
2. Each model is scored on every example: the statistic ``correct`` (1 if the top-1
   prediction is the label) or ``margin`` (logit of the label minus the largest other logit).
3. mem(i) = mean over IN models of s(i) − mean over OUT models of s(i)
   (:func:`unlearnkit.metrics.memorisation.memorisation_scores`; higher = more memorised:
   an atypical or mislabelled example is predicted right only by the models that saw it).

Models are trained together by :func:`unlearnkit.training.train_many` (one vmapped SGD run)
when the model and recipe allow it (no BatchNorm, no augmentation); otherwise one by one with
:func:`unlearnkit.training.train` (same result up to floating-point order).

Caching goes through the one job system: the pool is a :class:`~unlearnkit.jobs.pools.Job`
whose content key covers the dataset fingerprint (x, y, ids), model, options, recipe, pool
size, seed and statistic; :func:`memorisation_pool` runs it with
:func:`~unlearnkit.jobs.pools.run_pool`, which skips it when ``<root>/<pool key>/scores.json``
records the same key. The artifact ``scores.safetensors`` holds ``ids`` (n,), ``inside``
(models, n), ``stat`` (models, n) and ``scores`` (n,).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import DataError, StateMismatchError, UnsupportedError
from unlearnkit.io import atomic_write_json, load_tensors, save_tensors
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.pools import Job, PoolSpec, WorkerContext, dataset_fingerprint, run_pool

#: Recipe of the default pool: memorising SGD (no weight decay, no augmentation).
DEFAULT_RECIPE: dict[str, Any] = {
    "name": "sgd",
    "epochs": 40,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
}


class MemorisationPool(BaseModel):
    """What defines the pool: ``models`` (even, ≥ 2) of ``model`` with ``options`` trained
    with ``recipe`` on complementary random halves drawn from ``seed``; statistic ``stat``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: int = Field(16, ge=2, description="pool size (even: complementary pairs)")
    model: str = "mlp"
    options: dict[str, Any] = Field(default_factory=lambda: {"width": 256, "depth": 2})
    recipe: dict[str, Any] = Field(default_factory=lambda: dict(DEFAULT_RECIPE))
    seed: int = 0
    stat: Literal["correct", "margin"] = "correct"

    @field_validator("models")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"models must be even (complementary halves), got {v}")
        return v


def default_cache() -> Path:
    """``$UNLEARNKIT_CACHE/memorisation``, else ``$XDG_CACHE_HOME`` or ``~/.cache``
    ``/unlearnkit/memorisation``."""
    root = os.environ.get("UNLEARNKIT_CACHE")
    if root:
        return Path(root).expanduser() / "memorisation"
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "unlearnkit" / "memorisation"


def halves(n: int, models: int, seed: int) -> np.ndarray:
    """The (models, n) bool inclusion matrix of step 1 of the module docstring."""
    if n < 2:
        raise DataError(f"a memorisation pool needs at least 2 samples, got {n}")
    inside = np.zeros((models, n), dtype=bool)
    for j in range(models // 2):
        half = np.random.default_rng(seed + j).permutation(n)[: n // 2]
        inside[2 * j, half] = True
        inside[2 * j + 1] = ~inside[2 * j]
    return inside


def _statistic(logits: torch.Tensor, y: torch.Tensor, stat: str) -> np.ndarray:
    z = logits.double()
    if stat == "correct":
        return (z.argmax(dim=1) == y).double().numpy()
    own = z.gather(1, y[:, None]).squeeze(1)
    other = z.scatter(1, y[:, None], -torch.inf).max(dim=1).values
    return (own - other).numpy()


def _train_pool(pool: MemorisationPool, data: ArrayDataset, inside: np.ndarray) -> list:
    """The pool's trained models: batched when supported, else sequentially."""
    from unlearnkit.models import build_model
    from unlearnkit.training import make_recipe, train, train_many

    ids = data.ids.numpy()
    subsets = [torch.from_numpy(ids[row].copy()) for row in inside]
    seeds = [pool.seed * 1000 + k for k in range(pool.models)]
    recipe = make_recipe(pool.recipe)

    def factory(s: int) -> torch.nn.Module:
        return build_model(pool.model, data.input_shape, data.num_outputs, s, **pool.options)

    try:
        return train_many(factory, data, subsets, seeds, recipe).models  # type: ignore[arg-type]
    except UnsupportedError:
        return [
            train(factory(s), data.subset(sub), recipe, seed=s).model.eval()
            for s, sub in zip(seeds, subsets, strict=True)
        ]


@dataclass
class MemorisationJob(Job):
    """The whole pool as one job: trains it, scores every example, saves the scores."""

    folder: Path
    pool: MemorisationPool
    pool_key: str
    index: int = 0

    @property
    def key(self) -> str:
        return content_key("memorisation", pool=self.pool_key)

    @property
    def stem(self) -> str:
        return "scores"

    @property
    def device(self) -> str:
        return str(self.pool.recipe.get("device") or "cpu")

    def run(self, context: WorkerContext) -> float:
        from unlearnkit.metrics.memorisation import memorisation_scores
        from unlearnkit.training import predict_logits

        data = context.population
        t0 = time.perf_counter()
        inside = halves(len(data), self.pool.models, self.pool.seed)
        models = _train_pool(self.pool, data, inside)
        stat = np.stack(
            [_statistic(predict_logits(m, data).cpu(), data.y, self.pool.stat) for m in models]
        )
        scores = memorisation_scores(stat, inside)
        seconds = time.perf_counter() - t0
        tensors = {
            "ids": data.ids.clone(),
            "inside": torch.from_numpy(inside),
            "stat": torch.from_numpy(stat),
            "scores": torch.from_numpy(scores),
        }
        digest = save_tensors(self.tensors_path, tensors)
        atomic_write_json(
            self.manifest_path,
            {
                "job_key": self.key,
                "pool": self.pool.model_dump(mode="json"),
                "n": len(data),
                "seconds": seconds,
                "sha256": digest,
            },
        )
        return seconds


@dataclass(frozen=True)
class MemorisationScores:
    """Per-example leave-out memorisation scores (module docstring) and where they live."""

    ids: np.ndarray
    scores: np.ndarray
    inside: np.ndarray
    stat: np.ndarray
    path: Path
    trained: bool


def pool_spec(data: ArrayDataset, pool: MemorisationPool) -> PoolSpec:
    """The pool's :class:`PoolSpec` (its key names the cache folder)."""
    return PoolSpec(
        "memopool",
        {
            "dataset": dataset_fingerprint(data),
            "input_shape": list(data.input_shape),
            "outputs": data.num_outputs,
            "pool": pool.model_dump(mode="json"),
        },
    )


def memorisation_pool(
    data: ArrayDataset,
    pool: MemorisationPool | None = None,
    cache: str | Path | None = None,
) -> MemorisationScores:
    """Scores of every example of ``data`` (trained now, or read back from ``cache``,
    default :func:`default_cache`)."""
    import json

    pool = pool or MemorisationPool()
    if data.task != "multiclass":
        raise UnsupportedError(
            f"memorisation scores need multi-class data; {data.name!r} is {data.task}"
        )
    spec = pool_spec(data, pool)
    root = Path(cache).expanduser() if cache is not None else default_cache()
    job = MemorisationJob(spec.folder(root), pool, spec.key)
    job.folder.mkdir(parents=True, exist_ok=True)
    report = run_pool("memorisation", [job], WorkerContext(population=data))
    manifest = json.loads(job.manifest_path.read_text())
    t = load_tensors(job.tensors_path, manifest.get("sha256"))
    if not torch.equal(t["ids"], data.ids):
        raise StateMismatchError(f"{job.tensors_path} holds scores of other samples")
    return MemorisationScores(
        t["ids"].numpy(),
        t["scores"].numpy(),
        t["inside"].numpy(),
        t["stat"].numpy(),
        job.tensors_path,
        report.trained > 0,
    )
