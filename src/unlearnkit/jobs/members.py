"""The members of the audit's pools: a shadow model trained on given ids (:class:`TrainJob`),
and a trained member unlearned by a method (:class:`UnlearnJob`, whose logits on the
population are kept). Each is a :class:`~unlearnkit.jobs.pools.Job`: a content key, its files,
and how to produce itself in a worker (:func:`~unlearnkit.jobs.pools.run_member`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import unlearnkit.methods  # noqa: F401  (registers the methods)
from unlearnkit import training
from unlearnkit.artifacts import load_model, save_model
from unlearnkit.errors import NumericalError, StateMismatchError, UnsupportedError
from unlearnkit.io import atomic_write_json, ids_hash, load_tensors, save_tensors
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.pools import Job, WorkerContext
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.models import build_model
from unlearnkit.training import evaluate_accuracy, make_recipe, predict_logits
from unlearnkit.training.batched import train_many

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
    #: a diverged training is saved (initial weights, ``diverged`` in the manifest) instead
    #: of failing the job, so a pool can reject it and move on (the bench's oracle pools)
    keep_diverged: bool = False

    @property
    def key(self) -> str:
        return content_key(
            "member",
            pool=self.pool_key,
            train_ids=ids_hash(self.train_ids),
            n=int(self.train_ids.size),
            init_seed=self.init_seed,
            train_seed=self.train_seed,
        )

    @property
    def stem(self) -> str:
        return f"m{self.index:04d}"

    @property
    def device(self) -> str:
        return str(self.recipe.get("device") or "auto")

    def inputs(self) -> dict[str, Any]:
        return {
            **super().inputs(),
            "pool": self.pool_key,
            "n_train": int(self.train_ids.size),
            "init_seed": self.init_seed,
            "train_seed": self.train_seed,
            "recipe": self.recipe,
        }

    def build(self, context: WorkerContext) -> torch.nn.Module:
        """The member's initial weights (``init_seed``)."""
        pop = context.population
        return build_model(
            self.model_name, pop.input_shape, pop.num_outputs, self.init_seed, **self.model_options
        )

    def run(self, context: WorkerContext) -> float:
        pop = context.population
        data = pop.subset(np.sort(self.train_ids), name=f"{pop.name}:shadow{self.index}")
        try:
            result = training.train(self.build(context), data, self.recipe, seed=self.train_seed)
        except NumericalError as err:
            if not self.keep_diverged:
                raise
            self.save(self.build(context), 0.0, context, {"diverged": str(err)})
            return 0.0
        self.save(result.model, result.seconds, context)
        return result.seconds

    def save(
        self,
        model: torch.nn.Module,
        seconds: float,
        context: WorkerContext,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Write the weights, then the manifest (with the test accuracy when ``context``
        has a test set); ``extra`` adds facts such as the trainer or a divergence."""
        model = model.cpu()
        test_acc = (
            evaluate_accuracy(model, context.test)
            if context.test is not None and len(context.test)
            else None
        )
        save_model(
            self.folder / self.stem,
            model,
            manifest={
                "job_key": self.key,
                "pool_key": self.pool_key,
                "index": self.index,
                "train_ids_hash": ids_hash(self.train_ids),
                "n_train": int(self.train_ids.size),
                "init_seed": self.init_seed,
                "train_seed": self.train_seed,
                "recipe": self.recipe,
                "seconds": seconds,
                "test_accuracy": test_acc,
                **(extra or {}),
            },
        )

    def manifest(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest_path.read_text()))

    def load(self) -> torch.nn.Module:
        """The trained member (checksums verified by :func:`unlearnkit.artifacts.load_model`)."""
        if not self.done():
            raise StateMismatchError(f"pool member {self.manifest_path} is missing or stale")
        model, _ = load_model(self.folder / self.stem)
        return model


@dataclass
class BatchTrainJob(Job):
    """Several :class:`TrainJob` members of one pool trained together by
    :func:`~unlearnkit.training.batched.train_many` (one vmapped SGD over K copies).

    Each member is saved as its own :class:`TrainJob` (same files, key and manifest, plus
    ``trainer``), so later pools and audits reuse it one by one. When ``train_many`` does not
    support the model or recipe (BatchNorm, augmentations, ``drop_last``, another optimiser,
    a non-CPU device, lazily loaded data) or a copy diverges, the chunk's members are trained
    one by one with :meth:`TrainJob.run` (which isolates a diverging member). Both ways give
    the same model up to floating-point reduction order (``train_many``'s contract).
    """

    folder: Path
    index: int
    members: list[TrainJob]

    @property
    def key(self) -> str:
        return content_key("members", members=[m.key for m in self.members])

    @property
    def stem(self) -> str:
        return self.members[0].stem if self.members else f"b{self.index:04d}"

    @property
    def device(self) -> str:
        return self.members[0].device if self.members else "cpu"

    def inputs(self) -> dict[str, Any]:
        return {**super().inputs(), "members": [m.key for m in self.members]}

    def done(self) -> bool:
        return all(m.done() for m in self.members)

    def _batched(self, context: WorkerContext) -> float:
        todo = [m for m in self.members if not m.done()]
        first = todo[0]
        recipe = make_recipe(first.recipe)
        pop = context.population
        if (
            getattr(recipe, "name", None) != "sgd"
            or str(first.recipe.get("device") or "cpu") != "cpu"
            or not hasattr(pop, "x")
            or len({(m.model_name, json.dumps(m.model_options, sort_keys=True)) for m in todo}) > 1
            or len({m.train_seed for m in todo}) != len(todo)
        ):
            raise UnsupportedError("not a train_many chunk")
        init_of = {m.train_seed: m for m in todo}
        t0 = time.perf_counter()
        fit = train_many(
            lambda seed: init_of[seed].build(context),
            pop,
            [torch.as_tensor(np.sort(m.train_ids)) for m in todo],
            [m.train_seed for m in todo],
            recipe,  # type: ignore[arg-type]
        )
        seconds = (time.perf_counter() - t0) / len(todo)  # the batch's time, shared
        for m, model in zip(todo, fit.models, strict=True):
            m.save(model, seconds, context, {"trainer": "train_many", "batch": len(todo)})
        return seconds

    def run(self, context: WorkerContext) -> float:
        t0 = time.perf_counter()
        try:
            self._batched(context)
        except (UnsupportedError, NumericalError):
            for m in self.members:
                if not m.done():
                    m.run(context)
        return time.perf_counter() - t0


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
            "unlearned",
            original=self.original.key,
            method=self.method,
            config=self.config,
            seed=self.seed,
            retain_ids=ids_hash(self.retain_ids),
            forget_ids=ids_hash(self.forget_ids),
        )

    @property
    def stem(self) -> str:
        return f"u{self.index:04d}"

    @property
    def device(self) -> str:
        return "cpu"  # Unlearner.unlearn's default device

    def inputs(self) -> dict[str, Any]:
        return {
            **super().inputs(),
            "original": self.original.key,
            "method": self.method,
            "config": self.config,
            "seed": self.seed,
            "n_forget": int(self.forget_ids.size),
        }

    def run(self, context: WorkerContext) -> float:
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
