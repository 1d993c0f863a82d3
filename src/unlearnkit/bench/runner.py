"""The driver: run every stage of an experiment, resumably, then write the report.

Settings (dataset x model) run one after the other, so an interrupted benchmark already holds
complete results for the first settings. Within a setting, for each stage in
:data:`unlearnkit.bench.stages.STAGES`: plan its tasks, drop those already
finished (status ``done`` or ``unsupported`` under the same key), skip those whose inputs did
not finish (``unsupported`` propagates, anything else is ``skipped``), run the rest on the
executor (or in the driver for inline stages) and store each result as it arrives. A crash
or Ctrl-C loses nothing finished; running the same command again resumes.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from unlearnkit.bench.config import Experiment
from unlearnkit.bench.context import Context, make_context
from unlearnkit.bench.report import write_report
from unlearnkit.bench.stages import INLINE, STAGES, Stage
from unlearnkit.bench.tasks import Task, execute
from unlearnkit.jobs.environment import environment, resolve_device
from unlearnkit.jobs.executors import Executor, make_executor
from unlearnkit.jobs.lock import folder_lock
from unlearnkit.jobs.store import FINISHED, RunResult, Store


@dataclass
class BenchSummary:
    """Counts of this invocation: runs executed per stage and status, runs already done."""

    out: Path
    ran: Counter[tuple[str, str]] = field(default_factory=Counter)
    reused: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    report: Path | None = None

    @property
    def failed(self) -> int:
        return sum(n for (_, status), n in self.ran.items() if status == "failed")


class _Driver:
    def __init__(
        self,
        ctx: Context,
        executor_kind: str,
        workers: int | None,
        ray_address: str | None,
        progress: Progress | None,
    ) -> None:
        self.ctx = ctx
        self.kind, self.workers, self.ray_address = executor_kind, workers, ray_address
        self.progress = progress
        self._executor: Executor | None = None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = make_executor(
                self.kind, self.workers, self.ctx.threads, self.ray_address
            )
        return self._executor

    def close(self, cancel: bool) -> None:
        if self._executor is not None:
            self._executor.close(cancel=cancel)

    def _record(self, result: RunResult, summary: BenchSummary, stage: str) -> None:
        self.ctx.store.finish(result)
        summary.ran[(stage, result.status)] += 1

    def run_stage(self, stage: Stage, summary: BenchSummary, ctx: Context) -> None:
        store = ctx.store
        tasks = stage.plan(ctx)
        status = store.statuses(t.key for t in tasks)
        todo: list[Task] = []
        for t in tasks:
            if status.get(t.key) in FINISHED:
                summary.reused[stage.name] += 1
                continue
            dep_status = store.statuses(t.deps)
            missing = [k for k in t.deps if dep_status.get(k) != "done"]
            if not missing:
                todo.append(t)
            elif any(dep_status.get(k) == "unsupported" for k in missing):
                store.skip(t.key, stage.name, t.labels, "an input is unsupported")
                store.mark([t.key], "unsupported", "an input is unsupported")
                summary.ran[(stage.name, "unsupported")] += 1
            else:
                store.skip(t.key, stage.name, t.labels, f"inputs not done: {missing[:3]}")
                summary.ran[(stage.name, "skipped")] += 1
        bar = None
        if self.progress is not None and tasks:
            d, m = ctx.settings()[0]
            bar = self.progress.add_task(f"{d.tag}/{m.tag} {stage.name}", total=len(tasks))
            self.progress.update(bar, completed=len(tasks) - len(todo))
        if not todo:
            return
        if stage.prepare is not None:
            stage.prepare(ctx)
        for t in todo:
            store.start(t.key, stage.name, t.labels)
        if stage.inline:
            if stage.schedules_jobs:
                ctx = replace(ctx, executor=self.executor)
            results = (self._inline(t, ctx) for t in todo)
        else:
            results = self.executor.run(todo, execute)
        for result in results:
            self._record(result, summary, stage.name)
            if bar is not None:
                self.progress.advance(bar)  # type: ignore[union-attr]

    def _inline(self, task: Task, ctx: Context) -> RunResult:
        result = RunResult(key=task.key, started=time.time(), worker="driver")
        try:
            out = INLINE.get(task.stage)(task, ctx)
        except Exception as err:
            result.status = "failed"
            result.error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=6)}"
        else:
            result.params, result.metrics = out.params, out.metrics
            result.timings, result.artifact = out.timings, out.artifact
        result.params.setdefault("inputs", task.payload)
        result.env = environment(resolve_device("cpu"))
        result.finished = time.time()
        return result


def run_benchmark(
    exp: Experiment,
    out: str | Path,
    *,
    executor: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    storage: str | None = None,
    report: bool = True,
    console: Console | None = None,
    show_progress: bool = True,
) -> BenchSummary:
    """Run (or resume) ``exp`` in directory ``out``; write ``out/report.{md,html}``.

    ``executor``/``workers``/``ray_address`` override the experiment's ``executor`` block;
    ``storage`` overrides the Optuna storage URL. Interrupting (Ctrl-C) marks the runs in
    flight ``interrupted`` and re-raises :class:`KeyboardInterrupt`. The driver holds
    ``out``'s lock (:func:`unlearnkit.jobs.lock.folder_lock`) for the whole run: a second
    driver on the same folder raises :class:`~unlearnkit.errors.OverwriteError` at once.
    """
    out = Path(out)
    t0 = time.perf_counter()
    exec_cfg = exp.executor
    kind = executor or ("ray" if ray_address else exec_cfg.kind)
    n_workers = exec_cfg.workers if workers is None else workers
    address = ray_address or exec_cfg.ray_address
    summary = BenchSummary(out)
    console = console or Console(stderr=True)
    with folder_lock(out, "benchmark"):
        _run_locked(exp, out, summary, kind, n_workers, address, storage, console, show_progress)
        summary.seconds = time.perf_counter() - t0
        if report:
            summary.report = write_report(out)
    return summary


def _run_locked(
    exp: Experiment,
    out: Path,
    summary: BenchSummary,
    kind: str,
    n_workers: int | None,
    address: str | None,
    storage: str | None,
    console: Console,
    show_progress: bool,
) -> None:
    with Store(out) as store:
        store.record_experiment(exp.model_dump(mode="json"))
        ctx = make_context(exp, out, store, storage)
        progress = (
            Progress(
                TextColumn("{task.description:>28}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=False,
            )
            if show_progress
            else None
        )
        driver = _Driver(ctx, kind, n_workers, address, progress)
        try:
            if progress is not None:
                progress.start()
            for d, m in ctx.settings():  # one setting after the other: early complete results
                sub = ctx.restricted(d, m)
                for stage in STAGES:
                    driver.run_stage(stage, summary, sub)
        except BaseException:
            in_flight = [r.key for r in store.runs() if r.status == "running"]
            store.mark(in_flight, "interrupted", "the driver stopped before this run finished")
            driver.close(cancel=True)
            raise
        else:
            driver.close(cancel=False)
        finally:
            if progress is not None:
                progress.stop()


def plan_keys(ctx: Context) -> dict[str, list[Task]]:
    """Every stage's tasks (for reports and tests); plans read the store, run nothing."""
    return {stage.name: stage.plan(ctx) for stage in STAGES}


def describe(summary: BenchSummary) -> list[dict[str, Any]]:
    """Rows (stage, status, runs) of what this invocation did, reused runs as ``reused``."""
    rows = [{"stage": s, "status": st, "runs": n} for (s, st), n in sorted(summary.ran.items())]
    rows += [{"stage": s, "status": "reused", "runs": n} for s, n in sorted(summary.reused.items())]
    return rows
