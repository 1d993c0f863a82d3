"""Exact rows vs K-FAC vs EK-FAC for SSSE, in one run: cost, and how close each erasure gets.

For each setting (a registered dataset, model and training recipe) the Original is trained
once (seed 0) and every curvature family is prepared on its training data at θ_F = θ_orig:

* ``exact``: :class:`~unlearnkit.ssse.ErasureState` with one row per sample (``group_size=1``,
  the per-sample empirical Fisher that K-FAC approximates), ``per_layer`` blocks, λ = 1e-3;
* ``exact-g10``: the engine's defaults (rows = means of 10 gradients, normaliser = rows);
* ``kfac``: :func:`~unlearnkit.curvature.kfac.accumulate` + ``KroneckerCurvature.build``;
* ``ekfac``: K-FAC plus the corrected scales (:func:`~unlearnkit.curvature.kfac.scale_sums`).

For each forget set S (k samples) one request per family gives the direction
Δ = (F_{D∖S} + λI)⁻¹ Σ_{i∈S} ∇ℓ_i (exact: :meth:`ErasureState.request`, leave-S-out by
downdating the rows; K-FAC/EK-FAC: :func:`~unlearnkit.curvature.kfac.leave_out` then
:func:`~unlearnkit.curvature.kfac.ssse_direction`, EK-FAC scales kept in D's eigenbasis) and
the erased model θ = θ_orig + ε/(n − k)·Δ with the **same ε** for every family: the ε that
the exact engine's default rule (``eps="auto"``, loss matching under the utility budget) picks
for the ``exact`` request. Reported per family:

* prepare seconds and state bytes (distinct tensor storages: rows + block inverses; K-FAC:
  factor sums + eigenbases; EK-FAC: + scale sums), one request's seconds, and their ratios to
  ``exact`` (same run, one torch thread);
* ``cos_exact`` = cos(Δ, Δ_exact), ``dist_exact`` = ‖θ − θ_exact‖ / ‖θ_exact − θ_orig‖;
* ``dist_retrain`` = ‖θ − θ_retrain‖ / ‖θ_orig − θ_retrain‖ (θ_retrain: the same recipe, init
  and seed on D∖S), also over an ε grid (``retrain_grid``), and forget / retain / test accuracy
  for original, each family, and retrain.

The ``fit`` section (:mod:`curvature_fit`) estimates which family fits which model on this
machine (MLP widths, ResNet-20, ResNet-18 on CIFAR-10 shapes) against
:func:`~unlearnkit.curvature.memory.default_memory_budget`, and prepares two points for real:
the widest MLP whose K-FAC estimate fits ``--verify-budget-gib`` and ResNet-18 (K-FAC and
EK-FAC, on random CIFAR-shaped inputs), with measured peak RSS beside the estimate.

    nice -n 10 python benchmarks/curvature_families.py --out benchmarks/results/curvature_families.json
    python benchmarks/curvature_families.py --quick --out /tmp/cf.json   # < 2 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from curvature_fit import fit_table, largest_mlp_width, measure_kfac  # noqa: E402
from unlearnkit.curvature.kfac import (  # noqa: E402
    KroneckerCurvature,
    accumulate,
    leave_out,
    scale_sums,
    ssse_direction,
)
from unlearnkit.curvature.layout import ParamLayout, flat_params, with_params  # noqa: E402
from unlearnkit.curvature.memory import default_memory_budget  # noqa: E402
from unlearnkit.data.forget import select_forget  # noqa: E402
from unlearnkit.data.plan import DataPlan  # noqa: E402
from unlearnkit.errors import UtilityBudgetError  # noqa: E402
from unlearnkit.models import build_model  # noqa: E402
from unlearnkit.ssse import ErasureConfig, ErasureState  # noqa: E402
from unlearnkit.training import evaluate_accuracy, make_recipe, train  # noqa: E402

SGD = {"name": "sgd", "batch_size": 64, "lr": 0.05}
SETTINGS: dict[str, dict[str, Any]] = {
    "mlp-digits": {
        "dataset": "digits",
        "model": "mlp",
        "options": {"width": 128, "depth": 2},
        "recipe": SGD | {"epochs": 30},
    },
    "cnn-mnist5k": {
        "dataset": "mnist5k",
        "model": "cnn",
        "options": {},
        "recipe": SGD | {"epochs": 8},
    },
    "mlp-mnist5k": {
        "dataset": "mnist5k",
        "model": "mlp",
        "options": {"width": 64, "depth": 2},
        "recipe": SGD | {"epochs": 10},
    },
}
FAMILIES = ("exact", "exact-g10", "kfac", "ekfac")
#: ε of the comparisons besides the exact engine's own choice (ε = 1: SSSE eq. 4 as written)
FIXED_EPS = (1.0,)
EPS_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def storage_bytes(*objs: Any) -> int:
    """Bytes of the distinct tensor storages reachable from ``objs`` (views counted once)."""
    seen_obj: set[int] = set()
    storages: dict[int, int] = {}

    def walk(o: Any) -> None:
        if id(o) in seen_obj or o is None or isinstance(o, str | int | float | bool):
            return
        seen_obj.add(id(o))
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            storages[st.data_ptr()] = st.nbytes()
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list | tuple):
            for v in o:
                walk(v)
        elif hasattr(o, "__dict__") and not isinstance(o, torch.nn.Module | type):
            for v in vars(o).values():
                walk(v)

    for o in objs:
        walk(o)
    return sum(storages.values())


def _timed(f: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = f()
    return out, time.perf_counter() - t0


def prepare_all(orig: torch.nn.Module, data: Any, damping: float) -> dict[str, dict[str, Any]]:
    """Every family's prepared state, seconds and bytes."""
    out: dict[str, dict[str, Any]] = {}
    for fam, g in (("exact", 1), ("exact-g10", 10)):
        cfg = ErasureConfig(group_size=g, damping=damping)
        st, sec = _timed(lambda cfg=cfg: ErasureState.prepare(orig, data, cfg))
        out[fam] = {
            "state": st,
            "prepare_seconds": sec,
            "state_bytes": storage_bytes(st.rows, st.inverse),
            "solvers": st.inverse.describe().splitlines(),
        }
    task = data.task

    def kfac() -> tuple[Any, Any]:
        sums = accumulate(orig, data.x, data.y, task, ids=data.ids)
        return sums, KroneckerCurvature.build(sums.factors())

    (sums, curv), sec = _timed(kfac)
    out["kfac"] = {
        "sums": sums,
        "prepare_seconds": sec,
        "state_bytes": storage_bytes(sums, curv.bases),
        "blocks": len(curv.blocks()),
    }

    def ekfac() -> Any:
        ss = scale_sums(orig, data.x, data.y, task, curv.bases, ids=data.ids)
        KroneckerCurvature.build(sums.factors(), ss.scales(), bases=curv.bases)
        return ss

    ss, extra = _timed(ekfac)
    out["ekfac"] = {
        "sums": sums,
        "scales": ss,
        "prepare_seconds": sec + extra,
        "scale_pass_seconds": extra,
        "state_bytes": storage_bytes(sums, curv.bases, ss),
    }
    return out


def directions(
    prep: dict[str, dict[str, Any]],
    orig: torch.nn.Module,
    layout: ParamLayout,
    forget: Any,
    retain: Any,
    holdout: Any,
    damping: float,
) -> tuple[dict[str, torch.Tensor], dict[str, float], dict[str, Any]]:
    """Δ (flat, fp64) and one request's seconds per family; the exact engine's ε choice."""
    deltas: dict[str, torch.Tensor] = {}
    seconds: dict[str, float] = {}
    eps_info: dict[str, Any] = {}
    for fam in ("exact", "exact-g10"):
        req, seconds[fam] = _timed(lambda fam=fam: prep[fam]["state"].request(orig, forget))
        deltas[fam] = req.delta.double()
        kw = {"holdout": holdout, "retain_sample": retain}
        try:
            choice = req.choose_eps("auto", **kw)
            over = False
        except UtilityBudgetError:
            choice, over = req.choose_eps("auto", allow_utility_loss=True, **kw), True
        eps_info[fam] = {"eps_auto": choice.eps, "over_utility_budget": over}
    for fam in ("kfac", "ekfac"):
        p = prep[fam]

        def request(p: dict[str, Any] = p) -> dict[str, torch.Tensor]:
            down = leave_out(
                orig, p["sums"], forget.x, forget.y, forget.task, ids=forget.ids,
                scales=p.get("scales"),
            )  # fmt: skip
            return ssse_direction(orig, down.curvature, forget.x, forget.y, forget.task, damping)[1]

        delta, seconds[fam] = _timed(request)
        deltas[fam] = layout.flatten({k: v.double() for k, v in delta.items()})
    return deltas, seconds, eps_info


def accuracies(model: torch.nn.Module, parts: dict[str, Any]) -> dict[str, float]:
    return {f"acc_{name}": evaluate_accuracy(model, data) for name, data in parts.items()}


def compare(
    orig: torch.nn.Module,
    layout: ParamLayout,
    deltas: dict[str, torch.Tensor],
    scale: float,
    eps: float,
    theta_r: torch.Tensor,
    retrained: torch.nn.Module,
    parts: dict[str, Any],
) -> dict[str, Any]:
    """Distances and accuracies of every family's θ = θ_orig + ε·scale·Δ (module docstring)."""
    theta0 = flat_params(orig, layout).double()
    d_ref = deltas["exact"]
    theta_x = theta0 + eps * scale * d_ref
    base_r = float((theta0 - theta_r).norm())
    rows: dict[str, Any] = {
        "original": {"dist_retrain": 1.0, "acc": accuracies(orig, parts)},
        "retrain": {"dist_retrain": 0.0, "acc": accuracies(retrained, parts)},
    }
    for fam, d in deltas.items():
        theta = theta0 + eps * scale * d
        grid = [float((theta0 + e * scale * d - theta_r).norm()) / base_r for e in EPS_GRID]
        best = min(range(len(grid)), key=grid.__getitem__)
        rows[fam] = {
            "step_norm": float((theta - theta0).norm()),
            "cos_exact": float(torch.dot(d, d_ref) / (d.norm() * d_ref.norm())),
            "dist_exact": float((theta - theta_x).norm() / (theta_x - theta0).norm()),
            "norm_ratio_exact": float(d.norm() / d_ref.norm()),
            "dist_retrain": float((theta - theta_r).norm()) / base_r,
            "retrain_grid": dict(zip(map(str, EPS_GRID), grid, strict=True)),
            "best_grid_eps": EPS_GRID[best],
            "acc": accuracies(with_params(orig, layout, theta.float()), parts),
        }
    return rows


def run_setting(name: str, forgets: list[str], damping: float, epochs: int | None) -> dict:
    s = SETTINGS[name]
    split = DataPlan(s["dataset"]).materialise()
    data = split.train
    init = build_model(s["model"], data.input_shape, data.num_outputs, seed=0, **s["options"])
    recipe = make_recipe(s["recipe"] | ({"epochs": epochs} if epochs else {}))
    res = train(init, data, recipe, seed=0)
    orig = res.model.eval()
    layout = ParamLayout.from_model(orig)
    prep = prepare_all(orig, data, damping)
    out: dict[str, Any] = {
        "setting": name,
        "dataset": s["dataset"],
        "model": s["model"],
        "options": s["options"],
        "recipe": recipe.model_dump(),
        "n_train": len(data),
        "d": layout.d,
        "train_seconds": res.seconds,
        "prepare": {
            f: {k: v for k, v in p.items() if k not in ("state", "sums", "scales")}
            for f, p in prep.items()
        },
        "requests": [],
    }
    for spec in forgets:
        sel = select_forget(data, spec, seed=0)
        forget, retain = sel.forget(data), sel.retain(data)
        k = len(forget)
        deltas, seconds, eps_info = directions(
            prep, orig, layout, forget, retain, split.holdout, damping
        )
        eps_auto = eps_info["exact"]["eps_auto"]
        ret = train(init, retain, recipe, seed=0)
        theta_r = flat_params(ret.model, layout).double()
        parts = {"forget": forget, "retain": retain, "test": split.test}
        scale = 1.0 / (len(data) - k)
        for eps in dict.fromkeys((eps_auto, *FIXED_EPS)):
            rows = compare(orig, layout, deltas, scale, eps, theta_r, ret.model, parts)
            for fam in FAMILIES:
                rows[fam]["request_seconds"] = seconds[fam]
            out["requests"].append(
                {
                    "forget": spec,
                    "k": k,
                    "eps": eps,
                    "eps_rule": "exact engine auto" if eps == eps_auto else "fixed",
                    "eps_choice": eps_info,
                    "retrain_seconds": ret.seconds,
                    "families": rows,
                }
            )
        print(f"{name} {spec}: done", flush=True)
    return out


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (setting, forget set, family), ratios against ``exact`` of the same run."""
    rows = []
    for r in results:
        ex = r["prepare"]["exact"]
        for q in r["requests"]:
            fx = q["families"]["exact"]
            for fam in (*FAMILIES, "original", "retrain"):
                f = q["families"][fam]
                row: dict[str, Any] = {"setting": r["setting"], "forget": q["forget"], "k": q["k"]}
                row |= {"eps": q["eps"], "family": fam}
                if fam in FAMILIES:
                    p = r["prepare"][fam]
                    row |= {
                        "prepare_s": p["prepare_seconds"],
                        "prepare_vs_exact": p["prepare_seconds"] / ex["prepare_seconds"],
                        "state_mib": p["state_bytes"] / 2**20,
                        "state_vs_exact": p["state_bytes"] / ex["state_bytes"],
                        "request_s": f["request_seconds"],
                        "request_vs_exact": f["request_seconds"] / fx["request_seconds"],
                        "cos_exact": f["cos_exact"],
                        "dist_exact": f["dist_exact"],
                    }
                row |= {"dist_retrain": f["dist_retrain"], **f["acc"]}
                rows.append(row)
    return rows


def fit_section(budget: int, verify_budget: int, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"budget_bytes": budget, "table": fit_table(budget)}
    out["largest_mlp_width"] = {
        fam: largest_mlp_width(budget, fam) for fam in ("exact_g1", "exact_g10", "kfac", "ekfac")
    }
    w = largest_mlp_width(verify_budget, "kfac")
    got = measure_kfac("mlp", {"width": w, "depth": 2}, (1, 28, 28), 512)
    out["verify_mlp"] = {
        "budget_bytes": verify_budget,
        "width": w,
        **got,
        "measured_within_budget": got["peak_rss_growth_bytes"] <= verify_budget,
    }
    if not quick:
        out["verify_resnet18"] = {
            "samples": 64,
            **measure_kfac("resnet18", {}, (3, 32, 32), 64, ekfac=True),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="benchmarks/results/curvature_families.json")
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=None)
    ap.add_argument("--forget", nargs="+", default=None, help="forget specs (random:0.02 class:3)")
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument("--verify-budget-gib", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="mlp-digits, one forget set (< 2 min)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    quick = args.quick
    settings = args.settings or (["mlp-digits"] if quick else ["mlp-digits", "cnn-mnist5k"])
    forgets = args.forget or (["random:0.02"] if quick else ["random:0.02", "class:3"])
    load = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    results = [run_setting(s, forgets, args.damping, 10 if quick else None) for s in settings]
    budget = default_memory_budget()
    fit = fit_section(budget, int(args.verify_budget_gib * 2**30), quick)
    payload = {
        "command": " ".join(["python", *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "loadavg_at_start": load,
            "memory_budget_bytes": budget,
        },
        "seconds": time.perf_counter() - t0,
        "summary": summarise(results),
        "settings": results,
        "fit": fit,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2, default=float))
    for row in payload["summary"]:
        cells = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()]
        print(" ".join(cells))
    print(f"fit: {fit['largest_mlp_width']}; total {payload['seconds']:.0f} s")
    if not all(math.isfinite(r.get("dist_retrain", 0.0)) for r in payload["summary"]):
        raise SystemExit("non-finite distances")


if __name__ == "__main__":
    main()
