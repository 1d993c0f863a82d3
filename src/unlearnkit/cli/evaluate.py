"""``unlearnkit evaluate`` (one unlearned model vs its original and retrain) and
``unlearnkit audit`` (U-LiRA end to end, with cached shadow pools).

``evaluate`` reads three model artifacts (:mod:`unlearnkit.artifacts`). The data come from the
unlearned model's manifest, as written by ``unlearnkit unlearn``: ``dataset`` and ``split``
rebuild train / val / test, and ``unlearn.forget`` / ``unlearn.forget_seed`` select the forget
set from train (``--forget`` / ``--forget-seed`` override them). When the manifest records
``unlearn.forget_ids_hash`` or the original's fingerprint (``unlearn.source.fingerprint``),
they must match, so a model is never scored against the wrong forget set or original. Times
for RTE default to ``unlearn.seconds`` of the unlearned and retrain manifests.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from unlearnkit.cli.app import app, console, friendly_errors
from unlearnkit.errors import ConfigError, StateMismatchError

# ----------------------------------------------------------------------------- helpers


def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["size=5000", "name=x"]`` -> ``{"size": 5000, "name": "x"}`` (values parsed as JSON
    when they are JSON, else kept as strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def parse_method_configs(methods: list[str], items: list[str] | None) -> dict[str, Any]:
    """``--method-config ft='{"num_epochs": 2}'`` (inline JSON or a JSON file) per method."""
    from unlearnkit.cli.methods import parse_config

    configs: dict[str, Any] = {m: None for m in methods}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or name not in configs:
            raise ConfigError(
                f"--method-config {item!r}: expected METHOD=JSON for one of {methods}"
            )
        configs[name] = parse_config(text)
    return configs


def _num(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{100 * v:.2f}" if pct else f"{v:.4f}"
    return str(v)


# ----------------------------------------------------------------------------- evaluate


def _unlearn_record(manifest: dict[str, Any]) -> dict[str, Any]:
    rec = manifest.get("unlearn")
    return rec if isinstance(rec, dict) else {}


def _seconds(manifest: dict[str, Any]) -> float | None:
    for v in (_unlearn_record(manifest).get("seconds"), manifest.get("seconds")):
        if isinstance(v, int | float):
            return float(v)
    return None


def _print_evaluation(report: dict[str, Any]) -> None:
    acc = Table(title="accuracy (%): closer to retrain is better")
    acc.add_column("model")
    for k in ("RA", "FA", "VA", "TA", "UA"):
        acc.add_column(k, justify="right")
    for name, row in report["accuracy"].items():
        acc.add_row(name, *(_num(row.get(k), pct=True) for k in ("RA", "FA", "VA", "TA", "UA")))
    console.print(acc)
    mia = Table(title="population MIAs: closer to retrain's value is better (≈ 0.5)")
    mia.add_column("model")
    cols = ("val_mia", "val_indisc", "test_mia", "test_indisc", "svc_mia_efficacy")
    for c in cols:
        mia.add_column(c, justify="right")
    for name, row in report["mia"].items():
        mia.add_row(name, *(_num(row.get(c)) for c in cols))
    console.print(mia)
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
    console.print(other)
    for note in report.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}")


@app.command("evaluate")
@friendly_errors
def evaluate(
    unlearned: Annotated[Path, typer.Argument(help="unlearned model artifact")],
    original: Annotated[Path, typer.Option(help="the original model artifact")],
    retrain: Annotated[Path, typer.Option(help="the retrained model artifact")],
    forget: Annotated[
        str | None, typer.Option(help="forget spec (default: the unlearned manifest's)")
    ] = None,
    forget_seed: Annotated[
        int | None, typer.Option(help="forget seed (default: the unlearned manifest's)")
    ] = None,
    method_seconds: Annotated[
        float | None, typer.Option(help="unlearning time (default: from its manifest)")
    ] = None,
    retrain_seconds: Annotated[
        float | None, typer.Option(help="retraining time (default: from its manifest)")
    ] = None,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="also write the full report as JSON here")
    ] = None,
) -> None:
    """Score one unlearned model against its original and retrain: RA/FA/VA/TA, retention
    and RetDev, parameter distance, population MIAs + indiscernibility, SVC MIA-efficacy, RTE."""
    from unlearnkit.artifacts import load_model
    from unlearnkit.cli.methods import data_from_manifest
    from unlearnkit.data import parse_forget_spec
    from unlearnkit.evaluation.report_eval import evaluate_unlearned
    from unlearnkit.io import atomic_write_json, ids_hash, model_fingerprint

    u_model, u_man = load_model(unlearned)
    o_model, _ = load_model(original)
    r_model, r_man = load_model(retrain)
    rec = _unlearn_record(u_man)
    spec_text = forget or rec.get("forget")
    if not isinstance(spec_text, str):
        raise ConfigError(
            "the unlearned manifest does not record its forget spec; pass --forget (and "
            "--forget-seed)"
        )
    seed = forget_seed if forget_seed is not None else int(rec.get("forget_seed", 0))
    source = rec.get("source")
    if isinstance(source, dict) and source.get("fingerprint") not in (
        None,
        model_fingerprint(o_model),
    ):
        raise StateMismatchError(
            f"{unlearned} was not unlearned from {original} (the original's fingerprint "
            "differs from the one recorded in the unlearned manifest)"
        )
    data = data_from_manifest(u_man)
    split = parse_forget_spec(spec_text).select(data.train, seed=seed)
    for name, man in (("unlearned", u_man), ("retrain", r_man)):
        recorded = _unlearn_record(man).get("forget_ids_hash")
        if recorded is not None and recorded != ids_hash(split.forget_ids):
            raise StateMismatchError(
                f"the {name} model's manifest records a different forget set than "
                f"{spec_text!r} with seed {seed}"
            )
    parts = {
        "retain": split.retain(data.train),
        "forget": split.forget(data.train),
        "val": data.val,
        "test": data.test,
    }
    with console.status("evaluating"):
        report = evaluate_unlearned(
            u_model,
            o_model,
            r_model,
            parts,
            method_seconds=method_seconds if method_seconds is not None else _seconds(u_man),
            retrain_seconds=retrain_seconds if retrain_seconds is not None else _seconds(r_man),
        )
    report["inputs"] = {
        "unlearned": str(unlearned),
        "original": str(original),
        "retrain": str(retrain),
        "forget": spec_text,
        "forget_seed": seed,
    }
    _print_evaluation(report)
    if json_out is not None:
        atomic_write_json(json_out, report)
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
    console.print(table)
    console.print("† fewer than 1/α negatives: the rate is not resolved.")
    for p in pools.values():
        console.print(
            f"pool {p.name}: {p.trained} trained, {p.reused} reused "
            f"({p.seconds:.1f} s) in {escape(p.folder)}"
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
    split_seed: Annotated[int, typer.Option(help="train/val/test split seed")] = 0,
    seed: Annotated[int, typer.Option(help="seed of the shadow splits")] = 0,
    workers: Annotated[int, typer.Option(help="training processes", min=1)] = 1,
    cache: Annotated[Path, typer.Option(help="pool cache (shared across audits)")] = Path(
        "~/.cache/unlearnkit/pools"
    ),
) -> None:
    """U-LiRA audit of one or more methods (Hayes et al. 2024): shadow originals on random
    halves, unlearned with each method, per-example Gaussians, held-out target models."""
    from pydantic import ValidationError

    from unlearnkit.evaluation.audit import AuditConfig, Auditor
    from unlearnkit.evaluation.audit_report import write_audit_results

    try:
        config = AuditConfig(
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
        auditor = Auditor(config, cache, _progress_callback(progress))
        results = [auditor.audit(m, c) for m, c in configs.items()]
    wall = time.perf_counter() - t0
    paths = write_audit_results(results, out, extra={"wall_seconds": wall})
    _print_audit(results)
    console.print(
        f"wall time {wall:.1f} s; wrote {paths['table']}, {paths['results']}, "
        f"{paths.get('roc', '')}"
    )
