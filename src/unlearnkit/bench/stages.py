"""The pipeline: stages, their content keys, and the tasks each stage plans.

=============  ==============================================  ====================================
stage          one run per                                     key covers
=============  ==============================================  ====================================
``split``      dataset x forget seed                           dataset, split fractions/seed, forget
``init``       dataset x model x seed                          dataset, model + options, seed
``train``      dataset x model x seed x {original, retrain}    split, init, recipe, train seed, device
``search``     dataset x model x method x search seed          O and R keys, space, budget, seeds
``select``     dataset x model x method (in the driver)        the search keys (or the defaults)
``unlearn``    dataset x model x method x seed                 O key, chosen config, seed, device
``evaluate``   every model above (O, R, each method, seed)     model key, O/R keys, metric names
``ulira``      dataset x model (optional)                      audit config, chosen method configs
=============  ==============================================  ====================================

Keys chain: a stage's key contains its inputs' keys, so changing anything upstream (a recipe,
a seed) gives new keys downstream, and nothing finished is ever recomputed. The planner of a
stage reads the results of the stages before it (e.g. input shapes, chosen configs), which is
why stages run one after the other. Planning is deterministic given the store, so the report
re-plans the experiment to find exactly the runs that belong to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from unlearnkit.bench.config import (
    REFERENCE_ROWS,
    DatasetConfig,
    Experiment,
    ModelConfig,
)
from unlearnkit.bench.keys import content_key
from unlearnkit.bench.store import Store
from unlearnkit.bench.tasks import Output, Task
from unlearnkit.registry import Registry


@dataclass
class Context:
    """What planners and driver-side stages need: the experiment, directory and store."""

    exp: Experiment
    root: Path
    store: Store
    storage: str
    only: tuple[DatasetConfig, ModelConfig] | None = None

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
            train_seed=self.exp.train_seed,
            device=self.exp.device,
        )

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
        import unlearnkit.methods  # noqa: F401
        from unlearnkit.methods import METHODS

        if self.exp.search.trials == 0 or not self.exp.method(method).search:
            return False
        return bool(METHODS.get(method)().search_space(10))

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


def _labels(
    d: DatasetConfig,
    m: ModelConfig | None = None,
    method: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    return {"dataset": d.tag, "model": m.tag if m else None, "method": method, "seed": seed}


# ---------------------------------------------------------------------- planners


def plan_split(ctx: Context) -> list[Task]:
    tasks: dict[str, Task] = {}
    for d in ctx.datasets():
        for seed in ctx.exp.model_seeds():
            key = ctx.split_key(d, seed)
            payload = {
                "dataset": d.model_dump(mode="json"),
                "forget": ctx.exp.forget,
                "forget_seed": ctx.exp.forget_seed_for(seed),
            }
            tasks.setdefault(key, ctx.task("split", key, _labels(d), payload))
    return list(tasks.values())


def plan_init(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for seed in ctx.exp.model_seeds():
            facts = ctx.split_facts(d, seed)
            payload = {
                "model": m.model_dump(mode="json"),
                "seed": seed,
                "input_shape": facts.get("input_shape"),
                "num_outputs": facts.get("num_outputs"),
            }
            key = ctx.init_key(d, m, seed)
            tasks.append(
                ctx.task("init", key, _labels(d, m, None, seed), payload, [ctx.split_key(d, seed)])
            )
    return tasks


def plan_train(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for seed in ctx.exp.model_seeds():
            for role in REFERENCE_ROWS:
                split, init = ctx.split_key(d, seed), ctx.init_key(d, m, seed)
                payload = {
                    "role": role,
                    "split": f"splits/{split}",
                    "init": f"models/{init}",
                    "recipe": ctx.exp.recipe_for(d),
                    "train_seed": ctx.exp.train_seed,
                }
                key = ctx.train_key(d, m, seed, role)
                tasks.append(
                    ctx.task("train", key, _labels(d, m, role, seed), payload, [split, init])
                )
    return tasks


def plan_search(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for method in ctx.exp.method_names():
            if not ctx.searched(method):
                continue
            for seed in ctx.exp.search_seeds():
                o, r = (ctx.train_key(d, m, seed, role) for role in REFERENCE_ROWS)
                split = ctx.split_key(d, seed)
                payload = {
                    "method": method,
                    "fixed": ctx.exp.method(method).config,
                    "max_epochs": ctx.exp.max_epochs_for(d),
                    "split": f"splits/{split}",
                    "original": f"models/{o}",
                    "retrain": f"models/{r}",
                    "study": ctx.study_name(d, m, method, seed),
                    "storage": ctx.storage,
                    "search": ctx.exp.search.model_dump(mode="json"),
                    "seed": seed,
                    "unlearn_seed": ctx.exp.unlearn_seed,
                }
                key = ctx.search_key(d, m, method, seed)
                tasks.append(
                    ctx.task("search", key, _labels(d, m, method, seed), payload, [split, o, r])
                )
    return tasks


def plan_select(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for method in ctx.exp.method_names():
            searched = ctx.searched(method)
            deps = (
                [ctx.search_key(d, m, method, s) for s in ctx.exp.search_seeds()]
                if searched
                else []
            )
            payload = {
                "method": method,
                "fixed": ctx.exp.method(method).config,
                "studies": [ctx.study_name(d, m, method, s) for s in ctx.exp.search_seeds()]
                if searched
                else [],
            }
            key = ctx.select_key(d, m, method)
            tasks.append(ctx.task("select", key, _labels(d, m, method), payload, deps))
    return tasks


def plan_unlearn(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for method in ctx.exp.method_names():
            config = ctx.chosen_config(d, m, method)
            for seed in ctx.exp.seeds:
                o, split = ctx.train_key(d, m, seed, "original"), ctx.split_key(d, seed)
                payload = {
                    "method": method,
                    "config": config,
                    "split": f"splits/{split}",
                    "original": f"models/{o}",
                    "unlearn_seed": ctx.exp.unlearn_seed,
                }
                deps = [ctx.select_key(d, m, method), o, split]
                key = ctx.unlearn_key(d, m, method, seed)
                tasks.append(ctx.task("unlearn", key, _labels(d, m, method, seed), payload, deps))
    return tasks


def plan_evaluate(ctx: Context) -> list[Task]:
    tasks = []
    for d, m in ctx.settings():
        for row in ctx.rows():
            for seed in ctx.exp.seeds:
                model = ctx.model_key(d, m, row, seed)
                o, r = (ctx.train_key(d, m, seed, role) for role in REFERENCE_ROWS)
                split = ctx.split_key(d, seed)
                payload = {
                    "model": f"models/{model}",
                    "original": f"models/{o}",
                    "retrain": f"models/{r}",
                    "split": f"splits/{split}",
                    "metrics": ctx.exp.metrics,
                }
                key = ctx.evaluate_key(d, m, row, seed)
                tasks.append(
                    ctx.task(
                        "evaluate",
                        key,
                        _labels(d, m, row, seed),
                        payload,
                        sorted({model, o, r, split}),
                    )
                )
    return tasks


def plan_ulira(ctx: Context) -> list[Task]:
    u = ctx.exp.ulira
    if u is None:
        return []
    tasks = []
    for d, m in ctx.settings():
        rows = ctx.ulira_rows(d, m)
        # methods unsupported in this setting drop out of the rows; failed selects block
        deps = [
            k
            for k in (ctx.select_key(d, m, name) for name in u.methods)
            if ctx.store.status(k) != "unsupported"
        ]
        payload = {"audit": ctx.audit_config(d, m), "rows": rows, "cache": "ulira"}
        key = ctx.ulira_key(d, m)
        tasks.append(ctx.task("ulira", key, _labels(d, m), payload, deps))
    return tasks


# ---------------------------------------------------------------------- driver-side stages

#: Stages that run in the driver (cheap; they read Optuna or several artifacts).
INLINE: Registry[Callable[[Task, Context], Output]] = Registry("driver-side stage")


@INLINE.register("select")
def select_inline(task: Task, ctx: Context) -> Output:
    """Min-L2 selection over the method's studies; the defaults when nothing was searched."""
    from unlearnkit.bench.search import make_storage, select_best, trial_config

    p = task.payload
    if not p["studies"]:
        return Output(params={"config": p["fixed"], "source": "defaults"})
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    storage = make_storage(ctx.storage)
    studies = [
        optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)
        for name in p["studies"]
    ]
    best = select_best(studies, ctx.exp.search.trials)
    if best is None:
        raise RuntimeError(f"no COMPLETE trial in the studies of {p['method']}")
    return Output(
        params={
            "config": trial_config(p["fixed"], best.params),
            "source": "search",
            "searched": best.params,
            "study": p["studies"][best.study],
            "trial": best.trial,
        },
        metrics={
            "score": best.score,
            **dict(zip(("o_ra", "o_fa", "o_va", "o_indisc"), best.values, strict=True)),
        },
    )


def prepare_search(ctx: Context) -> None:
    """Create the Optuna storage's schema once, in the driver: workers creating it at the
    same time race (``table studies already exists``)."""
    from unlearnkit.bench.search import make_storage

    make_storage(ctx.storage)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its planner, whether it runs in the driver, and a hook the driver
    calls before running any of its tasks."""

    name: str
    plan: Callable[[Context], list[Task]]
    inline: bool = False
    prepare: Callable[[Context], None] | None = None


STAGES: tuple[Stage, ...] = (
    Stage("split", plan_split),
    Stage("init", plan_init),
    Stage("train", plan_train),
    Stage("search", plan_search, prepare=prepare_search),
    Stage("select", plan_select, inline=True),
    Stage("unlearn", plan_unlearn),
    Stage("evaluate", plan_evaluate),
    Stage("ulira", plan_ulira),
)
