"""``unlearnkit reproduce ssse-convex``: the SSSE paper's §3 (CelebA, linear multi-attribute
classifier), on ``mnist-attributes``, the offline stand-in for CelebA's 40 attributes.

Protocol (paper §3, "Results"):

0. inputs: the images average-pooled 2×2 (14×14 = 196 features; ``pool``), a fixed feature
   map as the paper's VGG-Face features;
1. an ℓ2-regularised linear multi-attribute classifier without bias, trained to the optimum
   θ* (full-batch L-BFGS in float64 to ‖∇J‖ ≤ 1e-5, then Newton to ‖∇J‖ ≤ tol = 1e-9), λ equal
   to the ℓ2 coefficient;
2. one Fisher block per attribute (the paper's 40 blocks; here 24);
3. for every attribute a with frequency ≤ 20% and every removal fraction f: S = a random
   fraction f of the training samples having a; retrain θ*_{−S} to the optimum (Newton's
   method on the independent heads, warm-started from θ*: the problem is strictly convex, so
   this is the unique optimum, reached to ‖∇J‖ ≤ tol in a few steps);
4. SSSE over an ε grid; γ_S (eq. 5) on S, and ‖θ̂_ε − θ*_{−S}‖ / ‖θ* − θ*_{−S}‖.

Variants (each one erasure state, prepared once and reused for every S):

* ``paper``: the empirical Fisher of D at θ*, N = n, the step of eq. 4 (as published);
* ``ggn``: the Gauss–Newton matrix of D (= the exact Hessian of the BCE loss for a linear
  model), otherwise as ``paper``: isolates the effect of the curvature;
* ``exact``: the Gauss–Newton of D∖S (an exact downdate of D's), N = n − k, and the
  regularised step Σ_S(∇ℓ_i + λθ): at ε = 1 this is one Newton step on L_{−S} from θ*.

Also reports the retrain-free ε rules (:mod:`unlearnkit.ssse.eps`) against the oracle ε (max
γ_S): ``loss_matching`` with the test samples having attribute a as held-out data, and
``retained_loss`` (line search on J_R = retained loss + (l2/2)‖θ‖² over 1000 retained samples,
guarded by the loss of the test samples without a; γ_S and distance at its refined ε), and
``retained_loss_all``, the same on every retained sample (what a larger sample buys).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from rich.progress import Progress

from unlearnkit.curvature.layout import flat_params
from unlearnkit.data import load_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import select_forget
from unlearnkit.data.splits import train_val_test_split
from unlearnkit.io import atomic_write_bytes, atomic_write_json
from unlearnkit.metrics.distance import normalized_parameter_distance
from unlearnkit.metrics.similarity import similarity_ratio
from unlearnkit.models import build_model
from unlearnkit.reproduce.report import convex_markdown
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.eps import (
    guard_sample,
    loss_matching_rule,
    matched_holdout,
    retained_loss_rule,
)
from unlearnkit.ssse.state import ErasureState
from unlearnkit.training import LBFGSRecipe, predict_logits, train

FRACTIONS: tuple[float, ...] = (0.10, 0.25, 0.50, 1.00)
EPS_GRID: tuple[float, ...] = tuple(float(x) for x in np.round(np.logspace(-1, 1.5, 21), 5))

VARIANTS: dict[str, dict[str, Any]] = {
    "paper": {"curvature": "empirical", "mode": "paper"},
    "ggn": {"curvature": "ggn", "mode": "paper"},
    "exact": {"curvature": "ggn", "mode": "exact", "regularized_step": True},
}


def run_convex(
    out: str | Path,
    l2: float = 1e-3,
    fractions: Sequence[float] = FRACTIONS,
    eps_grid: Sequence[float] = EPS_GRID,
    variants: Sequence[str] = tuple(VARIANTS),
    max_attributes: int | None = None,
    max_frequency: float = 0.20,
    seed: int = 0,
    tol: float = 1e-9,
    dataset: str = "mnist-attributes",
    pool: int = 2,
    log: Any = None,
) -> dict[str, Any]:
    """Run the experiment and write ``results.json`` and Figure 1 (``fig1_gamma.png``,
    ``fig1_distance.png``) to ``out``; returns the results."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    ds = pooled(load_dataset(dataset), pool)
    splits = train_val_test_split(
        ds, val_fraction=0.0, test_fraction=0.2, seed=seed, stratify=False
    )
    train_set, test_set = splits.train, splits.test
    recipe = LBFGSRecipe(l2=l2, tol=1e-5, max_iter=5000, output_dtype="float64")
    init = build_model("linear", ds.input_shape, ds.num_outputs, seed=seed)
    t0 = time.perf_counter()
    orig = train(init, train_set, recipe, seed=seed)
    theta_o, train_grad_norm = newton_refit(orig.model, train_set, l2, tol)  # polish to tol
    train_seconds = time.perf_counter() - t0
    freq = train_set.y.double().mean(0)
    attrs = [a for a in range(ds.num_outputs) if float(freq[a]) <= max_frequency]
    if max_attributes is not None:
        attrs = attrs[:max_attributes]

    states: dict[str, ErasureState] = {}
    prepare_seconds: dict[str, float] = {}
    for v in variants:
        cfg = ErasureConfig(
            task="multilabel",
            damping=l2,
            l2=l2,
            blocks="per_output_head",
            solver="dense",
            group_size=1,
            **VARIANTS[v],
        )
        t0 = time.perf_counter()
        states[v] = ErasureState.prepare(theta_o, train_set, cfg)
        prepare_seconds[v] = time.perf_counter() - t0

    records: list[dict[str, Any]] = []
    retrain_seconds: list[float] = []
    retrain_grad_norms: list[float] = []
    with Progress(transient=True) as progress:
        task = progress.add_task("ssse-convex", total=len(attrs) * len(fractions))
        for a in attrs:
            name = ds.classes[a]
            for f in fractions:
                split = select_forget(
                    train_set,
                    {"kind": "attribute_fraction", "attribute": a, "fraction": f},
                    seed=seed,
                )
                forget, retain = split.forget(train_set), split.retain(train_set)
                t0 = time.perf_counter()
                retr, gn = newton_refit(theta_o, retain, l2, tol)  # the unique optimum of L_{-S}
                retrain_grad_norms.append(gn)
                retrain_seconds.append(time.perf_counter() - t0)
                s_o = predict_logits(theta_o, forget).numpy()
                s_r = predict_logits(retr, forget).numpy()
                labels = forget.y.numpy()
                holdout = matched_holdout(forget, test_set, attribute=a)
                without = test_set.subset(test_set.ids[test_set.y[:, a] == 0])
                guard = guard_sample(retain, seed=seed)
                for v, state in states.items():
                    t0 = time.perf_counter()
                    req = state.request(theta_o, forget)
                    erase_seconds = time.perf_counter() - t0
                    thetas = torch.stack([req.theta_for(e) for e in eps_grid]).numpy()
                    dist = normalized_parameter_distance(
                        thetas,
                        flat_params(retr, state.layout).double().numpy(),
                        flat_params(theta_o, state.layout).double().numpy(),
                    )
                    gam = [
                        similarity_ratio(
                            predict_logits(req.apply(e), forget).numpy(), s_o, s_r, labels
                        )
                        for e in eps_grid
                    ]
                    free = loss_matching_rule(req, forget, holdout, eps_grid, guard)
                    i_free = list(eps_grid).index(free.eps)
                    rules = {}
                    for rname, sample in (("retained_loss", guard), ("retained_loss_all", retain)):
                        rl = retained_loss_rule(req, sample, without, eps_grid, l2=l2)
                        rl_dist = normalized_parameter_distance(
                            req.theta_for(rl.eps)[None].numpy(),
                            flat_params(retr, state.layout).double().numpy(),
                            flat_params(theta_o, state.layout).double().numpy(),
                        )
                        rl_gamma = similarity_ratio(
                            predict_logits(req.apply(rl.eps), forget).numpy(), s_o, s_r, labels
                        )
                        rules.update(
                            {
                                f"eps_{rname}": rl.eps,
                                f"gamma_{rname}": float(rl_gamma),
                                f"distance_{rname}": float(np.asarray(rl_dist).ravel()[0]),
                            }
                        )
                    records.append(
                        {
                            "variant": v,
                            "attribute": name,
                            "fraction": f,
                            "k": len(forget),
                            "gamma": [float(x) for x in gam],
                            "distance": [float(x) for x in dist],
                            "eps_loss_matching": free.eps,
                            "gamma_loss_matching": float(gam[i_free]),
                            "distance_loss_matching": float(dist[i_free]),
                            **rules,
                            "erase_seconds": erase_seconds,
                        }
                    )
                progress.advance(task)
                if log is not None:
                    best = {r["variant"]: max(r["gamma"]) for r in records[-len(states) :]}
                    log(
                        f"{name} {f:.0%}: k={len(forget)} retrain {retrain_seconds[-1]:.1f}s max γ "
                        + str({k: round(v, 3) for k, v in best.items()})
                    )

    results = summarise(records, list(eps_grid), list(fractions), list(variants))
    results.update(
        {
            "dataset": dataset,
            "pool": pool,
            "input_shape": list(ds.input_shape),
            "n_train": len(train_set),
            "n_test": len(test_set),
            "l2": l2,
            "attributes": [ds.classes[a] for a in attrs],
            "attribute_frequency": {ds.classes[a]: float(freq[a]) for a in attrs},
            "train_grad_norm": train_grad_norm,
            "lbfgs_grad_norm": orig.grad_norm,
            "train_seconds": train_seconds,
            "mean_retrain_seconds": float(np.mean(retrain_seconds)) if retrain_seconds else None,
            "max_retrain_grad_norm": float(np.max(retrain_grad_norms))
            if retrain_grad_norms
            else None,
            "prepare_seconds": prepare_seconds,
            "total_seconds": time.perf_counter() - t_start,
            "records": records,
        }
    )
    atomic_write_json(out / "results.json", results)
    plot_figure1(results, out)
    atomic_write_bytes(out / "README.md", convex_markdown(results).encode())
    return results


def newton_refit(
    model: torch.nn.Module, data: ArrayDataset, l2: float, tol: float, max_iter: int = 50
) -> tuple[torch.nn.Module, float]:
    """Exact optimum of J(W) = (1/n)Σ_i Σ_k BCE(w_k·x_i, y_ik) + (l2/2)‖W‖² for the no-bias
    linear multilabel model by Newton's method, all heads at once (the heads are independent:
    ∇_k J = Xᵀ(p_k − y_k)/n + l2·w_k, H_k = Xᵀdiag(p_k(1−p_k))X/n + l2·I). Warm-started from
    ``model``; stops when ‖∇J‖₂ ≤ tol. J is strictly convex, so this is the same unique
    optimum L-BFGS reaches, in a handful of quadratically convergent steps. Returns a new model
    and the final gradient norm."""
    out = copy.deepcopy(model).double()
    X = data.x.reshape(len(data), -1).double()
    Y = data.y.double()
    n = X.shape[0]
    W = out.fc.weight.detach().clone()
    eye = torch.eye(X.shape[1], dtype=torch.float64)
    gnorm = float("inf")
    for _ in range(max_iter):
        P = torch.sigmoid(X @ W.T)
        G = (P - Y).T @ X / n + l2 * W
        gnorm = float(G.norm())
        if gnorm <= tol:
            break
        H = torch.einsum("nk,ni,nj->kij", P * (1 - P), X, X) / n + l2 * eye
        W = W - torch.linalg.solve(H, G.unsqueeze(2)).squeeze(2)
    if gnorm > tol:
        raise RuntimeError(f"Newton refit stopped at ‖∇J‖ = {gnorm:.2e} > {tol:.1e}")
    with torch.no_grad():
        out.fc.weight.copy_(W)
    return out, gnorm


def pooled(ds: ArrayDataset, pool: int) -> ArrayDataset:
    """Average-pool image inputs by ``pool`` (28×28 → 14×14 for pool = 2): the fixed feature
    map of this experiment, as the paper's fixed VGG-Face features. Fewer, smoother features
    make the L-BFGS retrains (one per attribute and fraction) about 4× cheaper."""
    if pool <= 1 or ds.x.dim() != 4:
        return ds
    x = torch.nn.functional.avg_pool2d(ds.x, pool)
    return ArrayDataset(ds.name, x, ds.y, ds.ids, ds.task, ds.classes, ds.meta)


def summarise(
    records: list[dict[str, Any]], grid: list[float], fractions: list[float], variants: list[str]
) -> dict[str, Any]:
    """Mean/std over attributes of γ_S and distance per (variant, fraction, ε); best ε."""
    summary: dict[str, Any] = {"eps_grid": grid, "summary": {}}
    for v in variants:
        summary["summary"][v] = {}
        for f in fractions:
            rs = [r for r in records if r["variant"] == v and r["fraction"] == f]
            if not rs:
                continue
            g = np.array([r["gamma"] for r in rs])
            d = np.array([r["distance"] for r in rs])
            gm = g.mean(0)
            i = int(np.argmax(gm))
            summary["summary"][v][str(f)] = {
                "gamma_mean": gm.tolist(),
                "gamma_std": g.std(0).tolist(),
                "distance_mean": d.mean(0).tolist(),
                "distance_std": d.std(0).tolist(),
                "best_eps": grid[i],
                "best_gamma_mean": float(gm[i]),
                "distance_at_best_eps": float(d.mean(0)[i]),
                "min_distance_mean": float(d.mean(0).min()),
                "eps_min_distance": grid[int(np.argmin(d.mean(0)))],
                "loss_matching_gamma_mean": float(np.mean([r["gamma_loss_matching"] for r in rs])),
                "loss_matching_distance_mean": float(
                    np.mean([r["distance_loss_matching"] for r in rs])
                ),
                "loss_matching_eps_median": float(np.median([r["eps_loss_matching"] for r in rs])),
                **_rule_summary(rs),
                "n_attributes": len(rs),
            }
    return summary


def _rule_summary(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per retrain-free rule: mean γ_S and distance at its ε, median ε, and the records where
    it is near the oracle (γ_S ≥ max_ε γ_S − 0.05) and moves towards θ*_{−S} (distance < 1)."""
    out: dict[str, Any] = {}
    for rule in ("loss_matching", "retained_loss", "retained_loss_all"):
        if f"gamma_{rule}" not in rs[0]:
            continue
        near = sum(r[f"gamma_{rule}"] >= max(r["gamma"]) - 0.05 for r in rs)
        closer = sum(r[f"distance_{rule}"] < 1.0 for r in rs)
        out.update(
            {
                f"{rule}_gamma_mean": float(np.mean([r[f"gamma_{rule}"] for r in rs])),
                f"{rule}_distance_mean": float(np.mean([r[f"distance_{rule}"] for r in rs])),
                f"{rule}_eps_median": float(np.median([r[f"eps_{rule}"] for r in rs])),
                f"{rule}_near_oracle_gamma": f"{near}/{len(rs)}",
                f"{rule}_distance_below_1": f"{closer}/{len(rs)}",
            }
        )
    return out


def plot_figure1(results: dict[str, Any], out: Path) -> None:
    """Figure 1 of the paper: (a) mean γ_S vs ε, (b) mean normalised distance vs ε; one
    panel column per variant, one line per removal fraction."""
    grid = results["eps_grid"]
    variants = list(results["summary"])
    for key, fname, ylabel in (
        ("gamma", "fig1_gamma.png", "similarity ratio γ_S (higher is better)"),
        ("distance", "fig1_distance.png", "‖θ̂−θ*₋S‖ / ‖θ*−θ*₋S‖ (lower is better)"),
    ):
        fig = Figure(figsize=(4.2 * len(variants), 3.6))
        axes = fig.subplots(1, len(variants), sharey=True, squeeze=False)
        for ax, v in zip(axes[0], variants, strict=True):
            for f, s in results["summary"][v].items():
                m, sd = np.array(s[f"{key}_mean"]), np.array(s[f"{key}_std"])
                ax.plot(grid, m, marker=".", label=f"{float(f):.0%} removed")
                ax.fill_between(grid, m - sd, m + sd, alpha=0.15)
            ax.set_xscale("log")
            ax.set_xlabel("ε")
            ax.set_title(v)
            ax.grid(alpha=0.3)
            if key == "distance":
                ax.set_ylim(0, 2)
        axes[0][0].set_ylabel(ylabel)
        axes[0][-1].legend(fontsize=8)
        fig.suptitle(f"SSSE on {results['dataset']} (linear, λ = {results['l2']:g})")
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
