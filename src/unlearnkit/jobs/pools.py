"""Pools of shadow models for per-example attacks (U-LiRA), as jobs of the one job system.

Shadow attacks are dominated by training cost (docs/evaluation.md, "Efficiency"), so
every model a pool needs is stored on disk the moment it is trained and reused by every
later audit that needs the same model: other methods, a re-run, a larger shadow count.

Layout under a cache root::

    <root>/<pool key>/pool.json            what defines the pool (JSON)
    <root>/<pool key>/m0003.safetensors     member 3's weights  (artifacts.save_model)
    <root>/<pool key>/m0003.json            member 3's manifest, with its job key
    <root>/<pool key>/u0003.safetensors     an unlearned member's logits (no weights)
    <root>/<pool key>/u0003.json            its manifest, with its job key

Keys are the job system's content keys (:func:`unlearnkit.jobs.keys.content_key`: SHA-256 of
canonical JSON, prefixed by the kind):

* pool key: kind, dataset fingerprint (:func:`dataset_fingerprint`), model (name, input shape,
  outputs, options), training recipe and split scheme (:class:`PoolSpec`);
* job key: the pool key plus everything that determines one member: its training ids
  (:func:`unlearnkit.io.ids_hash`), initial-weight seed and training seed, or, for an unlearned
  member, the original's job key, method, configuration, seed and retain / forget ids.

A member counts as done when its manifest exists and records the same job key. Weights are
written before the manifest, both atomically, so a crash mid-pool loses only the member being
trained, and a changed dataset, recipe or split retrains instead of silently reusing.

Members are jobs (:mod:`unlearnkit.jobs.members`): :func:`run_pool` runs the missing ones with :func:`run_member` on any
executor of :mod:`unlearnkit.jobs.executors` (inline, a local process pool, Ray; the
population travels once per worker as the executor's shared data) and, given a
:class:`~unlearnkit.jobs.store.Store`, records each member as a run (status, time, artifact),
so a benchmark schedules, tracks and resumes them like its own stages.
"""

from __future__ import annotations

import json
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import StateMismatchError, UnsupportedError
from unlearnkit.io import (
    atomic_write_json,
    tensors_fingerprint,
)
from unlearnkit.jobs.environment import environment, resolve_device
from unlearnkit.jobs.executors import Executor, make_executor
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.store import RunResult, Store

#: progress callback: (stage name, members done, members total)
Progress = Callable[[str, int, int], None]


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
        return content_key(self.kind, **self.definition)

    def folder(self, root: str | Path) -> Path:
        return Path(root) / self.key


@dataclass(frozen=True)
class WorkerContext:
    """Data every job reads: the population models train on / are scored on, and val."""

    population: ArrayDataset
    val: ArrayDataset | None = None
    test: ArrayDataset | None = None


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
    def device(self) -> str:
        """Where the job computes (``auto``: CUDA when available), for the run's environment."""
        return "auto"

    def inputs(self) -> dict[str, Any]:
        """What the run records as its inputs (JSON-ready); members add their own facts."""
        return {
            "index": self.index,
            "folder": str(self.folder),
            "device": resolve_device(self.device),
        }

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


def run_member(job: Job, context: WorkerContext) -> RunResult:
    """Produce one member here (the executor's job function); an unsupported method gives an
    ``unsupported`` result, other errors propagate (the executor records them as failed)."""
    started = time.time()
    result = RunResult(key=job.key, started=started, worker=f"{socket.gethostname()}:{os.getpid()}")
    try:
        seconds = job.run(context)
    except UnsupportedError as err:
        result.status, result.error = "unsupported", str(err)
    else:
        result.timings = {"member": seconds}
        result.artifact = str(job.tensors_path)
    result.params = {"inputs": job.inputs()}
    result.env = environment(resolve_device(job.device))
    result.finished = time.time()
    return result


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


@dataclass
class JobTracking:
    """Where a pool's members are recorded: a store, the stage name and the run labels."""

    store: Store
    stage: str
    labels: dict[str, Any] = field(default_factory=dict)


def run_pool(
    name: str,
    jobs: Sequence[Job],
    context: WorkerContext,
    *,
    executor: Executor | None = None,
    workers: int = 1,
    threads: int = 1,
    tracking: JobTracking | None = None,
    label: str | None = None,
    progress: Progress | None = None,
) -> PoolReport:
    """Produce every member of ``jobs`` that is not yet on disk; reuse the others.

    The missing members run as jobs on ``executor`` (default: in this process for
    ``workers <= 1``, else a pool of ``workers`` spawned processes with ``threads`` torch
    threads each); each member is saved by the worker that made it, as soon as it is made.
    With ``tracking`` every member is a run of that store (started, then done / failed /
    unsupported), labelled with ``label`` (default ``name``) as its method and its index as
    its seed. Raises :class:`UnsupportedError` if the method does not apply, and
    :class:`StateMismatchError` naming the first failure otherwise.
    """
    t0 = time.perf_counter()
    todo = [j for j in jobs if not j.done()]
    reused = len(jobs) - len(todo)
    done = reused
    seconds: list[float] = []
    problems: list[RunResult] = []
    if progress:
        progress(name, done, len(jobs))
    own = executor is None and bool(todo)
    if own:
        kind = "inline" if workers <= 1 else "local"
        executor = make_executor(kind, min(workers, len(todo)), threads)
    if tracking is not None:
        for job in todo:
            labels = {**tracking.labels, "method": label or name, "seed": job.index}
            tracking.store.start(job.key, tracking.stage, labels)
    try:
        for result in executor.run(todo, run_member, context) if todo else ():  # type: ignore[union-attr]
            if tracking is not None:
                tracking.store.finish(result)
            if result.status != "done":
                problems.append(result)
                continue
            seconds.append(result.timings["member"])
            done += 1
            if progress:
                progress(name, done, len(jobs))
    finally:
        if own:
            executor.close(cancel=False)  # type: ignore[union-attr]
    for bad in problems:
        if bad.status == "unsupported":
            raise UnsupportedError(bad.error or f"{name}: unsupported")
    if problems:
        raise StateMismatchError(
            f"pool {name}: member {problems[0].key} failed: {problems[0].error}"
        )
    folder = str(jobs[0].folder) if jobs else ""
    return PoolReport(name, folder, len(jobs), len(todo), reused, time.perf_counter() - t0, seconds)
