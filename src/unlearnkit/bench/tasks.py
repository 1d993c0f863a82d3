"""Worker side: one function per stage, in the registry :data:`TASKS`.

A :class:`Task` is plain data (picklable for process pools and Ray): the stage, the run key,
labels for the store, a payload, and the benchmark directory. :func:`execute` runs it in the
worker: it sets the torch thread count, records the environment, times the work and maps
errors to a status (``unsupported`` for :class:`~unlearnkit.errors.UnsupportedError`,
``failed`` with the traceback otherwise). Artifacts are written atomically under the benchmark
directory before the result is returned, and the driver marks the run done only after that.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from typing import Any

import optuna
import torch

import unlearnkit.bench.oracle_audit  # noqa: F401  (registers the KLoM stage, also in workers)
import unlearnkit.methods  # noqa: F401  (registers the methods)
from unlearnkit import api as uk
from unlearnkit.artifacts import load_model, save_model
from unlearnkit.bench.config import DatasetConfig, ModelConfig, SearchConfig
from unlearnkit.bench.evaluate import evaluate_model, search_metrics
from unlearnkit.bench.pruning import PruneRule, constant_accuracy, objectives
from unlearnkit.bench.search import make_storage, open_study, run_study, sampler_seed
from unlearnkit.bench.splits import make_split, read_split, write_split
from unlearnkit.bench.task_registry import TASKS, Output, Task
from unlearnkit.bench.trials import trial_config
from unlearnkit.bench.vetting import attempt_seed, chance_accuracy, threshold, verdict
from unlearnkit.errors import NumericalError, UnsupportedError
from unlearnkit.jobs.environment import environment, resolve_device
from unlearnkit.jobs.store import RunResult
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.metrics import deep_unlearn_objectives, indiscernibility
from unlearnkit.models import build_model


def execute(task: Task, shared: Any = None) -> RunResult:
    """Run ``task`` here (a worker process, a Ray worker, or inline) and report the result.

    The executor's job function (:data:`unlearnkit.jobs.executors.JobFn`); ``shared`` is unused:
    a task reads its inputs from the benchmark directory."""
    torch.set_num_threads(task.threads)
    device = resolve_device(str(task.payload.get("device", "cpu")))
    started = time.time()
    result = RunResult(key=task.key, started=started)
    result.worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        out = TASKS.get(task.stage)(task)
    except UnsupportedError as err:
        result.status, result.error = "unsupported", str(err)
    except Exception as err:  # a failed run is recorded, the benchmark goes on
        result.status = "failed"
        result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"
    else:
        result.params, result.metrics = out.params, out.metrics
        result.timings, result.artifact = out.timings, out.artifact
    result.params.setdefault("inputs", task.payload)  # seeds, configs, input paths
    result.env = environment(device)
    result.finished = time.time()
    result.timings.setdefault("wall", result.finished - started)
    return result


def _device(task: Task) -> str:
    return resolve_device(str(task.payload.get("device", "cpu")))


def _load(task: Task, rel: str) -> torch.nn.Module:
    model, _ = load_model(task.path(rel))
    return model


# ----------------------------------------------------------------------- stages


@TASKS.register("split")
def split_stage(task: Task) -> Output:
    """Split the dataset, select the forget set, write the ids (and small arrays)."""
    p = task.payload
    cfg = DatasetConfig.model_validate(p["dataset"])
    split = make_split(cfg, p["forget"], int(p["forget_seed"]))
    rel = f"splits/{task.key}"
    info = write_split(task.path(rel), split, cfg)
    params = {k: info[k] for k in ("task", "input_shape", "num_outputs", "sizes", "classes")}
    return Output(params=params, artifact=rel)


@TASKS.register("init")
def init_stage(task: Task) -> Output:
    """Build the seeded initial weights of one architecture for one seed."""

    p = task.payload
    mcfg = ModelConfig.model_validate(p["model"])
    model = build_model(
        mcfg.name, tuple(p["input_shape"]), int(p["num_outputs"]), int(p["seed"]), **mcfg.options
    )
    rel = f"models/{task.key}"
    save_model(task.path(rel), model, {"stage": "init", "key": task.key})
    n_params = sum(t.numel() for t in model.parameters())
    return Output(params={"parameters": n_params}, artifact=rel)


@TASKS.register("train")
def train_stage(task: Task) -> Output:
    """Train Original (train split) or Retrain (retain split) from the initial weights.

    A model that did not train (:mod:`unlearnkit.bench.vetting`: diverged, or test accuracy
    not clearly above chance) is trained again with the next data-order seed, at most
    ``vetting.replacements`` times, before anything uses it; ``params.replaced`` lists every
    rejected attempt (seed, test accuracy, reason). All attempts failing fails the run.
    """

    p = task.payload
    vet = p.get("vetting", {"min_gain": 0.0, "replacements": 0})
    split = read_split(str(task.path(p["split"])))
    on = "train" if p["role"] == "original" else "retain"
    init = _load(task, p["init"])
    bar = threshold(chance_accuracy(split.test), float(vet["min_gain"]))
    replaced: list[dict[str, Any]] = []
    result = None
    for attempt in range(int(vet["replacements"]) + 1):
        seed = attempt_seed(int(p["train_seed"]), attempt)
        recipe = {**p["recipe"], **(vet.get("inject") or {})} if attempt == 0 else p["recipe"]
        try:
            trial = uk.train(init, split, recipe, seed, device=_device(task), on=on)
        except NumericalError:
            acc, reason = None, verdict(None, bar, diverged=True)
        else:
            acc = trial.metrics.get("test")
            reason = verdict(acc, bar)
        if reason is None:
            result = trial
            break
        replaced.append(
            {"attempt": attempt, "train_seed": seed, "test_accuracy": acc, "reason": reason}
        )
    if result is None:
        raise RuntimeError(
            f"{p['role']} did not train in {len(replaced)} attempts: {replaced[-1]['reason']}; "
            "change the recipe or raise references.replacements"
        )
    rel = f"models/{task.key}"
    save_model(task.path(rel), result.model.cpu(), {"stage": p["role"], "key": task.key})
    n = len(split.train if on == "train" else split.retain)
    return Output(
        params={
            "role": p["role"],
            "n": n,
            "train_seed": attempt_seed(int(p["train_seed"]), len(replaced)),
            "replaced": replaced,
            "threshold": bar,
        },
        metrics={
            "final_loss": float(result.record.get("final_loss", float("nan"))),
            "test_accuracy": float(result.metrics.get("test", float("nan"))),
            "replacements": float(len(replaced)),
        },
        timings={"train": result.seconds},
        artifact=rel,
    )


def _reference_accuracies(task: Task, split: Any, retrain: torch.nn.Module) -> dict[str, float]:
    return evaluate_model(retrain, split, ["accuracy"], device=_device(task))


@TASKS.register("search")
def search_stage(task: Task) -> Output:
    """Run (or resume) one Optuna study for one method on one seed's Original."""

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    p = task.payload
    device = _device(task)
    split = read_split(str(task.path(p["split"])))
    original = _load(task, p["original"])
    ref = _reference_accuracies(task, split, _load(task, p["retrain"]))
    method = METHODS.get(p["method"])()
    # the mode's space: keys with no effect in the configured mode are not sampled
    faithful = bool(p["fixed"].get("faithful", False))
    space = method.search_space_for(int(p["max_epochs"]), faithful)
    data = UnlearnData(split.retain, split.forget, split.val)
    method.check(original, data)  # unsupported combinations fail before any trial

    def objective(params: dict[str, Any]) -> tuple[tuple[float, ...], dict[str, float]]:
        config = trial_config(p["fixed"], params)
        res = method.unlearn(original, data, config, seed=int(p["unlearn_seed"]), device=device)
        m = search_metrics(res.model.to(device), split, device=device)
        values = deep_unlearn_objectives(m, ref, indiscernibility(m["val_mia"]))
        return values, {**m, "unlearn": res.seconds}

    scfg = SearchConfig.model_validate(p["search"])
    lab = task.labels
    seed = sampler_seed(lab["dataset"], lab["model"], p["method"], int(p["seed"]))
    study = open_study(p["study"], make_storage(p["storage"]), scfg, seed)
    m_o = search_metrics(original.to(device), split, device=device)
    o_o = objectives(m_o, ref)
    study.set_user_attr("original_values", list(o_o))
    study.set_user_attr("sampler_seed", seed)
    multiclass = getattr(split.retain, "task", None) == "multiclass"
    const = constant_accuracy(split.retain.targets_for_class().numpy()) if multiclass else None
    rule = PruneRule(o_o, const) if scfg.prune else None
    t0 = time.perf_counter()
    counts = run_study(study, space, objective, scfg.trials, scfg.max_failed, prune=rule)
    return Output(
        params={"study": p["study"], "space": sorted(space), **counts},
        timings={"search": time.perf_counter() - t0},
    )


@TASKS.register("unlearn")
def unlearn_stage(task: Task) -> Output:
    """Run one method with its chosen configuration on one seed's Original; save the model."""

    p = task.payload
    split = read_split(str(task.path(p["split"])))
    original = _load(task, p["original"])
    res = uk.unlearn(
        original, split, p["method"], p["config"], int(p["unlearn_seed"]), device=_device(task)
    )
    rel = f"models/{task.key}"
    save_model(task.path(rel), res.model.cpu(), {"stage": "unlearn", "key": task.key})
    info = {k: v for k, v in res.record["info"].items() if isinstance(v, int | float | str)}
    timings = {"unlearn": res.seconds}
    timings.update({k: float(v) for k, v in info.items() if k.endswith("_seconds")})
    return Output(
        params={"config": res.record["config"], "info": info}, timings=timings, artifact=rel
    )


@TASKS.register("evaluate")
def evaluate_stage(task: Task) -> Output:
    """Deep Unlearn's metrics for one model (:mod:`unlearnkit.bench.evaluate`)."""
    p = task.payload
    split = read_split(str(task.path(p["split"])))
    model = _load(task, p["model"])
    metrics = evaluate_model(
        model,
        split,
        list(p["metrics"]),
        original=_load(task, p["original"]),
        retrain=_load(task, p["retrain"]),
        device=_device(task),
    )
    return Output(metrics=metrics)
