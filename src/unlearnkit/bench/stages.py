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
``ulira``      dataset x model x shadow split (optional)       split, model, recipe, method configs
``ulira_eval`` dataset x model (in the driver)                 the ulira keys, fit options
=============  ==============================================  ====================================

Keys chain: a stage's key contains its inputs' keys, so changing anything upstream (a recipe,
a seed) gives new keys downstream, and nothing finished is ever recomputed. The planner of a
stage reads the results of the stages before it (e.g. input shapes, chosen configs), which is
why stages run one after the other. Planning is deterministic given the store, so the report
re-plans the experiment to find exactly the runs that belong to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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

    @property
    def threads(self) -> int:
        return self.exp.executor.threads

    def settings(self) -> list[tuple[DatasetConfig, ModelConfig]]:
        return [(d, m) for d in self.exp.datasets for m in self.exp.models]

    # ------------------------------------------------------------------ keys

    def split_key(self, d: DatasetConfig, seed: int) -> str:
        ident = d.model_dump(mode="json", exclude={"label", "training"})
        return content_key(
            "split", dataset=ident, forget=self.exp.forget,
            forget_seed=self.exp.forget_seed_for(seed),
        )  # fmt: skip

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
        import unlearnkit.methods.catalog  # noqa: F401
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

    def ulira_rows(self, d: DatasetConfig, m: ModelConfig) -> dict[str, dict[str, Any] | None]:
        assert self.exp.ulira is not None
        return {name: self.chosen_config(d, m, name) for name in self.exp.ulira.methods}

    def ulira_key(self, d: DatasetConfig, m: ModelConfig, index: int) -> str:
        u = self.exp.ulira
        assert u is not None
        return content_key(
            "ulira",
            split=self.split_key(d, u.model_seed),
            model={"name": m.name, "options": m.options},
            recipe=self.exp.recipe_for(d),
            train_seed=self.exp.train_seed,
            unlearn_seed=self.exp.unlearn_seed,
            rows=self.ulira_rows(d, m),
            index=index,
            ulira=u.model_dump(exclude={"methods", "targets", "splits", "std_floor"}),
            device=self.exp.device,
        )

    def ulira_eval_key(self, d: DatasetConfig, m: ModelConfig) -> str:
        u = self.exp.ulira
        assert u is not None
        return content_key(
            "ulira_eval",
            runs=[self.ulira_key(d, m, i) for i in range(u.splits)],
            targets=u.targets,
            std_floor=u.std_floor,
        )

    # ------------------------------------------------------------------ helpers

    def split_facts(self, d: DatasetConfig, seed: int) -> dict[str, Any]:
        return self.store.params(self.split_key(d, seed))

    def task(
        self, stage: str, key: str, labels: dict[str, Any], payload: dict[str, Any],
        deps: list[str] | tuple[str, ...] = (),
    ) -> Task:  # fmt: skip
        payload = {"device": self.exp.device, **payload}
        return Task(stage, key, labels, payload, str(self.root), tuple(deps), self.threads)


def _labels(
    d: DatasetConfig, m: ModelConfig | None = None, method: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    return {"dataset": d.tag, "model": m.tag if m else None, "method": method, "seed": seed}


# ---------------------------------------------------------------------- planners


def plan_split(ctx: Context) -> list[Task]:
    tasks: dict[str, Task] = {}
    for d in ctx.exp.datasets:
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
                        "evaluate", key, _labels(d, m, row, seed), payload,
                        sorted({model, o, r, split}),
                    )  # fmt: skip
                )
    return tasks


def plan_ulira(ctx: Context) -> list[Task]:
    u = ctx.exp.ulira
    if u is None:
        return []
    tasks = []
    for d, m in ctx.settings():
        rows = ctx.ulira_rows(d, m)
        split = ctx.split_key(d, u.model_seed)
        facts = ctx.split_facts(d, u.model_seed)
        # methods unsupported in this setting simply drop out of the U-LiRA rows
        selects = [
            k
            for k in (ctx.select_key(d, m, name) for name in rows)
            if ctx.store.status(k) != "unsupported"
        ]
        for i in range(u.splits):
            payload = {
                "split": f"splits/{split}",
                "model": m.model_dump(mode="json"),
                "input_shape": facts.get("input_shape"),
                "num_outputs": facts.get("num_outputs"),
                "model_seed": u.model_seed,
                "recipe": ctx.exp.recipe_for(d),
                "train_seed": ctx.exp.train_seed,
                "unlearn_seed": ctx.exp.unlearn_seed,
                "rows": {k: v for k, v in rows.items() if v is not None},
                "split_index": i,
                "seed_base": u.seed_base,
                "forget_fraction": u.forget_fraction,
            }
            key = ctx.ulira_key(d, m, i)
            tasks.append(
                ctx.task("ulira", key, _labels(d, m, None, i), payload, [split, *selects])
            )
    return tasks


def plan_ulira_eval(ctx: Context) -> list[Task]:
    u = ctx.exp.ulira
    if u is None:
        return []
    tasks = []
    for d, m in ctx.settings():
        runs = [ctx.ulira_key(d, m, i) for i in range(u.splits)]
        payload = {
            "runs": [f"ulira/{k}.safetensors" for k in runs],
            "targets": u.targets,
            "std_floor": u.std_floor,
        }
        key = ctx.ulira_eval_key(d, m)
        tasks.append(ctx.task("ulira_eval", key, _labels(d, m), payload, runs))
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
        metrics={"score": best.score, **dict(zip(("o_ra", "o_fa", "o_va", "o_indisc"), best.values, strict=True))},
    )


@INLINE.register("ulira_eval")
def ulira_eval_inline(task: Task, ctx: Context) -> Output:
    """Hayes-style U-LiRA over the shadow splits (:func:`unlearnkit.evaluation.evaluate_ulira`).

    Fit on the first ``splits - targets`` splits, attack the last ``targets`` (held out);
    only examples with at least 2 IN and 2 OUT shadow models are scored. Online
    likelihood-ratio test, per-example or global σ (LiRA's ``auto`` rule), σ floored.
    """
    import numpy as np

    from unlearnkit.evaluation import LiraFitConfig, evaluate_ulira
    from unlearnkit.evaluation.ulira import examples_with_support
    from unlearnkit.io import atomic_write_json, load_tensors

    p = task.payload
    runs = [load_tensors(ctx.root / rel) for rel in p["runs"]]
    in_mask = np.stack([r["in_mask"].numpy() for r in runs])
    out_mask = np.stack([r["out_mask"].numpy() for r in runs])
    n_models = len(runs)
    targets = list(range(n_models - int(p["targets"]), n_models))
    shadow = np.setdiff1d(np.arange(n_models), targets)
    support = examples_with_support(in_mask[shadow], out_mask[shadow], 2)
    rows = sorted(set.intersection(*(set(k[4:] for k in r if k.startswith("phi.")) for r in runs)))
    metrics: dict[str, float] = {"examples": float(support.sum())}
    curves: dict[str, dict[str, list[float]]] = {}
    cfg = LiraFitConfig(std_floor=float(p["std_floor"]))
    for row in rows:
        stat = np.stack([r[f"phi.{row}"].numpy() for r in runs])[:, support]
        res = evaluate_ulira(
            stat, in_mask[:, support], out_mask[:, support], target_models=targets, config=cfg
        )
        for name, value in res.metrics.as_dict().items():
            if not isinstance(value, bool):
                metrics[f"{row}.{name}"] = float(value)
        curves[row] = {"fpr": res.metrics.fpr.tolist(), "tpr": res.metrics.tpr.tolist()}
    rel = f"ulira/{task.key}.json"
    atomic_write_json(ctx.root / rel, curves)
    return Output(params={"rows": rows}, metrics=metrics, artifact=rel)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its planner, and whether it runs in the driver."""

    name: str
    plan: Callable[[Context], list[Task]]
    inline: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("split", plan_split),
    Stage("init", plan_init),
    Stage("train", plan_train),
    Stage("search", plan_search),
    Stage("select", plan_select, inline=True),
    Stage("unlearn", plan_unlearn),
    Stage("evaluate", plan_evaluate),
    Stage("ulira", plan_ulira),
    Stage("ulira_eval", plan_ulira_eval, inline=True),
)
