"""The planners: for each stage, the tasks it runs (one per setting, row and seed), with
their content keys, payloads and the keys of their inputs. Planning reads the store (input
shapes, chosen configurations), runs nothing, and is deterministic given the store.
"""

from __future__ import annotations

from typing import Any

from unlearnkit.bench.config import REFERENCE_ROWS, DatasetConfig, ModelConfig
from unlearnkit.bench.context import Context
from unlearnkit.bench.tasks import Task


def _labels(
    d: DatasetConfig,
    m: ModelConfig | None = None,
    method: str | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    return {"dataset": d.tag, "model": m.tag if m else None, "method": method, "seed": seed}


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
                    "train_seed": ctx.exp.train_seed_for(seed),
                    "vetting": ctx.vetting(seed, role),
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
                    "method": ctx.exp.method(method).name,
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
                "method": ctx.exp.method(method).name,
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
                    "method": ctx.exp.method(method).name,
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
