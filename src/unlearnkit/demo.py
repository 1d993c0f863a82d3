"""``make demo`` / ``unlearnkit demo``: the main job end to end, through the facade only.

plan the split (with a forget set) → ``uk.train`` the Original → ``uk.prepare`` the SSSE state
(once) → ``Prepared.erase`` the forget set's ids with the safe default ``eps="auto"`` (the
guarded retrain-free ε rule, refused beyond the utility budget) → ``uk.train`` the Retrain on
the retain set → ``uk.evaluate`` (the suite ``unlearnkit evaluate`` prints) → Original / SSSE /
Retrain side by side: accuracy per split, population MIA (forget vs test), normalised parameter
distance, seconds. Writes ``report.md``, ``results.json``, ``eps_curve.png``, the three models
(``uk.save``) and the erasure state after the request.

The ε curve repeats the request at fixed ε (``allow_utility_loss=True``: these models are
measured, never kept) and reads the accuracies every request reports (retained sample,
held-out data, erased samples), against Retrain's accuracies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

import unlearnkit as uk
from unlearnkit import api
from unlearnkit.io import atomic_write_bytes, atomic_write_json

#: the evaluation suite's accuracy names per split (``report["accuracy"][model]``)
ACC = {"retain": "RA", "forget": "FA", "val": "VA", "test": "TA"}
#: table row → the evaluation report's model key
ROWS = {"Original": "original", "SSSE": "unlearned", "Retrain": "retrain"}
#: fixed ε of the curve (half decades, 1e-4 … 1e2)
CURVE_EPS = tuple(round(10.0 ** (k / 2), 7) for k in range(-8, 5))
#: the outputs of one run (models are artifacts: ``.safetensors`` + ``.json``)
FILES = ("results.json", "report.md", "eps_curve.png")
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


def eps_curve(
    prepared: uk.Prepared, model: nn.Module, ids: torch.Tensor, eps: tuple[float, ...] = CURVE_EPS
) -> dict[str, list[float]]:
    """Accuracies after erasing ``ids`` at each fixed ε (retained sample, held-out, erased)."""
    curve: dict[str, list[float]] = {"eps": list(eps)}
    for e in eps:
        acc = prepared.erase(model, ids, eps=e, allow_utility_loss=True).accuracy
        for k, v in acc.items():
            curve.setdefault(k, []).append(v["after"])
    return curve


def run_demo(
    out: str | Path = "demo-out",
    dataset: str = "mnist5k",
    model: str = "cnn",
    forget: str = "random:0.1",
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
    out.mkdir(parents=True, exist_ok=True)
    split = uk.plan(dataset, split_seed=seed, forget=forget, forget_seed=seed)
    ids = split.forget.ids
    log(
        f"{dataset}: {len(split.train)} train ({len(ids)} to forget, {forget}), "
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

    log("evaluating and measuring the ε curve...")
    report = uk.evaluate(
        erased.model,
        split,
        original=original.model,
        retrain=retrain.model,
        method_seconds=erase_seconds,
        retrain_seconds=retrain.seconds,
    )
    seconds = {"Original": original.seconds, "SSSE": erase_seconds, "Retrain": retrain.seconds}
    results = {
        "dataset": dataset,
        "model": model,
        "forget": forget,
        "n_forget": len(ids),
        "epochs": epochs,
        "seed": seed,
        "rows": rows_of(report, seconds),
        "eps": erased.eps,
        "eps_rule": erased.eps_rule,
        "utility_budget": uk.DEFAULT_UTILITY_BUDGET,
        "utility": erased.accuracy,
        "prepare_seconds": prepare_seconds,
        "erase_seconds": erase_seconds,
        "eps_curve": eps_curve(prepared, original.model, ids),
        "evaluation": report,
    }
    atomic_write_json(out / "results.json", results)
    plot_eps_curve(results, out / "eps_curve.png")
    atomic_write_bytes(out / "report.md", render_report(results).encode())
    return results


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_table(results: dict[str, Any]) -> str:
    """The side-by-side Markdown table."""
    head = (
        "| model | retain acc | forget acc | val acc | test acc | MIA (forget vs test) "
        "| ‖θ−θ_R‖/‖θ_O−θ_R‖ | time (s) |"
    )
    lines = [head, "|" + "---|" * 8]
    for name, r in results["rows"].items():
        cells = [_cell(r[k], 4) for k in ACC]
        cells += [_cell(r["mia"], 3), _cell(r["dist_to_retrain"], 3), _cell(r["seconds"], 2)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _utility_lines(results: dict[str, Any]) -> str:
    names = {"retain": "retained sample", "holdout": "held-out", "erased": "erased samples"}
    return "\n".join(
        f"  - {names.get(k, k)}: {a['before']:.4f} → {a['after']:.4f}"
        for k, a in results["utility"].items()
    )


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report: the table, how ε was chosen, the utility check, the ε curve."""
    r = results
    budget = 100 * r["utility_budget"]
    return f"""# unlearnkit demo: SSSE vs retraining on {r["dataset"]} ({r["model"]})

Forget set: `{r["forget"]}` ({r["n_forget"]} samples). The Original and Retrain use the same
initial weights, recipe ({r["epochs"]} epochs of SGD) and seed; Retrain never sees the forget set.

{render_table(r)}

- SSSE time = one erasure request with ε = `auto` ({r["erase_seconds"]:.2f} s: gradients of the
  forget set, the downdate, F⁻¹v, choosing ε and the utility check). The one-off preparation
  (curvature of the whole training set + factorisation) took {r["prepare_seconds"]:.2f} s and
  serves every later request.
- ε = {r["eps"]:g}, rule: {r["eps_rule"]}, chosen **without** the retrained model (forget-set
  losses matched to held-out losses of the same classes, among the ε that keep retained
  accuracy within 1 point). Utility check (budget {budget:.1f} points), before → after:
{_utility_lines(r)}
- MIA: logistic regression on per-sample losses, forget vs test; 0.5 is chance (Retrain's
  value is the target). All metrics: `results.json` → `evaluation` (as `unlearnkit evaluate`).

![ε curve](eps_curve.png)
"""


def plot_eps_curve(results: dict[str, Any], path: Path) -> None:
    """Accuracy after one SSSE step vs ε, Retrain's accuracies dashed, the chosen ε marked."""
    curve, retrain = results["eps_curve"], results["rows"]["Retrain"]
    series = (("retain", "retain", "C0"), ("holdout", "val", "C2"), ("erased", "forget", "C3"))
    fig = Figure(figsize=(6.5, 4))
    ax = fig.add_subplot()
    for key, split, colour in series:
        if key in curve:
            ax.plot(curve["eps"], curve[key], marker=".", color=colour, label=f"SSSE {key}")
        if retrain.get(split) is not None:
            ax.axhline(retrain[split], color=colour, ls="--", lw=1, label=f"Retrain {split}")
    ax.axvline(results["eps"], color="k", lw=1, label=f"ε auto = {results['eps']:g}")
    ax.set_xscale("log")
    ax.set_xlabel("ε")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


__all__ = ["check_outputs", "eps_curve", "render_report", "render_table", "rows_of", "run_demo"]
