"""``unlearnkit evaluate`` (one unlearned model vs its original and retrain) and
``unlearnkit audit`` (U-LiRA end to end, with cached shadow pools).

Both parse options, call the facade (:func:`unlearnkit.api.evaluate`,
:func:`unlearnkit.api.audit`) and print. ``evaluate`` takes its data from the unlearned
model's manifest (``--forget`` / ``--forget-seed`` override the forget set) and refuses an
original or a retrain that does not belong with the unlearned model (exit 2, naming the
mismatch).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearnkit import api
from unlearnkit.cli.app import Overwrite, app, console, friendly_errors, show
from unlearnkit.cli.options import SEED_MAX, parse_assignments, parse_method_configs
from unlearnkit.errors import ConfigError

__all__ = ["parse_assignments"]

# ----------------------------------------------------------------------------- helpers


def _num(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if pct else f"{v:.4f}"
    return str(v)


# ----------------------------------------------------------------------------- evaluate


def _print_evaluation(report: dict[str, Any]) -> None:
    acc = Table(title="accuracy (%): closer to retrain is better")
    acc.add_column("model")
    for k in ("RA", "FA", "VA", "TA", "UA"):
        acc.add_column(k, justify="right")
    for name, row in report["accuracy"].items():
        acc.add_row(name, *(_num(row.get(k), pct=True) for k in ("RA", "FA", "VA", "TA", "UA")))
    show(acc)
    mia = Table(title="population MIAs: closer to retrain's value is better (≈ 0.5)")
    mia.add_column("model")
    cols = ("val_mia", "val_indisc", "test_mia", "test_indisc", "svc_mia_efficacy")
    for c in cols:
        mia.add_column(c, justify="right")
    for name, row in report["mia"].items():
        mia.add_row(name, *(_num(row.get(c)) for c in cols))
    show(mia)
    other = Table(title="retention, distance, efficiency")
    other.add_column("metric")
    other.add_column("value", justify="right")
    other.add_column("direction")
    r, d = report["retention"], report["distance"]
    for k in ("RR", "FR", "TR"):
        other.add_row(k, _num(r[k]), "closer to 1")
    other.add_row("RetDev", _num(r["RetDev"]), "lower")
    other.add_row("‖θu−θr‖", _num(d["unlearned_to_retrain"]), "lower")
    other.add_row("‖θo−θr‖", _num(d["original_to_retrain"]), "reference")
    other.add_row("normalised distance", _num(d["normalized"]), "lower (1 = original)")
    other.add_row("RTE", _num(report["rte"]), "higher (retrain = 1)")
    show(other)
    for note in report.get("notes", []):
        console.print(f"note: {note}", style="yellow")


@app.command("evaluate")
@friendly_errors
def evaluate(
    unlearned: Annotated[Path, typer.Argument(help="unlearned model artifact")],
    original: Annotated[Path, typer.Option(help="the original model artifact")],
    retrain: Annotated[Path, typer.Option(help="the retrained model artifact")],
    method_seconds: Annotated[
        float | None, typer.Option(help="unlearning time (default: from its manifest)")
    ] = None,
    retrain_seconds: Annotated[
        float | None, typer.Option(help="retraining time (default: from its manifest)")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the full report as JSON here")
    ] = None,
    overwrite: Overwrite = False,
) -> None:
    """Score one unlearned model against its original and retrain: RA/FA/VA/TA, retention
    and RetDev, parameter distance, population MIAs + indiscernibility, SVC MIA-efficacy, RTE."""
    inputs = [unlearned, original, retrain]
    if json_out is not None:
        api.check_output(json_out, overwrite=overwrite, inputs=inputs, artifact=False)
    models = [api.load(p) for p in inputs]
    with console.status("evaluating"):
        report = api.evaluate(
            models[0],
            original=models[1],
            retrain=models[2],
            method_seconds=method_seconds,
            retrain_seconds=retrain_seconds,
        )
    _print_evaluation(report)
    if json_out is not None:
        api.write_json(json_out, report)
        console.print(f"wrote {json_out}")


# ----------------------------------------------------------------------------- audit


def _progress_callback(progress: Progress) -> Any:
    tasks: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    return update


def _print_audit(results: list[Any]) -> None:
    table = Table(title="U-LiRA (%): closer to chance is better (50, TPR@α ≈ α)")
    fprs = results[0].config.fprs
    for col in ("method", "bal. acc", "AUC", *[f"TPR@{100 * a:g}%" for a in fprs], "trials +/−"):
        table.add_column(col, justify="right" if col != "method" else "left")
    pools: dict[str, Any] = {}
    for r in results:
        m = r.outcome.metrics
        tprs = [_num(m.tpr_at_fpr[a], pct=True) + ("" if m.supported[a] else "†") for a in fprs]
        table.add_row(
            r.method,
            _num(m.balanced_accuracy, pct=True),
            _num(m.auc, pct=True),
            *tprs,
            f"{m.n_pos}/{m.n_neg}",
        )
        pools.update({p.folder: p for p in r.pools})
    show(table)
    console.print("† fewer than 1/α negatives: the rate is not resolved.")
    for p in pools.values():
        console.print(
            f"pool {p.name}: {p.trained} trained, {p.reused} reused "
            f"({p.seconds:.1f} s) in {p.folder}"
        )


@app.command("audit")
@friendly_errors
def audit(
    method: Annotated[list[str], typer.Option(help="method key (repeat for several)")],
    out: Annotated[Path, typer.Option(help="folder for results, table and ROC plot")],
    dataset: Annotated[str, typer.Option(help="registered dataset")] = "mnist1d",
    model: Annotated[str, typer.Option(help="registered model")] = "mlp",
    shadows: Annotated[int, typer.Option(help="shadow splits (originals)", min=2)] = 32,
    scheme: Annotated[str, typer.Option(help="split scheme: hayes or deepunlearn")] = "hayes",
    dataset_param: Annotated[
        list[str] | None, typer.Option(help="dataset parameter KEY=VALUE (repeatable)")
    ] = None,
    model_option: Annotated[
        list[str] | None, typer.Option(help="model option KEY=VALUE (repeatable)")
    ] = None,
    method_config: Annotated[
        list[str] | None, typer.Option(help="METHOD=JSON hyper-parameters (repeatable)")
    ] = None,
    epochs: Annotated[int, typer.Option(help="shadow training epochs", min=1)] = 30,
    batch_size: Annotated[int, typer.Option(help="shadow training batch size", min=1)] = 64,
    lr: Annotated[float, typer.Option(help="shadow training learning rate")] = 0.05,
    momentum: Annotated[float, typer.Option(help="SGD momentum")] = 0.9,
    weight_decay: Annotated[float, typer.Option(help="SGD weight decay")] = 5e-4,
    target_fraction: Annotated[
        float, typer.Option(help="hayes: fraction of the population that are targets")
    ] = 0.1,
    forget_sets: Annotated[int, typer.Option(help="deepunlearn: forget sets per split")] = 1,
    forget_fraction: Annotated[float, typer.Option(help="deepunlearn: forget fraction")] = 0.1,
    out_source: Annotated[
        str | None, typer.Option(help="OUT models: retrain or unlearned (scheme default)")
    ] = None,
    val_fraction: Annotated[float, typer.Option(help="validation fraction")] = 0.1,
    test_fraction: Annotated[float, typer.Option(help="test fraction")] = 0.2,
    split_seed: Annotated[
        int, typer.Option(help="train/val/test split seed", min=0, max=SEED_MAX)
    ] = 0,
    seed: Annotated[int, typer.Option(help="seed of the shadow splits", min=0, max=SEED_MAX)] = 0,
    workers: Annotated[int, typer.Option(help="training processes", min=1)] = 1,
    cache: Annotated[Path, typer.Option(help="pool cache (shared across audits)")] = Path(
        "~/.cache/unlearnkit/pools"
    ),
    overwrite: Overwrite = False,
) -> None:
    """U-LiRA audit of one or more methods (Hayes et al. 2024): shadow originals on random
    halves, unlearned with each method, per-example Gaussians, held-out target models."""
    api.check_output(out / "results.json", overwrite=overwrite, artifact=False)
    try:
        config = api.AuditConfig(
            dataset=dataset,
            dataset_params=parse_assignments(dataset_param, "--dataset-param"),
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            split_seed=split_seed,
            model=model,
            model_options=parse_assignments(model_option, "--model-option"),
            recipe={
                "name": "sgd",
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "momentum": momentum,
                "weight_decay": weight_decay,
            },
            scheme=scheme,
            shadows=shadows,
            seed=seed,
            target_fraction=target_fraction,
            forget_sets=forget_sets,
            forget_fraction=forget_fraction,
            out_source=out_source,
            workers=workers,
        )
    except ValidationError as e:
        raise ConfigError(f"bad audit options: {e}") from None
    configs = parse_method_configs(method, method_config)
    t0 = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        results = api.audit(
            config, methods=configs, cache=cache, progress=_progress_callback(progress)
        )
    wall = time.perf_counter() - t0
    paths = api.write_audit(results, out, extra={"wall_seconds": wall})
    _print_audit(results)
    console.print(
        f"wall time {wall:.1f} s; wrote {paths['table']}, {paths['results']}, "
        f"{paths.get('roc', '')}"
    )
