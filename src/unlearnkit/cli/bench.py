"""``unlearnkit bench PRESET_OR_FILE --out DIR`` and ``unlearnkit report DIR``."""

from __future__ import annotations

import signal
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from unlearnkit.cli.app import (
    app,
    console,
    err_console,
    friendly_errors,
    show,
    sqlite_error_message,
)
from unlearnkit.errors import DataError


@contextmanager
def _results_db(directory: Path) -> Iterator[None]:
    """A SQLite error caused by the benchmark's database file (corrupted, not a database,
    locked, read-only) as a DataError naming the file; other SQLite errors propagate."""
    try:
        yield
    except sqlite3.Error as e:
        message = sqlite_error_message(e)
        if message is None:
            raise
        raise DataError(f"{directory / 'results.db'}: {message}") from None


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@app.command("bench")
@friendly_errors
def bench(
    preset_or_file: str = typer.Argument(
        ..., help="a preset (smoke, cpu, cifar10-resnet18) or an experiment file (.yaml/.toml)"
    ),
    out: Path = typer.Option(..., "--out", help="benchmark directory (created; resumable)"),
    executor: str | None = typer.Option(
        None, "--executor", help="local (process pool, default) or ray"
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="join an existing Ray cluster (implies --executor ray)"
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="parallel workers (0: run inline); default from the file"
    ),
    storage: str | None = typer.Option(
        None, "--storage", help="Optuna storage URL (default sqlite:///DIR/optuna.db)"
    ),
    report: bool = typer.Option(True, "--report/--no-report", help="write the report at the end"),
) -> None:
    """Run (or resume) a benchmark; finished runs are never recomputed."""
    from unlearnkit.bench import load_experiment, run_benchmark
    from unlearnkit.bench.runner import describe
    from unlearnkit.errors import ConfigError

    if executor is not None and executor not in ("local", "ray"):
        raise ConfigError(f"--executor must be 'local' or 'ray', got {executor!r}")
    exp = load_experiment(preset_or_file)
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with _results_db(out):
            summary = run_benchmark(
                exp, out, executor=executor, workers=workers, ray_address=ray_address,
                storage=storage, report=report, console=err_console,
            )  # fmt: skip
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: finished runs are stored; run the same command to resume",
            style="yellow",
        )
        raise typer.Exit(130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    table = Table(title=f"{exp.name}: {summary.seconds:.1f} s")
    for col in ("stage", "status", "runs"):
        table.add_column(col)
    for row in describe(summary):
        table.add_row(row["stage"], row["status"], str(row["runs"]))
    show(table)
    console.print(f"results: {out / 'results.db'}")
    if summary.report is not None:
        console.print(f"report:  {summary.report}")
    if summary.failed:
        err_console.print(f"{summary.failed} run(s) failed; see the report's 'Runs'", style="red")
        raise typer.Exit(1)


@app.command("report")
@friendly_errors
def report_cmd(
    directory: Path = typer.Argument(..., help="a benchmark directory (holding results.db)"),
) -> None:
    """Write DIR/report.md and a self-contained DIR/report.html from the stored results."""
    from unlearnkit.bench import write_report

    with _results_db(directory):
        path = write_report(directory)
    console.print(f"report: {path}")
    console.print(f"markdown: {path.with_suffix('.md')}")
