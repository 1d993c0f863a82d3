"""The members of the audit's pools: a shadow model trained on given ids (:class:`TrainJob`),
and a trained member unlearned by a method (:class:`UnlearnJob`, whose logits on the
population are kept). Each is a :class:`~unlearnkit.jobs.pools.Job`: a content key, its files,
and how to produce itself in a worker (:func:`~unlearnkit.jobs.pools.run_member`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import unlearnkit.methods  # noqa: F401  (registers the methods)
from unlearnkit import training
from unlearnkit.artifacts import load_model, save_model
from unlearnkit.errors import StateMismatchError
from unlearnkit.io import atomic_write_json, ids_hash, load_tensors, save_tensors
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.pools import Job, WorkerContext
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.models import build_model
from unlearnkit.training import evaluate_accuracy, predict_logits

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

    def run(self, context: WorkerContext) -> float:
        pop = context.population
        init = build_model(
            self.model_name, pop.input_shape, pop.num_outputs, self.init_seed, **self.model_options
        )
        data = pop.subset(np.sort(self.train_ids), name=f"{pop.name}:shadow{self.index}")
        result = training.train(init, data, self.recipe, seed=self.train_seed)
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
