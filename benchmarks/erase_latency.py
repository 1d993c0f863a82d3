"""One deletion request with SSSE against retraining from scratch, as ratios, with peak memory.

On mnist5k with the ``linear`` model (no-bias softmax regression, L-BFGS to the optimum) and
the ``cnn`` (SGD): train the Original once, prepare the SSSE state once, then time

* **erase**: one request for k random training samples (their gradients, the exact
  leave-S-out downdate, F⁻¹v, the step), warm, median of ``--repeats``;
* **retrain**: the same recipe from the same initial weights on the retained data.

Each phase runs in a fresh process (multiprocessing, spawn) so that its peak resident memory
(``ru_maxrss`` minus the RSS after imports) is its own. Writes JSON (``--out``).

    python benchmarks/erase_latency.py --out benchmarks/results/erase_latency.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "linear": {"recipe": {"name": "lbfgs", "l2": 1e-3, "tol": 1e-5}, "ssse": {"blocks": "per_layer", "damping": 1e-3, "group_size": 1}},
    "cnn": {"recipe": {"name": "sgd", "epochs": 8, "batch_size": 64, "lr": 0.05}, "ssse": {"blocks": "per_layer", "damping": 1e-3, "group_size": 10}},
}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _phase(args: tuple[str, str, str, int, int, int]) -> dict[str, Any]:
    phase, model_name, work, k, repeats, threads = args
    import torch

    torch.set_num_threads(threads)
    from unlearnkit.artifacts import load_model, save_model
    from unlearnkit.data.forget import select_forget
    from unlearnkit.models import build_model
    from unlearnkit.ssse import ErasureConfig, ErasureState
    from unlearnkit.training import evaluate_accuracy, make_recipe, train
    from unlearnkit.workflow import DataPlan, materialise

    mat = materialise(DataPlan("mnist5k", {}))
    setting = SETTINGS[model_name]
    recipe = make_recipe(setting["recipe"])
    base = _rss_kib()
    out: dict[str, Any] = {"phase": phase, "model": model_name}
    wdir = Path(work)
    init = build_model(model_name, mat.full.input_shape, mat.full.num_outputs, seed=0)
    if phase == "train":
        res = train(init, mat.train, recipe, seed=0)
        save_model(wdir / f"{model_name}-orig", res.model, {})
        out.update(seconds=res.seconds, test_accuracy=evaluate_accuracy(res.model, mat.test))
    elif phase == "prepare":
        orig, _ = load_model(wdir / f"{model_name}-orig")
        cfg = ErasureConfig(task="multiclass", mode="exact", **setting["ssse"])
        t0 = time.perf_counter()
        state = ErasureState.prepare(orig, mat.train, cfg)
        out["seconds"] = time.perf_counter() - t0
        state.save(wdir / f"{model_name}-state")
        out["solvers"] = state.inverse.describe().splitlines()[0]
    elif phase == "erase":
        orig, _ = load_model(wdir / f"{model_name}-orig")
        state = ErasureState.load(wdir / f"{model_name}-state", orig)
        times = []
        for r in range(repeats + 1):  # the first call pays one-off imports (torch.func)
            forget = select_forget(mat.train, {"kind": "random", "fraction": k / len(mat.train)}, seed=r).forget(mat.train)
            t0 = time.perf_counter()
            state.erase(orig, forget, eps=1.0)
            times.append(time.perf_counter() - t0)
        out.update(seconds=statistics.median(times[1:]), all_seconds=times, k=len(forget))
    elif phase == "retrain":
        forget = select_forget(mat.train, {"kind": "random", "fraction": k / len(mat.train)}, seed=0)
        res = train(init, forget.retain(mat.train), recipe, seed=0)
        out.update(seconds=res.seconds, k=k)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mib"] = round((peak - base) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/erase_latency.json")
    ap.add_argument("--models", nargs="+", default=["linear", "cnn"])
    ap.add_argument("--k", nargs="+", type=int, default=[1, 10, 100])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as work:
        for m in args.models:
            for phase in ("train", "prepare"):
                with ctx.Pool(1) as pool:
                    results.append(pool.map(_phase, [(phase, m, work, 0, 0, args.threads)])[0])
                print(results[-1], flush=True)
            for k in args.k:
                for phase in ("erase", "retrain"):
                    with ctx.Pool(1) as pool:
                        results.append(pool.map(_phase, [(phase, m, work, k, args.repeats, args.threads)])[0])
                    print(results[-1], flush=True)
    summary = []
    for m in args.models:
        prep = next(r for r in results if r["model"] == m and r["phase"] == "prepare")
        for k in args.k:
            e = next(r for r in results if r["model"] == m and r["phase"] == "erase" and r.get("k") == k)
            t = next(r for r in results if r["model"] == m and r["phase"] == "retrain" and r.get("k") == k)
            summary.append({
                "model": m, "k": k, "erase_seconds": e["seconds"], "retrain_seconds": t["seconds"],
                "speedup_retrain_over_erase": t["seconds"] / e["seconds"],
                "prepare_seconds": prep["seconds"],
                "speedup_incl_prepare": t["seconds"] / (e["seconds"] + prep["seconds"]),
                "erase_peak_rss_mib": e["peak_rss_mib"], "retrain_peak_rss_mib": t["peak_rss_mib"],
                "prepare_peak_rss_mib": prep["peak_rss_mib"],
            })
    payload = {"machine": {"platform": platform.platform(), "cpus": mp.cpu_count(), "threads": args.threads},
               "summary": summary, "raw": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    for s in summary:
        print(f"{s['model']:>6} k={s['k']:>4}: erase {s['erase_seconds']:.3f} s, retrain {s['retrain_seconds']:.1f} s "
              f"→ {s['speedup_retrain_over_erase']:.0f}x (incl. prepare {s['speedup_incl_prepare']:.1f}x); "
              f"peak RSS erase {s['erase_peak_rss_mib']} MiB vs retrain {s['retrain_peak_rss_mib']} MiB")


if __name__ == "__main__":
    main()
