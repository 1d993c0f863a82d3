"""``unlearnkit reproduce ssse-deep``: the SSSE paper's §4 (ResNet20 on CIFAR-10) at CPU scale.

The ``cnn`` on ``mnist5k`` and ``mnist1d`` (``resnet20`` where time allows, ``--model``),
trained with SGD + momentum (no augmentation), then for each class c in ``classes``:

* **class**: remove every training sample of class c;
* **half**: remove a random half of the training samples of class c.

Each scenario has its retrained reference (same initial weights, recipe and seed, retain
only). SSSE uses grouped gradients (the paper's "mini-batches of 10 gradients") and
per-layer blocks (``--blocks chunks --block-size B`` for the paper's fixed-size blocks), in two
variants: ``paper`` (the Fisher of D) and ``exact`` (the Fisher of D∖S by an exact downdate of
the grouped rows). For every ε of the coarse grid: g_k(ε) = |Acc_k(θ̂_ε) − Acc_k(θ*_{−S})| on
the splits k ∈ {retain, forget, test}, the quantity of the paper's Figure 2.

**Oracle best ε** (needs the retrained model). The paper shows Figure 2 but states no rule for
§4. The targets checked here are per-split tolerances τ_k: whole-class removal within 2 points
on retain and test with forget accuracy ≤ 5% (the retrained model's forget accuracy is 0, so
this is g_forget ≤ 5 points), half-class removal within 3 points on every split. The primary
criterion, ``worst_split``, is therefore the Chebyshev distance in tolerance units,

    ε* = argmin_ε  max_k g_k(ε) / τ_k,

whose minimum is ≤ 1 exactly when some evaluated ε meets every target: "met at the best ε"
and "met at some ε" coincide, so a miss is a property of SSSE, not of the criterion. The
summed gap Σ_k g_k(ε) (the earlier definition, and ``accuracy_gap`` in
:mod:`unlearnkit.ssse.eps`) is still computed and reported beside it (``sum``): it lets one
split exceed its tolerance when the others are small (gaps 2.6/0/1.9 beat 1.9/3.0/1.5 although
only the second meets the whole-class target), so it answers a different question (the L1
distance to retrain in accuracy space). Ties go to the smallest ε (the gentlest step).

**Refinement.** The grid has 5 points per decade (neighbours differ by ×1.58). After the
coarse grid, ``refine`` log-spaced points strictly inside the bracket (grid[i−1], grid[i+1])
around each criterion's coarse best i are evaluated (Δ is computed once per request, so this
costs forward passes only), and each criterion's best is its argmin over the union of the
coarse and refined points. ``refine = 0`` gives the coarse-grid argmin. Figure 2 plots the
coarse grid only.

**Retrain-free ε** (held-out: the validation samples of class c; utility guard: 1000 retained
samples, ≤ 1 point drop): ``class_forgetting`` for whole-class removal and ``loss_matching``
for half-class removal; every scenario also compares (``rules``) ``loss_matching`` and
``retained_loss`` (line search on the loss of the 1000 retained samples, guarded by the loss of
the validation samples of the other classes; its own golden-section refinement). The rule is refined the same way around its *own* coarse choice (never
around the oracle's), so it still never sees the retrained model; its gaps are reported at
its choice.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from rich.progress import Progress

from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import select_forget
from unlearnkit.data.splits import train_val_test_split
from unlearnkit.io import atomic_write_bytes, atomic_write_json
from unlearnkit.models import build_model
from unlearnkit.reproduce.report import deep_markdown
from unlearnkit.reproduce.search import (
    COMPARED_RULES,
    CRITERIA,
    FREE_RULES,
    RULE_KINDS,
    SELF_REFINING,
    SPLITS,
    TOLERANCE,
    check_grid,
    free_search,
    oracle_search,
    rule_outcome,
)
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.eps import (
    guard_sample,
    matched_holdout,
)
from unlearnkit.ssse.request import ErasureRequest
from unlearnkit.ssse.state import ErasureState
from unlearnkit.training import SGDRecipe, evaluate_accuracy, train

EPS_GRID: tuple[float, ...] = tuple(float(x) for x in np.round(np.logspace(-3, 1, 21), 6))
DATASET_PARAMS: dict[str, dict[str, Any]] = {"mnist1d": {"size": 5000}}


class _AccuracyCache:
    """Accuracies of θ̂_ε on the splits, memoised by ε (each ε is applied once)."""

    def __init__(self, req: ErasureRequest, data: dict[str, ArrayDataset]) -> None:
        self.req, self.data = req, data
        self.cache: dict[float, dict[str, float]] = {}

    def __call__(self, eps: float) -> dict[str, float]:
        if eps not in self.cache:
            m = self.req.apply(eps)
            self.cache[eps] = {k: evaluate_accuracy(m, self.data[k]) for k in SPLITS}
        return self.cache[eps]


def run_deep(
    out: str | Path,
    datasets: Sequence[str] = ("mnist5k", "mnist1d"),
    model: str = "cnn",
    classes: Sequence[int] = (0, 1),
    epochs: int = 15,
    batch_size: int = 64,
    lr: float = 0.05,
    group_size: int = 10,
    damping: float = 1e-3,
    blocks: str = "per_layer",
    block_size: int | None = None,
    variants: Sequence[str] = ("paper", "exact"),
    eps_grid: Sequence[float] = EPS_GRID,
    refine: int = 12,
    criterion: str = "worst_split",
    seed: int = 0,
) -> dict[str, Any]:
    """Run the experiment; write ``results.json``, ``README.md`` and ``fig2_<dataset>.png`` to
    ``out``. ``refine`` points around each coarse best (0: coarse grid only); ``criterion``
    names the oracle criterion (:data:`CRITERIA`)."""
    check_grid(eps_grid, refine)
    CRITERIA.get(criterion)
    t_start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "eps_grid": list(eps_grid),
        "refine": refine,
        "criterion": criterion,
        "tolerance": TOLERANCE,
        "model": model,
        "group_size": group_size,
        "damping": damping,
        "blocks": blocks,
        "epochs": epochs,
        "datasets": {},
    }
    recipe = SGDRecipe(epochs=epochs, batch_size=batch_size, lr=lr, augment=())
    for name in datasets:
        ds = load_dataset(name, **DATASET_PARAMS.get(name, {}))
        sp = train_val_test_split(ds, val_fraction=0.1, test_fraction=0.2, seed=seed)
        init = build_model(model, ds.input_shape, ds.num_outputs, seed=seed)
        t0 = time.perf_counter()
        orig = train(init, sp.train, recipe, seed=seed).model.eval()
        train_seconds = time.perf_counter() - t0
        opts = {"size": block_size} if blocks == "chunks" else {}
        states, prep = {}, {}
        for v in variants:
            cfg = ErasureConfig(
                task="multiclass",
                damping=damping,
                group_size=group_size,
                blocks=blocks,
                block_options=opts,
                mode=v,
                seed=seed,
            )
            t0 = time.perf_counter()
            states[v] = ErasureState.prepare(orig, sp.train, cfg)
            prep[v] = time.perf_counter() - t0
        scen: list[dict[str, Any]] = []
        with Progress(transient=True) as progress:
            task = progress.add_task(f"ssse-deep {name}", total=2 * len(classes))
            for c in classes:
                for kind, spec in (
                    ("class", {"kind": "class", "label": c}),
                    ("half", {"kind": "class_fraction", "label": c, "fraction": 0.5}),
                ):
                    fs = select_forget(sp.train, spec, seed=seed)
                    retain, forget = fs.retain(sp.train), fs.forget(sp.train)
                    data = {"retain": retain, "forget": forget, "test": sp.test}
                    t0 = time.perf_counter()
                    retr = train(init, retain, recipe, seed=seed).model.eval()
                    retrain_seconds = time.perf_counter() - t0
                    ref = {k: evaluate_accuracy(retr, d) for k, d in data.items()}
                    base = {k: evaluate_accuracy(orig, d) for k, d in data.items()}
                    holdout = matched_holdout(forget, sp.val)
                    guard = guard_sample(retain, seed=seed)
                    other = sp.val.subset(sp.val.ids[sp.val.y != c])
                    for v, state in states.items():
                        t0 = time.perf_counter()
                        req = state.request(orig, forget)
                        erase_seconds = time.perf_counter() - t0
                        accuracy = _AccuracyCache(req, data)
                        t0 = time.perf_counter()
                        found = oracle_search(
                            accuracy, ref, eps_grid, TOLERANCE[kind], refine, criterion
                        )
                        search_seconds = time.perf_counter() - t0
                        rule = FREE_RULES[kind](req, forget, holdout, guard)
                        free = free_search(rule, eps_grid, refine)
                        free_acc = accuracy(free.eps)
                        rules = {free.rule: rule_outcome(accuracy, ref, TOLERANCE[kind], free)}
                        for rname, build in COMPARED_RULES.items():
                            if rname in rules or kind not in RULE_KINDS.get(rname, {kind}):
                                continue
                            rfn = build(req, forget, holdout, guard, other)
                            ch = (
                                rfn(list(eps_grid))
                                if rname in SELF_REFINING
                                else free_search(rfn, eps_grid, refine)
                            )
                            rules[rname] = rule_outcome(accuracy, ref, TOLERANCE[kind], ch)
                        scen.append(
                            {
                                "variant": v,
                                "kind": kind,
                                "class": c,
                                "k": len(forget),
                                "original": base,
                                "retrain": ref,
                                **found,
                                "free_rule": free.rule,
                                "free_eps": free.eps,
                                "free_coarse_eps": free.extra.get("coarse_eps", free.eps),
                                "free_grid": free.grid,
                                "free_scores": free.scores,
                                "accuracy_at_free": free_acc,
                                "gap_at_free": {k: abs(free_acc[k] - ref[k]) for k in SPLITS},
                                "rules": rules,
                                "erase_seconds": erase_seconds,
                                "search_seconds": search_seconds,
                                "retrain_seconds": retrain_seconds,
                            }
                        )
                    progress.advance(task)
        results["datasets"][name] = {
            "n_train": len(sp.train),
            "n_test": len(sp.test),
            "train_seconds": train_seconds,
            "prepare_seconds": prep,
            "original_test_accuracy": evaluate_accuracy(orig, sp.test),
            "scenarios": scen,
            "summary": summarise(scen),
        }
        results["total_seconds"] = time.perf_counter() - t_start
        atomic_write_json(out / "results.json", results)
        plot_figure2(results, name, out)
        atomic_write_bytes(out / "README.md", deep_markdown(results).encode())
    return results


def summarise(scen: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (variant, kind): mean/max gap at the best ε, mean forget accuracy there, the number
    of scenarios meeting every target, and the mean gap at the retrain-free choice."""
    out: dict[str, Any] = {}
    for v in sorted({s["variant"] for s in scen}):
        for kind in ("class", "half"):
            rs = [s for s in scen if s["variant"] == v and s["kind"] == kind]
            if not rs:
                continue
            out[f"{v}/{kind}"] = {
                "mean_gap_at_best": {
                    k: float(np.mean([r["gap_at_best"][k] for r in rs])) for k in SPLITS
                },
                "max_gap_at_best": {
                    k: float(np.max([r["gap_at_best"][k] for r in rs])) for k in SPLITS
                },
                "mean_forget_accuracy_at_best": float(
                    np.mean([r["accuracy_at_best"]["forget"] for r in rs])
                ),
                "targets_met": f"{sum(r['all_targets_met'] for r in rs)}/{len(rs)}",
                "rules_targets_met": {
                    name: f"{sum(r['rules'][name]['all_targets_met'] for r in rs)}/{len(rs)}"
                    for name in rs[0].get("rules", {})
                },
                "mean_gap_at_free": {
                    k: float(np.mean([r["gap_at_free"][k] for r in rs])) for k in SPLITS
                },
                "best_eps": [r["best_eps"] for r in rs],
                "free_eps": [r["free_eps"] for r in rs],
            }
    return out


def plot_figure2(results: dict[str, Any], name: str, out: Path) -> None:
    """Figure 2: |Acc(SSSE_ε) − Acc(retrain)| vs ε on retain, forget, test (mean ± std over
    classes), one line per (variant, scenario)."""
    grid = results["eps_grid"]
    scen = results["datasets"][name]["scenarios"]
    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, k in zip(axes, SPLITS, strict=True):
        for v in sorted({s["variant"] for s in scen}):
            for kind, style in (("class", "-"), ("half", "--")):
                rs = [s for s in scen if s["variant"] == v and s["kind"] == kind]
                if not rs:
                    continue
                g = 100 * np.array([r["gap"][k] for r in rs])
                m, sd = g.mean(0), g.std(0)
                ax.plot(grid, m, style, marker=".", label=f"{v}, {kind} removal")
                ax.fill_between(grid, np.maximum(m - sd, 0), m + sd, alpha=0.12)
        ax.set_xscale("log")
        ax.set_xlabel("ε")
        ax.set_title(f"{k}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("|Acc(SSSE) − Acc(retrain)| (points)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(
        f"SSSE vs retrain on {name} ({results['model']}, groups of {results['group_size']})"
    )
    fig.tight_layout()
    fig.savefig(out / f"fig2_{name}.png", dpi=120)
