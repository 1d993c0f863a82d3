"""``make demo`` / ``unlearnkit demo``: the main job end to end, through the facade only.

The default scenario is **poisoned training data that the erasure request names**: a seeded
fraction of one class's training samples is relabelled as another class (default ``7:1:0.4``:
40 % of the 7s labelled 1), recorded in the data plan (:mod:`unlearnkit.data.relabel`, so
``evaluate`` and reruns see the same labels). The Original learns part of the wrong mapping
(its test accuracy on class 7 drops); the request names exactly the poisoned ids ("we found
the poisoned data"); the Retrain never sees them and recovers class 7.

plan the split (poison + forget set) → ``uk.train`` the Original → ``uk.prepare`` the SSSE
state (once) → ``Prepared.erase`` the forget set's ids with the safe default ``eps="auto"``
(the guarded retrain-free ε rule, refused beyond the utility budget) → ``uk.train`` the
Retrain on the retain set → ``uk.evaluate`` → Original / SSSE / Retrain side by side:
accuracy on the poisoned class (test), overall test accuracy, accuracy on the erased samples
against their poisoned and their true labels, normalised parameter distance
‖θ − θ_R‖ / ‖θ_O − θ_R‖, seconds. ``--forget`` without ``--poison`` runs the older scenario
(a clean forget set such as ``random:0.1``).

The ε grid repeats the request at fixed ε (``allow_utility_loss=True``: these models are
measured, never kept). Its best ε by distance to the Retrain is shown as a separate row
labelled *oracle*: it needs the retrained model, which the auto rule never uses.
Rendering (tables, report, pictures) is in :mod:`unlearnkit.demo_report`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import unlearnkit as uk
from unlearnkit import api
from unlearnkit.data.base import DatasetLike
from unlearnkit.data.forget import ids_spec
from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.data.relabel import Relabel, relabelled_ids
from unlearnkit.demo_report import plot_changes, plot_eps_curve, render_report, render_table
from unlearnkit.errors import ConfigError
from unlearnkit.io import atomic_write_bytes, atomic_write_json
from unlearnkit.training.predict import predict_logits

#: the evaluation suite's accuracy names per split (``report["accuracy"][model]``)
ACC = {"retain": "RA", "forget": "FA", "val": "VA", "test": "TA"}
#: table row → the evaluation report's model key
ROWS = {"Original": "original", "SSSE": "unlearned", "Retrain": "retrain"}
#: fixed ε of the grid (half decades, 1e-4 … 1e2)
CURVE_EPS = tuple(round(10.0 ** (k / 2), 7) for k in range(-8, 5))
#: the default poisoning: SOURCE:TARGET:FRACTION (40 % of the training 7s labelled 1)
DEFAULT_POISON = "7:1:0.4"
#: the outputs of one run (models are artifacts: ``.safetensors`` + ``.json``)
FILES = ("results.json", "report.md", "eps_curve.png", "changes.png")
MODELS = ("original", "ssse", "retrain")
STATE = "ssse-state"


def check_outputs(out: str | Path, overwrite: bool = False) -> None:
    """Refuse (before any work) to replace an earlier run's outputs without ``overwrite``."""
    out = Path(out)
    for f in FILES:
        api.check_output(out / f, overwrite=overwrite, artifact=False)
    for m in MODELS:
        api.check_output(out / m, overwrite=overwrite)
    api.check_state_output(out / STATE, overwrite=overwrite)


def parse_poison(text: str | None, seed: int = 0) -> Relabel | None:
    """``SOURCE:TARGET:FRACTION`` (``7:1:0.4``) → the :class:`Relabel` step that labels
    ``round(FRACTION · n_SOURCE)`` training samples of class SOURCE (drawn with ``seed``) as
    TARGET; ``none`` or empty → None. Bad text → :class:`ConfigError`."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    parts = [p.strip() for p in text.split(":")]
    try:
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ValueError
        frac = float(parts[2])
    except ValueError:
        raise ConfigError(
            f"poison {text!r}: expected SOURCE:TARGET:FRACTION, e.g. '7:1:0.4', or 'none'"
        ) from None
    if not 0.0 < frac <= 1.0 or parts[0] == parts[1]:
        raise ConfigError(f"poison {text!r}: FRACTION must lie in (0, 1] and TARGET ≠ SOURCE")
    spec = {"spec": f"class_fraction:{parts[0]}:{frac}", "to": parts[1], "seed": seed}
    return Relabel.make(spec)


def scenario(
    dataset: str, seed: int, forget: str | None, poison: str | None
) -> tuple[Split, torch.Tensor, DatasetLike]:
    """The demo's split, the poisoned ids and the clean-label training part.

    ``forget=None`` → the forget set is exactly the poisoned ids (without poison:
    ``random:0.1``). ``poison=None`` → ``DEFAULT_POISON`` unless ``forget`` is given (then
    no poison: the older clean-forget demo)."""
    if poison is None:
        poison = DEFAULT_POISON if forget is None else "none"
    step = parse_poison(poison, seed)
    relabel = (step,) if step is not None else ()
    clean = DataPlan(dataset, split_seed=seed).materialise().train
    poisoned = relabelled_ids(clean, relabel)
    if forget is None:
        forget = ids_spec(poisoned) if len(poisoned) else "random:0.1"
    plan = DataPlan(dataset, split_seed=seed, forget=forget, forget_seed=seed, relabel=relabel)
    return plan.materialise(), poisoned, clean


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters as one float64 vector (module order)."""
    return torch.cat([p.detach().reshape(-1).double().cpu() for p in model.parameters()])


def measure(
    model: nn.Module, split: Split, clean: DatasetLike, poison: Relabel | None
) -> dict[str, Any]:
    """Per-class test accuracy (class → accuracy), accuracy on the poisoned class, on the
    erased samples against their recorded (poisoned) and true labels, and the share of
    erased samples predicted as the poison's target class."""
    test_pred = predict_logits(model, split.test).argmax(1)
    y = split.test.y
    per_class = [
        float((test_pred[y == c] == c).float().mean()) if bool((y == c).any()) else None
        for c in range(len(split.test.classes))
    ]
    forget_pred = predict_logits(model, split.forget).argmax(1)
    true = clean.subset(split.forget.ids).y
    out: dict[str, Any] = {
        "test_per_class": per_class,
        "erased_pred": forget_pred.tolist(),
        "erased_acc_recorded": float((forget_pred == split.forget.y).float().mean()),
        "erased_acc_true": float((forget_pred == true).float().mean()),
        "poisoned_class_acc": None,
        "erased_as_target": None,
    }
    if poison is not None:
        src = _class(split.test, poison.spec.split(":")[1])
        out["poisoned_class_acc"] = per_class[src]
        out["erased_as_target"] = float(
            (forget_pred == _class(split.test, poison.to)).float().mean()
        )
    return out


def _class(data: DatasetLike, key: int | str) -> int:
    return data.classes.index(key) if key in data.classes else int(key)


def eps_grid(
    prepared: uk.Prepared,
    model: nn.Module,
    ids: torch.Tensor,
    theta_o: torch.Tensor,
    theta_r: torch.Tensor,
    score: Callable[[nn.Module], float | None],
    eps: tuple[float, ...] = CURVE_EPS,
) -> tuple[dict[str, list[Any]], nn.Module]:
    """At each fixed ε: the request's accuracies (retained sample, held-out, erased), the
    normalised distance to the Retrain and ``score`` (accuracy on the poisoned class); and
    the erased model of the grid ε closest to the Retrain (the oracle's choice)."""
    curve: dict[str, list[Any]] = {"eps": list(eps), "dist_to_retrain": [], "poisoned_class": []}
    scale = float((theta_o - theta_r).norm())
    best: nn.Module = model
    for e in eps:
        erased = prepared.erase(model, ids, eps=e, allow_utility_loss=True)
        for k, v in erased.accuracy.items():
            curve.setdefault(k, []).append(v["after"])
        dist = float((flat_params(erased.model) - theta_r).norm()) / scale
        if dist < min(curve["dist_to_retrain"], default=float("inf")):
            best = erased.model
        curve["dist_to_retrain"].append(dist)
        curve["poisoned_class"].append(score(erased.model))
    return curve, best


def rows_of(report: dict[str, Any], seconds: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Table rows from an evaluation report: accuracy per split, MIA, distance, seconds.

    Distance is ‖θ − θ_R‖ / ‖θ_O − θ_R‖: 1 for the Original and 0 for the Retrain by
    definition, the report's normalised distance for SSSE."""
    distance = {"Original": 1.0, "SSSE": report["distance"]["normalized"], "Retrain": 0.0}
    rows: dict[str, dict[str, Any]] = {}
    for row, key in ROWS.items():
        acc = report["accuracy"][key]
        rows[row] = {split: acc.get(name) for split, name in ACC.items()}
        rows[row]["mia"] = report["mia"][key]["test_mia"]
        rows[row]["dist_to_retrain"] = distance[row]
        rows[row]["seconds"] = seconds[row]
    return rows


def run_demo(
    out: str | Path = "demo-out",
    dataset: str = "mnist5k",
    model: str = "cnn",
    forget: str | None = None,
    poison: str | None = None,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 0.05,
    seed: int = 0,
    log: Callable[[str], Any] = print,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the demo (see the module docstring) in ``out``; return the results."""
    out = Path(out)
    check_outputs(out, overwrite)
    split, poisoned, clean = scenario(dataset, seed, forget, poison)
    step = split.plan.relabel[0] if split.plan is not None and split.plan.relabel else None
    out.mkdir(parents=True, exist_ok=True)
    ids = split.forget.ids
    what = f"the {len(poisoned)} poisoned ids" if forget is None and step else forget
    if step is not None:
        log(f"poison: {step.spec} (seed {step.seed}) relabelled as class {step.to}")
    log(
        f"{dataset}: {len(split.train)} train ({len(ids)} to forget: {what}), "
        f"{len(split.val)} val, {len(split.test)} test"
    )
    recipe = {"name": "sgd", "epochs": epochs, "batch_size": batch_size, "lr": lr}

    log(f"training the Original ({model}, {epochs} epochs)...")
    original = uk.train(model, split, recipe, seed)
    uk.save(original, out / "original", overwrite=overwrite)
    source = uk.load(out / "original")  # erasing the saved model keeps its lineage and plan

    log("preparing the SSSE state (the library's SSSE defaults)...")
    t0 = time.perf_counter()
    prepared = uk.prepare(source)
    prepare_seconds = time.perf_counter() - t0

    log("erasing the forget set (eps='auto', within the utility budget)...")
    t0 = time.perf_counter()
    erased = prepared.erase(source, ids)
    erase_seconds = time.perf_counter() - t0
    uk.save(erased, out / "ssse", overwrite=overwrite)
    erased.prepared.save(out / STATE)

    log("retraining from scratch on the retain set (the gold standard)...")
    retrain = uk.train(model, split, recipe, seed, on="retain")
    uk.save(retrain, out / "retrain", overwrite=overwrite)

    log("evaluating and measuring the ε grid...")
    report = uk.evaluate(
        erased.model,
        split,
        original=original.model,
        retrain=retrain.model,
        method_seconds=erase_seconds,
        retrain_seconds=retrain.seconds,
    )
    seconds = {"Original": original.seconds, "SSSE": erase_seconds, "Retrain": retrain.seconds}
    rows = rows_of(report, seconds)
    models = {"Original": original.model, "SSSE": erased.model, "Retrain": retrain.model}
    for name, m in models.items():
        rows[name].update(measure(m, split, clean, step))

    def score(m: nn.Module) -> float | None:
        return measure(m, split, clean, step)["poisoned_class_acc"]

    theta_o, theta_r = flat_params(original.model), flat_params(retrain.model)
    curve, oracle = eps_grid(prepared, original.model, ids, theta_o, theta_r, score)
    best = int(np.argmin(curve["dist_to_retrain"]))
    rows["SSSE oracle ε"] = {
        **{k: None for k in rows["SSSE"]},
        **measure(oracle, split, clean, step),
        "dist_to_retrain": curve["dist_to_retrain"][best],
        "test": report_accuracy(oracle, split.test),
    }
    results = {
        "dataset": dataset,
        "model": model,
        "forget": forget if forget is not None else "poisoned ids",
        "poison": step.to_dict() if step is not None else None,
        "poison_target": step.to if step is not None else None,
        "poison_source": step.spec.split(":")[1] if step is not None else None,
        "n_forget": len(ids),
        "erased_ids": ids.tolist(),
        "erased_recorded_labels": split.forget.y.tolist(),
        "erased_true_labels": clean.subset(ids).y.tolist(),
        "classes": list(split.test.classes),
        "epochs": epochs,
        "seed": seed,
        "rows": rows,
        "eps": erased.eps,
        "eps_rule": erased.eps_rule,
        "oracle_eps": curve["eps"][best],
        "utility_budget": uk.DEFAULT_UTILITY_BUDGET,
        "utility": erased.accuracy,
        "prepare_seconds": prepare_seconds,
        "erase_seconds": erase_seconds,
        "eps_curve": curve,
        "evaluation": report,
    }
    atomic_write_json(out / "results.json", results)
    plot_eps_curve(results, out / "eps_curve.png")
    plot_changes(results, split.forget, out / "changes.png")
    atomic_write_bytes(out / "report.md", render_report(results).encode())
    return results


def report_accuracy(model: nn.Module, data: DatasetLike) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    return float((predict_logits(model, data).argmax(1) == data.y).float().mean())


__all__ = [
    "check_outputs",
    "eps_grid",
    "measure",
    "parse_poison",
    "render_report",
    "render_table",
    "rows_of",
    "run_demo",
    "scenario",
]
