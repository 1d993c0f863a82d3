"""Cached pools of shadow models for per-example attacks (U-LiRA), shared across methods.

Shadow attacks are dominated by training cost (spec/evaluation.md §3.5, "Efficiency"), so
every model a pool needs is stored on disk the moment it is trained and reused by every
later audit that needs the same model: other methods, a re-run, a larger shadow count.

Layout under a cache root::

    <root>/<kind>-<pool key[:16]>/pool.json            what defines the pool (JSON)
    <root>/<kind>-<pool key[:16]>/m0003.safetensors     member 3's weights  (artifacts.save_model)
    <root>/<kind>-<pool key[:16]>/m0003.json            member 3's manifest, with its job key
    <root>/<kind>-<pool key[:16]>/u0003.safetensors     an unlearned member's logits (no weights)
    <root>/<kind>-<pool key[:16]>/u0003.json            its manifest, with its job key

Keys are SHA-256 content hashes (:func:`content_key`) of canonical JSON:

* pool key: kind, dataset fingerprint (:func:`dataset_fingerprint`), model (name, input shape,
  outputs, options), training recipe and split scheme (:class:`PoolSpec`);
* job key: the pool key plus everything that determines one member: its training ids
  (:func:`unlearnkit.io.ids_hash`), initial-weight seed and training seed, or, for an unlearned
  member, the original's job key, method, configuration, seed and retain / forget ids.

A member counts as done when its manifest exists and records the same job key. Weights are
written before the manifest, both atomically, so a crash mid-pool loses only the member being
trained, and a changed dataset, recipe or split retrains instead of silently reusing.

Jobs run in the calling process (``workers=1``) or in a ``ProcessPoolExecutor`` of ``workers``
spawned processes, each limited to ``threads`` torch threads.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import StateMismatchError
from unlearnkit.io import (
    atomic_write_json,
    ids_hash,
    load_tensors,
    save_tensors,
    tensors_fingerprint,
)

#: progress callback: (stage name, members done, members total)
Progress = Callable[[str, int, int], None]


def content_key(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys, no whitespace, str() fallback)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def dataset_fingerprint(dataset: ArrayDataset) -> str:
    """SHA-256 over the bytes of ``x``, ``y`` and ``ids`` (names, shapes, dtypes included)."""
    return tensors_fingerprint({"x": dataset.x, "y": dataset.y, "ids": dataset.ids})


@dataclass(frozen=True)
class PoolSpec:
    """What defines a pool; its :attr:`key` names the pool's folder."""

    kind: str
    definition: dict[str, Any]

    @property
    def key(self) -> str:
        return content_key({"kind": self.kind, **self.definition})

    def folder(self, root: str | Path) -> Path:
        return Path(root) / f"{self.kind}-{self.key[:16]}"


@dataclass(frozen=True)
class WorkerContext:
    """Data every job reads: the population models train on / are scored on, and val."""

    population: ArrayDataset
    val: ArrayDataset | None = None
    test: ArrayDataset | None = None


_CONTEXT: WorkerContext | None = None


def _init_worker(context: WorkerContext, threads: int) -> None:
    """Process-pool initializer: keep the context, limit torch threads (2-core machines)."""
    global _CONTEXT
    _CONTEXT = context
    torch.set_num_threads(threads)


class Job(ABC):
    """One pool member: knows its files, its key, and how to produce itself."""

    folder: Path
    index: int

    @property
    @abstractmethod
    def key(self) -> str:
        """Content key of everything that determines this member."""

    @property
    @abstractmethod
    def stem(self) -> str:
        """File stem inside the pool folder (``m0003`` / ``u0003``)."""

    @property
    def manifest_path(self) -> Path:
        return self.folder / f"{self.stem}.json"

    @property
    def tensors_path(self) -> Path:
        return self.folder / f"{self.stem}.safetensors"

    def done(self) -> bool:
        """True if the member is on disk with this job key."""
        if not (self.manifest_path.exists() and self.tensors_path.exists()):
            return False
        try:
            manifest = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        return isinstance(manifest, dict) and manifest.get("job_key") == self.key

    @abstractmethod
    def run(self, context: WorkerContext) -> float:
        """Produce and save the member; return the seconds of the timed work."""


def _run_job(job: Job) -> tuple[int, float]:
    if _CONTEXT is None:  # pragma: no cover - guarded by the initializer
        raise RuntimeError("worker context not initialised")
    return job.index, job.run(_CONTEXT)


@dataclass
class PoolReport:
    """How a pool was obtained: members trained now, members reused from disk, seconds."""

    name: str
    folder: str
    total: int
    trained: int
    reused: int
    seconds: float
    member_seconds: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "folder": self.folder,
            "total": self.total,
            "trained": self.trained,
            "reused": self.reused,
            "seconds": self.seconds,
            "mean_member_seconds": (
                float(np.mean(self.member_seconds)) if self.member_seconds else None
            ),
        }


def write_pool_manifest(spec: PoolSpec, root: str | Path, extra: dict[str, Any]) -> Path:
    """Write (or refresh) ``pool.json``: the pool's kind, key and definition, plus ``extra``."""
    folder = spec.folder(root)
    path = folder / "pool.json"
    atomic_write_json(path, {"kind": spec.kind, "key": spec.key, **spec.definition, **extra})
    return path


def run_pool(
    name: str,
    jobs: Sequence[Job],
    context: WorkerContext,
    *,
    workers: int = 1,
    threads: int = 1,
    progress: Progress | None = None,
) -> PoolReport:
    """Produce every member of ``jobs`` that is not yet on disk; reuse the others.

    ``workers > 1`` runs the missing members in a spawned ``ProcessPoolExecutor``; each
    member is saved by the process that made it, as soon as it is made.
    """
    t0 = time.perf_counter()
    todo = [j for j in jobs if not j.done()]
    reused = len(jobs) - len(todo)
    done = reused
    seconds: list[float] = []
    if progress:
        progress(name, done, len(jobs))
    if todo and workers <= 1:
        for job in todo:
            seconds.append(job.run(context))
            done += 1
            if progress:
                progress(name, done, len(jobs))
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            max_workers=min(workers, len(todo)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(context, threads),
        ) as pool:
            futures = [pool.submit(_run_job, j) for j in todo]
            for fut in cf.as_completed(futures):
                seconds.append(fut.result()[1])
                done += 1
                if progress:
                    progress(name, done, len(jobs))
    folder = str(jobs[0].folder) if jobs else ""
    return PoolReport(name, folder, len(jobs), len(todo), reused, time.perf_counter() - t0, seconds)


# ----------------------------------------------------------------------------- training jobs


@dataclass
class TrainJob(Job):
    """Train ``model`` (spec with ``init_seed``) on ``train_ids`` of the population."""

    folder: Path
    index: int
    pool_key: str
    model_name: str
    model_options: dict[str, Any]
    recipe: dict[str, Any]
    train_ids: np.ndarray
    init_seed: int
    train_seed: int

    @property
    def key(self) -> str:
        return content_key(
            {
                "pool": self.pool_key,
                "train_ids": ids_hash(self.train_ids),
                "n": int(self.train_ids.size),
                "init_seed": self.init_seed,
                "train_seed": self.train_seed,
            }
        )

    @property
    def stem(self) -> str:
        return f"m{self.index:04d}"

    def run(self, context: WorkerContext) -> float:
        from unlearnkit.artifacts import save_model
        from unlearnkit.models import build_model
        from unlearnkit.training import train

        pop = context.population
        init = build_model(
            self.model_name, pop.input_shape, pop.num_outputs, self.init_seed, **self.model_options
        )
        data = pop.subset(np.sort(self.train_ids), name=f"{pop.name}:shadow{self.index}")
        result = train(init, data, self.recipe, seed=self.train_seed)
        save_model(
            self.folder / self.stem,
            result.model.cpu(),
            manifest={
                "job_key": self.key,
                "pool_key": self.pool_key,
                "index": self.index,
                "train_ids_hash": ids_hash(self.train_ids),
                "n_train": int(self.train_ids.size),
                "init_seed": self.init_seed,
                "train_seed": self.train_seed,
                "recipe": self.recipe,
                "seconds": result.seconds,
            },
        )
        return result.seconds

    def load(self) -> torch.nn.Module:
        """The trained member (checksums verified by :func:`unlearnkit.artifacts.load_model`)."""
        from unlearnkit.artifacts import load_model

        if not self.done():
            raise StateMismatchError(f"pool member {self.manifest_path} is missing or stale")
        model, _ = load_model(self.folder / self.stem)
        return model


# ----------------------------------------------------------------------------- unlearning jobs


@dataclass
class UnlearnJob(Job):
    """Unlearn ``forget_ids`` from a trained member; store its logits on the population.

    Only the logits are kept (and the test accuracy): the attack needs nothing else, and they
    are small next to weights.
    """

    folder: Path
    index: int
    original: TrainJob
    method: str
    config: dict[str, Any]
    seed: int
    retain_ids: np.ndarray
    forget_ids: np.ndarray

    @property
    def key(self) -> str:
        return content_key(
            {
                "original": self.original.key,
                "method": self.method,
                "config": self.config,
                "seed": self.seed,
                "retain_ids": ids_hash(self.retain_ids),
                "forget_ids": ids_hash(self.forget_ids),
            }
        )

    @property
    def stem(self) -> str:
        return f"u{self.index:04d}"

    def run(self, context: WorkerContext) -> float:
        import unlearnkit.methods  # noqa: F401  (registers the methods)
        from unlearnkit.methods import METHODS, UnlearnData
        from unlearnkit.training import evaluate_accuracy, predict_logits

        pop = context.population
        data = UnlearnData(
            retain=pop.subset(np.sort(self.retain_ids), name=f"{pop.name}:retain"),
            forget=pop.subset(np.sort(self.forget_ids), name=f"{pop.name}:forget"),
            val=context.val,
        )
        model = self.original.load()
        result = METHODS.get(self.method)().unlearn(model, data, self.config, seed=self.seed)
        out = result.model.cpu()
        logits = predict_logits(out, pop).float()
        digest = save_tensors(self.tensors_path, {"logits": logits})
        test_acc = evaluate_accuracy(out, context.test) if context.test is not None else None
        atomic_write_json(
            self.manifest_path,
            {
                "job_key": self.key,
                "original_key": self.original.key,
                "method": self.method,
                "config": self.config,
                "seed": self.seed,
                "forget_ids_hash": ids_hash(self.forget_ids),
                "n_forget": int(self.forget_ids.size),
                "n_retain": int(self.retain_ids.size),
                "seconds": result.seconds,
                "test_accuracy": test_acc,
                "sha256": digest,
                "info": json.loads(json.dumps(result.info, default=str)),
            },
        )
        return result.seconds

    def load_logits(self) -> torch.Tensor:
        """The stored (n_population, C) logits (checksum verified)."""
        if not self.done():
            raise StateMismatchError(f"unlearned member {self.manifest_path} is missing or stale")
        manifest = json.loads(self.manifest_path.read_text())
        return load_tensors(self.tensors_path, manifest.get("sha256"))["logits"]

    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_path.read_text()))
