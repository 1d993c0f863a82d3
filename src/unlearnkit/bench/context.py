"""What the planners and the driver-side stages see: the experiment, the benchmark folder,
the store, and every stage's content key (:class:`Context`).

Keys chain: a stage's key contains its inputs' keys, so changing anything upstream (a recipe,
a seed) gives new keys downstream, and nothing finished is ever recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import unlearnkit.methods  # noqa: F401  (registers the methods)
from unlearnkit.bench.config import REFERENCE_ROWS, DatasetConfig, Experiment, ModelConfig
from unlearnkit.bench.tasks import Task
from unlearnkit.jobs.executors import Executor
from unlearnkit.jobs.keys import content_key
from unlearnkit.jobs.store import Store
from unlearnkit.methods import METHODS


def default_storage(out: Path) -> str:
    """``sqlite:///DIR/optuna.db`` (absolute path)."""
    return f"sqlite:///{(out / 'optuna.db').resolve()}"


@dataclass
class Context:
    """What planners and driver-side stages need: the experiment, directory and store."""

    exp: Experiment
    root: Path
    store: Store
    storage: str
    only: tuple[DatasetConfig, ModelConfig] | None = None
    #: the driver's executor, for driver-side stages that schedule jobs (the U-LiRA pools)
    executor: Executor | None = None

    @property
    def threads(self) -> int:
        return self.exp.executor.threads

    def settings(self) -> list[tuple[DatasetConfig, ModelConfig]]:
        """Every dataset x model, or just ``only`` (see :meth:`restricted`)."""
        if self.only is not None:
            return [self.only]
        return [(d, m) for d in self.exp.datasets for m in self.exp.models]

    def datasets(self) -> list[DatasetConfig]:
        return list({d.tag: d for d, _ in self.settings()}.values())

    def restricted(self, d: DatasetConfig, m: ModelConfig) -> Context:
        """The same context planning one setting only (the driver runs settings in turn)."""
        return replace(self, only=(d, m))

    # ------------------------------------------------------------------ keys

    def split_key(self, d: DatasetConfig, seed: int) -> str:
        ident = d.model_dump(mode="json", exclude={"label", "training"})
        return content_key(
            "split",
            dataset=ident,
            forget=self.exp.forget,
            forget_seed=self.exp.forget_seed_for(seed),
        )

    def init_key(self, d: DatasetConfig, m: ModelConfig, seed: int) -> str:
        return content_key(
            "init",
            dataset={"name": d.name, "params": d.params},
            model={"name": m.name, "options": m.options},
            seed=seed,
        )

    def train_key(self, d: DatasetConfig, m: ModelConfig, seed: int, role: str) -> str:
        return content_key(
            "train",
            role=role,
            split=self.split_key(d, seed),
            init=self.init_key(d, m, seed),
            recipe=self.exp.recipe_for(d),
            train_seed=self.exp.train_seed_for(seed),
            device=self.exp.device,
            vetting=self.vetting(seed, role),
        )

    def vetting(self, seed: int, role: str) -> dict[str, Any]:
        """How the train run of ``seed``/``role`` checks and replaces a model that did not
        train (:mod:`unlearnkit.bench.vetting`), with the injected fault that applies to it."""
        r = self.exp.references
        out: dict[str, Any] = {"min_gain": r.min_gain, "replacements": r.replacements}
        for fault in r.inject:
            if fault.seed == seed and fault.role == role:
                out["inject"] = fault.training
        return out

    def study_name(self, d: DatasetConfig, m: ModelConfig, method: str, seed: int) -> str:
        s = self.exp.search
        key = content_key(
            "study",
            method=method,
            fixed=self.exp.method(method).config,
            max_epochs=self.exp.max_epochs_for(d),
            original=self.train_key(d, m, seed, "original"),
            retrain=self.train_key(d, m, seed, "retrain"),
            sampler=s.sampler,
            population=s.population_size,
            prune=s.prune,  # pruned trials are marked in the study: another rule, another study
            seed=seed,
            unlearn_seed=self.exp.unlearn_seed,
        )
        return f"{d.tag}/{m.tag}/{method}/seed{seed}/{key}"

    def search_key(self, d: DatasetConfig, m: ModelConfig, method: str, seed: int) -> str:
        s = self.exp.search
        return content_key(
            "search",
            study=self.study_name(d, m, method, seed),
            trials=s.trials,
            max_failed=s.max_failed,
        )

    def searched(self, method: str) -> bool:
        """Whether ``method`` gets a search (budget, flag, and a non-empty space)."""
        if self.exp.search.trials == 0 or not self.exp.method(method).search:
            return False
        return bool(METHODS.get(self.exp.method(method).name)().search_space(10))

    def select_key(self, d: DatasetConfig, m: ModelConfig, method: str) -> str:
        if self.searched(method):
            studies = [self.search_key(d, m, method, s) for s in self.exp.search_seeds()]
            return content_key("select", studies=studies, trials=self.exp.search.trials)
        return content_key("select", method=method, defaults=self.exp.method(method).config)

    def chosen_config(self, d: DatasetConfig, m: ModelConfig, method: str) -> dict[str, Any] | None:
        """The selected configuration (``None`` until the select run is done)."""
        key = self.select_key(d, m, method)
        if self.store.status(key) != "done":
            return None
        return dict(self.store.params(key)["config"])

    def unlearn_key(self, d: DatasetConfig, m: ModelConfig, method: str, seed: int) -> str:
        config = self.chosen_config(d, m, method)
        return content_key(
            "unlearn",
            method=method,
            config=config if config is not None else {"pending": self.select_key(d, m, method)},
            original=self.train_key(d, m, seed, "original"),
            split=self.split_key(d, seed),
            unlearn_seed=self.exp.unlearn_seed,
            device=self.exp.device,
        )

    def model_key(self, d: DatasetConfig, m: ModelConfig, row: str, seed: int) -> str:
        """The run that produced the model of ``row`` (a method, original or retrain)."""
        if row in REFERENCE_ROWS:
            return self.train_key(d, m, seed, row)
        return self.unlearn_key(d, m, row, seed)

    def evaluate_key(self, d: DatasetConfig, m: ModelConfig, row: str, seed: int) -> str:
        return content_key(
            "evaluate",
            model=self.model_key(d, m, row, seed),
            original=self.train_key(d, m, seed, "original"),
            retrain=self.train_key(d, m, seed, "retrain"),
            metrics=self.exp.metrics,
            device=self.exp.device,
        )

    def rows(self) -> list[str]:
        """Report rows: the references, then the methods in experiment order."""
        return list(REFERENCE_ROWS) + self.exp.method_names()

    def ulira_rows(self, d: DatasetConfig, m: ModelConfig) -> dict[str, dict[str, Any]]:
        """Audited rows and configs: O, R, then each U-LiRA method whose select is done."""
        assert self.exp.ulira is not None
        rows: dict[str, dict[str, Any]] = {"original": {}, "retrain": {}}
        for name in self.exp.ulira.methods:
            config = self.chosen_config(d, m, name)
            if config is not None:
                rows[name] = config
        return rows

    def audit_config(self, d: DatasetConfig, m: ModelConfig) -> dict[str, Any]:
        """The :class:`~unlearnkit.evaluation.audit.AuditConfig` of one setting (as a dict)."""
        u = self.exp.ulira
        assert u is not None
        recipe = {k: v for k, v in self.exp.recipe_for(d).items() if k != "device"}
        return {
            "dataset": d.name,
            "dataset_params": d.params,
            "val_fraction": d.val_fraction,
            "test_fraction": d.test_fraction,
            "split_seed": d.split_seed,
            "model": m.name,
            "model_options": m.options,
            "recipe": {**recipe, "device": None if self.exp.device == "auto" else self.exp.device},
            "scheme": u.scheme,
            "shadows": u.shadows,
            "seed": u.seed,
            "target_fraction": u.target_fraction,
            "forget_fraction": u.forget_fraction,
            "unlearn_seed": self.exp.unlearn_seed,
            "workers": u.workers,
            "threads": self.threads,
        }

    def ulira_key(self, d: DatasetConfig, m: ModelConfig) -> str:
        audit = {
            k: v for k, v in self.audit_config(d, m).items() if k not in ("workers", "threads")
        }
        return content_key("ulira", audit=audit, rows=self.ulira_rows(d, m))

    # ------------------------------------------------------------------ helpers

    def split_facts(self, d: DatasetConfig, seed: int) -> dict[str, Any]:
        return self.store.params(self.split_key(d, seed))

    def task(
        self,
        stage: str,
        key: str,
        labels: dict[str, Any],
        payload: dict[str, Any],
        deps: list[str] | tuple[str, ...] = (),
    ) -> Task:
        payload = {"device": self.exp.device, **payload}
        return Task(stage, key, labels, payload, str(self.root), tuple(deps), self.threads)


def make_context(exp: Experiment, out: Path, store: Store, storage: str | None = None) -> Context:
    """The context of ``exp`` in folder ``out`` (Optuna storage: given, configured or default)."""
    return Context(exp, out, store, storage or exp.search.storage or default_storage(out))
