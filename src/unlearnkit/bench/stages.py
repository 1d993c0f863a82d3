"""The pipeline: stages, their content keys, and the tasks each stage plans.

=============  ==============================================  ====================================
stage          one run per                                     key covers
=============  ==============================================  ====================================
``split``      dataset x forget seed                           dataset, split fractions/seed, forget
``init``       dataset x model x seed                          dataset, model + options, seed
``train``      dataset x model x seed x {original, retrain}    split, init, recipe, train seed, vetting
``search``     dataset x model x method x search seed          O and R keys, space, budget, seeds
``select``     dataset x model x method (in the driver)        the search keys (or the defaults)
``unlearn``    dataset x model x method x seed                 O key, chosen config, seed, device
``evaluate``   every model above (O, R, each method, seed)     model key, O/R keys, metric names
``ulira``      dataset x model (in the driver; optional)       audit config, chosen method configs
=============  ==============================================  ====================================

The keys are built by :class:`~unlearnkit.bench.context.Context`, the tasks by the planners
(:mod:`unlearnkit.bench.planners`); this module lists the stages in order and holds the
driver-side ones. The U-LiRA stage runs in the driver and schedules its pool members as jobs
on the driver's executor (:mod:`unlearnkit.jobs.pools`).

Keys chain: a stage's key contains its inputs' keys, so changing anything upstream (a recipe,
a seed) gives new keys downstream, and nothing finished is ever recomputed. The planner of a
stage reads the results of the stages before it (e.g. input shapes, chosen configs), which is
why stages run one after the other. Planning is deterministic given the store, so the report
re-plans the experiment to find exactly the runs that belong to it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import optuna

from unlearnkit.bench.context import Context
from unlearnkit.bench.oracles import oracles_inline, plan_klom, plan_oracles
from unlearnkit.bench.planners import (
    plan_evaluate,
    plan_init,
    plan_search,
    plan_select,
    plan_split,
    plan_train,
    plan_ulira,
    plan_unlearn,
)
from unlearnkit.bench.search import make_storage, select_best
from unlearnkit.bench.tasks import Output, Task
from unlearnkit.bench.trials import trial_config
from unlearnkit.errors import UnsupportedError
from unlearnkit.evaluation import AuditConfig, Auditor
from unlearnkit.io import atomic_write_json
from unlearnkit.jobs.pools import JobTracking
from unlearnkit.registry import Registry

# ---------------------------------------------------------------------- driver-side stages

#: Stages that run in the driver (cheap; they read Optuna or several artifacts).
INLINE: Registry[Callable[[Task, Context], Output]] = Registry("driver-side stage")


@INLINE.register("select")
def select_inline(task: Task, ctx: Context) -> Output:
    """Min-L2 selection over the method's studies; the defaults when nothing was searched."""
    p = task.payload
    if not p["studies"]:
        return Output(params={"config": p["fixed"], "source": "defaults"})
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
    make_storage(ctx.storage)


@INLINE.register("ulira")
def ulira_inline(task: Task, ctx: Context) -> Output:
    """U-LiRA audits of one setting (:class:`unlearnkit.evaluation.Auditor`), in the driver.

    The shadow originals, retrains and unlearned models are jobs of the driver's executor
    (inline, local processes or Ray), each recorded as a ``ulira`` run of the store (labels:
    the pool as ``method``, the member index as ``seed``) and cached by content under
    ``DIR/<cache>``, so an interrupted audit resumes with the members it has. Stores, per
    row, the attack metrics (AUC, balanced accuracy, TPR at low FPR) and the pooled ROC curve
    (``ulira/<key>.json``).
    """
    p = task.payload
    tracking = JobTracking(
        ctx.store, "ulira", {k: task.labels.get(k) for k in ("dataset", "model")}
    )
    auditor = Auditor(
        AuditConfig.model_validate(p["audit"]),
        task.path(p["cache"]),
        executor=ctx.executor,
        tracking=tracking,
    )
    metrics: dict[str, float] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    unsupported: list[str] = []
    t0 = time.perf_counter()
    for row, config in p["rows"].items():
        try:
            res = auditor.audit(row, config or None)
        except UnsupportedError:
            unsupported.append(row)
            continue
        for name, value in res.outcome.metrics.as_dict().items():
            if not isinstance(value, bool):
                metrics[f"{row}.{name}"] = float(value)
        metrics[f"{row}.FA"] = res.accuracy["forget"]
        metrics[f"{row}.TA"] = res.accuracy["test"]
        curves[row] = {
            "fpr": res.outcome.metrics.fpr.tolist(),
            "tpr": res.outcome.metrics.tpr.tolist(),
        }
        metrics["targets"] = float(res.target_ids.size)
    rel = f"ulira/{task.key}.json"
    atomic_write_json(task.path(rel), curves)
    return Output(
        params={"rows": sorted(curves), "unsupported": unsupported},
        metrics=metrics,
        timings={"audit": time.perf_counter() - t0},
        artifact=rel,
    )


INLINE.register("oracles")(oracles_inline)


@dataclass(frozen=True)
class Stage:
    """A pipeline stage: its planner, whether it runs in the driver (and then whether it
    schedules jobs on the driver's executor), and a hook the driver calls before running any
    of its tasks."""

    name: str
    plan: Callable[[Context], list[Task]]
    inline: bool = False
    prepare: Callable[[Context], None] | None = None
    schedules_jobs: bool = False


STAGES: tuple[Stage, ...] = (
    Stage("split", plan_split),
    Stage("init", plan_init),
    Stage("train", plan_train),
    Stage("oracles", plan_oracles, inline=True, schedules_jobs=True),
    Stage("search", plan_search, prepare=prepare_search),
    Stage("select", plan_select, inline=True),
    Stage("unlearn", plan_unlearn),
    Stage("evaluate", plan_evaluate),
    Stage("klom", plan_klom),
    Stage("ulira", plan_ulira, inline=True, schedules_jobs=True),
)
