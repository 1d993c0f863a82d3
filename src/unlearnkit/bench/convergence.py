"""Search convergence: the best selection score ‖o‖₂ after each trial, per study.

For one study, over its finished trials (COMPLETE or PRUNED) in trial-number order, the curve
is b_k = min{‖o_t‖₂ : t among the first k, t COMPLETE} (∞ until the first COMPLETE trial;
pruned trials are never selected, so they do not lower it). The Original's score ‖o_O‖₂ (the
study's ``original_values``) is drawn for reference. :func:`plot_convergence` draws one panel
per method, one line per search seed, one figure per setting.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from unlearnkit.bench.figures import pyplot, save_figure
from unlearnkit.bench.search import FINISHED, make_storage, score


def running_best(trials: list[FrozenTrial]) -> list[float]:
    """b_1..b_n of the module docstring."""
    best, out = math.inf, []
    for t in sorted((t for t in trials if t.state in FINISHED), key=lambda t: t.number):
        if t.state == TrialState.COMPLETE and t.values is not None:
            best = min(best, score(t.values))
        out.append(best)
    return out


def load_curves(ctx: Any) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``{(setting, method): [{"seed", "best", "original", "pruned"}, ...]}`` from the
    experiment's Optuna storage; studies not (yet) in it are skipped."""
    exp = ctx.exp
    if exp.search.trials == 0 or not ctx.storage:
        return {}
    url = str(ctx.storage)
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return {}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = make_storage(url)
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d, m in ctx.settings():
        for method in exp.method_names():
            if not ctx.searched(method):
                continue
            for seed in exp.search_seeds():
                try:
                    study = optuna.load_study(
                        study_name=ctx.study_name(d, m, method, seed), storage=storage
                    )
                except KeyError:
                    continue
                trials = study.get_trials(deepcopy=False)
                orig = study.user_attrs.get("original_values")
                out.setdefault((f"{d.tag} / {m.tag}", method), []).append(
                    {
                        "seed": seed,
                        "best": running_best(trials),
                        "original": score(orig) if orig else math.nan,
                        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
                    }
                )
    return out


def plot_convergence(
    curves: dict[tuple[str, str], list[dict[str, Any]]], setting: str, path: Path
) -> Path:
    """One figure for ``setting``: a panel per method, best ‖o‖₂ against trials."""

    plt = pyplot()
    methods = [m for (s, m) in curves if s == setting]
    ncols = min(4, max(1, len(methods)))
    nrows = max(1, math.ceil(len(methods) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(3.2 * ncols, 2.4 * nrows), squeeze=False, layout="constrained"
    )
    data: dict[str, Any] = {}
    for ax, method in zip(axes.flat, methods, strict=False):
        runs = curves[(setting, method)]
        data[method] = [
            {**r, "best": [b if math.isfinite(b) else None for b in r["best"]]} for r in runs
        ]
        for r in runs:
            xs = list(range(1, len(r["best"]) + 1))
            ax.step(xs, r["best"], where="post", label=f"seed {r['seed']}")
            if math.isfinite(r["original"]):
                ax.axhline(r["original"], color="grey", ls="--", lw=0.8)
        ax.set_title(method, fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel("best ‖o‖₂", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(methods) :]:
        ax.set_visible(False)
    fig.suptitle(f"Search convergence, {setting} (dashed: the Original's ‖o‖₂)", fontsize=10)
    return save_figure(fig, path, data)
