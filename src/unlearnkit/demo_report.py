"""The demo's outputs: the side-by-side table, ``report.md`` and the two pictures.

``changes.png``: per-class test accuracy of Original / SSSE (auto ε) / Retrain (and SSSE at
the oracle ε of the grid, hatched), and a row of erased samples with their recorded (poisoned)
label, true label and the class each model predicts. ``eps_curve.png``: accuracy after one
SSSE step vs ε with Retrain's accuracies dashed and the chosen ε marked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from unlearnkit.data.base import DatasetLike

#: terminal / Markdown columns: (row key, header, digits)
COLUMNS = (
    ("poisoned_class_acc", "test, class {src}", 3),
    ("test", "test", 3),
    ("erased_acc_recorded", "erased vs given label", 3),
    ("erased_acc_true", "erased vs true label", 3),
    ("dist_to_retrain", "dist to Retrain", 3),
    ("seconds", "time (s)", 1),
)
#: bar colours per row
COLOURS = {"Original": "C3", "SSSE": "C0", "SSSE oracle ε": "C0", "Retrain": "C2"}


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_table(results: dict[str, Any]) -> str:
    """The side-by-side Markdown table (the oracle row names its ε; columns no row has, such
    as the poisoned class's accuracy of a clean-data run, are left out)."""
    src = results.get("poison_source") or "–"
    rows = results["rows"].values()
    columns = [c for c in COLUMNS if any(r.get(c[0]) is not None for r in rows)]
    heads = [h.format(src=src) for _, h, _ in columns]
    lines = ["| model | " + " | ".join(heads) + " |", "|" + "---|" * (len(columns) + 1)]
    for name, r in results["rows"].items():
        label = name
        if name == "SSSE":
            label = f"SSSE auto ε={results['eps']:.2g}"
        elif name == "SSSE oracle ε":
            label = f"SSSE ε={results['oracle_eps']:.2g} (oracle)"
        cells = [_cell(r.get(k), d) for k, _, d in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(
        "\naccuracies on the test set (all, and the poisoned class) and on the erased samples "
        "against their given (poisoned) and true labels; dist = ‖θ−θ_R‖/‖θ_O−θ_R‖; the "
        "oracle row picks the grid ε closest to the Retrain, so it needs the Retrain"
    )
    return "\n".join(lines)


def _utility_lines(results: dict[str, Any]) -> str:
    names = {"retain": "retained sample", "holdout": "held-out", "erased": "erased samples"}
    return "\n".join(
        f"  - {names.get(k, k)}: {a['before']:.4f} → {a['after']:.4f}"
        for k, a in results["utility"].items()
    )


def _scenario_text(r: dict[str, Any]) -> str:
    p = r["poison"]
    if p is None:
        return f"Forget set: `{r['forget']}` ({r['n_forget']} samples, clean labels)."
    return (
        f"Poison: `{p['spec']}` (seed {p['seed']}) of the training set relabelled as class "
        f"{p['to']}, recorded in the data plan. The erasure request names exactly the "
        f"{r['n_forget']} poisoned ids"
        + ("." if r["forget"] == "poisoned ids" else f" (forget spec `{r['forget']}`).")
    )


def recovered(results: dict[str, Any], row: str = "SSSE") -> float | None:
    """Share of the Original → Retrain gap on the poisoned class's test accuracy that ``row``
    closes: (a_row − a_O) / (a_R − a_O); None without poison or without a gap."""
    acc = {k: results["rows"][k].get("poisoned_class_acc") for k in ("Original", row, "Retrain")}
    if None in acc.values() or abs(acc["Retrain"] - acc["Original"]) < 1e-12:
        return None
    return (acc[row] - acc["Original"]) / (acc["Retrain"] - acc["Original"])


def verdict(results: dict[str, Any]) -> str:
    """One honest sentence on how far SSSE (auto ε, and the oracle ε) moved toward Retrain."""
    rows, auto, oracle = results["rows"], recovered(results), recovered(results, "SSSE oracle ε")
    dist = rows["SSSE"]["dist_to_retrain"]
    if auto is None or oracle is None:
        return f"SSSE (auto ε) ends at distance {dist:.3f} from the Retrain (Original: 1)."
    text = (
        f"SSSE with auto ε = {results['eps']:g} closes {100 * auto:.0f} % of the Original → "
        f"Retrain gap on class {results['poison_source']} (distance {dist:.3f}); at the oracle "
        f"grid ε = {results['oracle_eps']:g} it closes {100 * oracle:.0f} %."
    )
    if auto < 0.25:
        text += (
            " The auto rule (loss matching) barely moves here: it picks the ε at which the "
            "erased samples' losses under their recorded labels look like held-out losses of "
            "that class. Correctly labelled held-out samples have low losses, while a model "
            "that never saw the mislabelled samples gives them high losses, so the rule's "
            "premise (an erased sample looks like unseen data of its class) fails for "
            "mislabelled data and it keeps ε at the small end of its grid."
        )
    return text


def render_report(results: dict[str, Any]) -> str:
    """The Markdown report: scenario, table, how ε was chosen, the utility check, pictures."""
    r = results
    budget = 100 * r["utility_budget"]
    rows = r["rows"]
    mia = " / ".join(f"{k} {_cell(rows[k].get('mia'), 3)}" for k in ("Original", "SSSE", "Retrain"))
    return f"""# unlearnkit demo: SSSE vs retraining on {r["dataset"]} ({r["model"]})

{_scenario_text(r)} The Original and Retrain use the same initial weights, recipe
({r["epochs"]} epochs of SGD) and seed; Retrain never sees the erased samples.

{render_table(r)}

{verdict(r)}

- SSSE time = one erasure request with ε = `auto` ({r["erase_seconds"]:.2f} s: gradients of the
  erased samples, the downdate, F⁻¹v, choosing ε and the utility check). The one-off
  preparation (curvature of the whole training set + factorisation) took
  {r["prepare_seconds"]:.2f} s and serves every later request.
- ε = {r["eps"]:g}, rule: {r["eps_rule"]}, chosen **without** the retrained model. Utility
  check (budget {budget:.1f} points), before → after:
{_utility_lines(r)}
- The *oracle* row repeats the request at the grid ε closest to the Retrain in parameters
  (ε = {r["oracle_eps"]:g}); it needs the retrained model, so it is a yardstick for the ε rule,
  not something a deletion request can use.
- MIA (logistic regression on losses, erased vs test; 0.5 is chance): {mia}.
  All metrics: `results.json` → `evaluation` (as `unlearnkit evaluate`).

![what changed](changes.png)

![ε curve](eps_curve.png)
"""


def _image(x: np.ndarray) -> np.ndarray:
    """A 2-D picture of one input: the first channel of an image, a square of a flat vector."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 3:
        return x[0] if x.shape[0] in (1, 3) else x[..., 0]
    side = int(round(np.sqrt(x.size)))
    return x.reshape(side, side) if side * side == x.size else x.reshape(1, -1)


def plot_changes(results: dict[str, Any], erased: DatasetLike, path: Path, n: int = 8) -> None:
    """Per-class test accuracy bars per model, and ``n`` erased samples with recorded label →
    true label and each model's prediction (O = Original, S = SSSE, R = Retrain)."""
    rows, classes = results["rows"], results["classes"]
    fig = Figure(figsize=(10, 6.2))
    grid = fig.add_gridspec(2, n, height_ratios=(2.2, 1))
    ax = fig.add_subplot(grid[0, :])
    names = [k for k in ("Original", "SSSE", "SSSE oracle ε", "Retrain") if k in rows]
    width = 0.8 / len(names)
    xs = np.arange(len(classes))
    for i, name in enumerate(names):
        acc = [np.nan if a is None else a for a in rows[name]["test_per_class"]]
        label = {"SSSE": "SSSE (auto ε)", "SSSE oracle ε": "SSSE (grid ε, oracle)"}.get(name, name)
        hatch = "//" if name == "SSSE oracle ε" else None
        ax.bar(xs + (i - (len(names) - 1) / 2) * width, acc, width, label=label,
               color=COLOURS[name], alpha=0.55 if hatch else 0.9, hatch=hatch)  # fmt: skip
    ax.set_xticks(xs, [str(c) for c in classes])
    ax.set_xlabel("class (test set)")
    ax.set_ylabel("accuracy")
    lo = np.nanmin([a for k in names for a in rows[k]["test_per_class"] if a is not None])
    ax.set_ylim(max(0.0, lo - 0.1), 1.0)
    ax.legend(fontsize=8, ncol=len(names), loc="lower left")
    ax.grid(axis="y", alpha=0.3)
    src = results.get("poison_source")
    title = f"{results['dataset']}: per-class test accuracy"
    if src is not None:
        title += f" (class {src} poisoned as {results['poison_target']} in training)"
    ax.set_title(title, fontsize=10)
    pred = {k[0]: rows[k]["erased_pred"] for k in ("Original", "SSSE", "Retrain")}
    recorded, true = results["erased_recorded_labels"], results["erased_true_labels"]
    # the samples whose prediction retraining changed first, then the others (erased order)
    order = sorted(range(len(recorded)), key=lambda i: pred["O"][i] == pred["R"][i])
    for j, i in enumerate(order[:n]):
        sub = fig.add_subplot(grid[1, j])
        sub.imshow(_image(erased.x[i].numpy()), cmap="gray")
        sub.set_xticks([])
        sub.set_yticks([])
        shown = f"{recorded[i]} (true {true[i]})" if recorded[i] != true[i] else f"{recorded[i]}"
        preds = " ".join(f"{k}:{classes[pred[k][i]]}" for k in "OSR")
        sub.set_title(f"label {shown}\n{preds}", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.text(0.5, 0.01, "erased samples (those retraining changed first): recorded label; "
             "predicted by O = Original, S = SSSE (auto ε), R = Retrain", ha="center",
             fontsize=8)  # fmt: skip
    fig.savefig(path, dpi=110)


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
    if any(v is not None for v in curve.get("poisoned_class", [])):
        src = results["poison_source"]
        ax.plot(curve["eps"], curve["poisoned_class"], marker=".", color="C1",
                label=f"SSSE test class {src}")  # fmt: skip
        ax.axhline(retrain["poisoned_class_acc"], color="C1", ls="--", lw=1,
                   label=f"Retrain class {src}")  # fmt: skip
    ax.axvline(results["eps"], color="k", lw=1, label=f"ε auto = {results['eps']:g}")
    ax.axvline(results["oracle_eps"], color="k", ls=":", lw=1, label="oracle ε")
    ax.set_xscale("log")
    ax.set_xlabel("ε")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


__all__ = [
    "plot_changes",
    "plot_eps_curve",
    "recovered",
    "render_report",
    "render_table",
    "verdict",
]
