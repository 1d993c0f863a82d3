"""One deletion request with SSSE against retraining from scratch, as ratios, with peak memory.

On mnist5k with the ``linear`` model (no-bias softmax regression, L-BFGS to the optimum) and
the ``cnn`` (SGD): train the Original once, prepare the SSSE state once, then time

* **erase**: one request for k random training samples (their gradients, the exact
  leave-S-out downdate, F⁻¹v, the step), warm, median of ``--repeats``; then one more request
  under cProfile, split into where its time goes (``profile``);
* **sequence** (own process): ``--sequence`` chained requests of k samples each, every one
  from the model and state the previous one returned (``sequence_seconds``, warm; ε =
  ``--sequence-eps``, since chained ε = 1 steps make the cnn's gradients overflow);
* **retrain**: the same recipe from the same initial weights on the retained data.

Settings: ``linear`` (per-layer blocks: one 7 840-column Woodbury block), ``cnn`` (per-layer
blocks, groups of 10) and ``linear-heads`` (the same trained linear model with one block per
output class: ten 784-column dense blocks; a different, block-diagonal Fisher, so its
retraining is ``linear``'s).

Each phase runs in a fresh process (multiprocessing, spawn) so that its peak resident memory
(``ru_maxrss`` minus the RSS after imports) is its own. Writes JSON (``--out``).

    python benchmarks/erase_latency.py --out benchmarks/results/erase_latency.json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import multiprocessing as mp
import os
import platform
import pstats
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "linear": {
        "model": "linear",
        "recipe": {"name": "lbfgs", "l2": 1e-3, "tol": 1e-5},
        "ssse": {"blocks": "per_layer", "damping": 1e-3, "group_size": 1},
    },
    "cnn": {
        "model": "cnn",
        "recipe": {"name": "sgd", "epochs": 8, "batch_size": 64, "lr": 0.05},
        "ssse": {"blocks": "per_layer", "damping": 1e-3, "group_size": 10},
    },
    "linear-heads": {
        "model": "linear",
        "trained_as": "linear",
        "ssse": {"blocks": "per_output_head", "damping": 1e-3, "group_size": 1},
    },
}

#: Where a request's time goes: (bucket, file suffix, function) whose cumulative time it is.
PROFILE_BUCKETS: tuple[tuple[str, str, str], ...] = (
    ("gradients of S at θ_t", "curvature/gradients.py", "per_sample_gradients"),
    ("rows of S at θ_F (groups)", "ssse/rows.py", "build_rows"),
    ("Fisher downdate", "curvature/block_inverse.py", "downdate"),
    ("Fisher row replacement (groups)", "curvature/block_inverse.py", "replace_rows"),
    ("solve F⁻¹v", "curvature/block_inverse.py", "solve"),
    ("checks (model fingerprint)", "ssse/state.py", "check_model"),
    ("commit (new model, ledger)", "ssse/state.py", "commit"),
)


def _profile_buckets(prof: cProfile.Profile) -> dict[str, float]:
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    out: dict[str, float] = {}
    total = 0.0
    for (fname, _, func), (_, _, _, cum, _) in stats.items():
        if fname.endswith("ssse/state.py") and func == "erase":
            total = cum
        for bucket, suffix, name in PROFILE_BUCKETS:
            if fname.endswith(suffix) and func == name:
                out[bucket] = out.get(bucket, 0.0) + cum
    out["other (validation, copies, step)"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return {k: round(v, 4) for k, v in out.items()}


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _phase(args: tuple[str, str, str, int, int, int, int, float]) -> dict[str, Any]:
    phase, name, work, k, repeats, threads, sequence, eps = args
    import torch

    torch.set_num_threads(threads)
    from unlearnkit.artifacts import load_model, save_model
    from unlearnkit.data.forget import select_forget
    from unlearnkit.data.plan import DataPlan, materialise
    from unlearnkit.errors import NumericalError
    from unlearnkit.models import build_model
    from unlearnkit.ssse import ErasureConfig, ErasureState
    from unlearnkit.training import evaluate_accuracy, make_recipe, train

    mat = materialise(DataPlan("mnist5k", {}))
    setting = SETTINGS[name]
    model_name = setting["model"]
    trained = setting.get("trained_as", name)
    base = _rss_kib()
    out: dict[str, Any] = {"phase": phase, "model": name}
    wdir = Path(work)
    init = build_model(model_name, mat.full.input_shape, mat.full.num_outputs, seed=0)
    if phase == "train":
        res = train(init, mat.train, make_recipe(setting["recipe"]), seed=0)
        save_model(wdir / f"{name}-orig", res.model, {})
        out.update(seconds=res.seconds, test_accuracy=evaluate_accuracy(res.model, mat.test))
    elif phase == "prepare":
        orig, _ = load_model(wdir / f"{trained}-orig")
        cfg = ErasureConfig(task="multiclass", mode="exact", **setting["ssse"])
        t0 = time.perf_counter()
        state = ErasureState.prepare(orig, mat.train, cfg)
        out["seconds"] = time.perf_counter() - t0
        state.save(wdir / f"{name}-state")
        out["solvers"] = state.inverse.describe().splitlines()
    elif phase == "erase":
        orig, _ = load_model(wdir / f"{trained}-orig")
        state = ErasureState.load(wdir / f"{name}-state", orig)

        def selection(seed: int, pool: Any = mat.train) -> Any:
            return select_forget(pool, {"kind": "random", "fraction": k / len(pool)}, seed=seed)

        def forget_set(seed: int) -> Any:
            return selection(seed).forget(mat.train)

        times = []
        for r in range(repeats + 1):  # the first call pays one-off imports (torch.func)
            forget = forget_set(r)
            t0 = time.perf_counter()
            state.erase(orig, forget, eps=1.0)
            times.append(time.perf_counter() - t0)
        prof = cProfile.Profile()
        prof.enable()
        state.erase(orig, forget_set(repeats + 1), eps=1.0)
        prof.disable()
        out.update(
            seconds=statistics.median(times[1:]),
            all_seconds=times,
            k=k,
            profile=_profile_buckets(prof),
        )
    elif phase == "sequence":  # chained requests: each from the previous model and state
        model, _ = load_model(wdir / f"{trained}-orig")
        st = ErasureState.load(wdir / f"{name}-state", model)
        seq, pool, failed = [], mat.train, None
        for r in range(sequence + 1):  # the first call pays one-off imports (torch.func)
            sel = select_forget(pool, {"kind": "random", "fraction": k / len(pool)}, seed=100 + r)
            forget = sel.forget(pool)
            t0 = time.perf_counter()
            try:
                model, st = st.erase(model, forget, eps=eps)
            except NumericalError as e:  # the chained steps made the model diverge
                failed = f"request {r + 1}: {e}"
                break
            seq.append(time.perf_counter() - t0)
            pool = sel.retain(pool)
        out.update(seconds=seq[1:], k=k, eps=eps, n_remaining=st.n_remaining, failed=failed)
    elif phase == "retrain":
        forget = select_forget(
            mat.train, {"kind": "random", "fraction": k / len(mat.train)}, seed=0
        )
        res = train(init, forget.retain(mat.train), make_recipe(setting["recipe"]), seed=0)
        out.update(seconds=res.seconds, k=k)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_mib"] = round((peak - base) / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default="benchmarks/results/erase_latency.json")
    ap.add_argument(
        "--models",
        nargs="+",
        default=["linear", "cnn", "linear-heads"],
        choices=list(SETTINGS),
        help="settings to run (linear-heads needs linear before it)",
    )
    ap.add_argument("--k", nargs="+", type=int, default=[1, 10, 100])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sequence", type=int, default=5, help="chained requests per k (0: none)")
    ap.add_argument(
        "--sequence-eps",
        type=float,
        default=0.1,
        help="ε of the chained requests (ε = 1 makes the cnn diverge within a few k = 100 steps)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    for i, m in enumerate(args.models):
        dep = SETTINGS[m].get("trained_as")
        if dep is not None and dep not in args.models[:i]:
            ap.error(f"setting {m!r} reuses {dep!r}'s training: list {dep!r} before it")
    ctx = mp.get_context("spawn")
    results: list[dict[str, Any]] = []
    load_at_start = [round(x, 2) for x in os.getloadavg()]

    def run(phase: str, m: str, work: str, k: int) -> None:
        with ctx.Pool(1) as pool:
            job = (phase, m, work, k, args.repeats, args.threads, args.sequence, args.sequence_eps)
            results.append(pool.map(_phase, [job])[0])
        print(results[-1], flush=True)

    with tempfile.TemporaryDirectory() as work:
        for m in args.models:
            own = "trained_as" not in SETTINGS[m]
            for phase in ("train", "prepare") if own else ("prepare",):
                run(phase, m, work, 0)
            for k in args.k:
                for phase in ("erase", "sequence", "retrain") if own else ("erase", "sequence"):
                    if phase != "sequence" or args.sequence > 0:
                        run(phase, m, work, k)
    summary = []
    for m in args.models:
        prep = next(r for r in results if r["model"] == m and r["phase"] == "prepare")
        trained = SETTINGS[m].get("trained_as", m)
        for k in args.k:
            e = next(
                r for r in results if r["model"] == m and r["phase"] == "erase" and r.get("k") == k
            )
            t = next(
                r
                for r in results
                if r["model"] == trained and r["phase"] == "retrain" and r.get("k") == k
            )
            summary.append(
                {
                    "model": m,
                    "k": k,
                    "erase_seconds": e["seconds"],
                    "retrain_seconds": t["seconds"],
                    "speedup_retrain_over_erase": t["seconds"] / e["seconds"],
                    "prepare_seconds": prep["seconds"],
                    "speedup_incl_prepare": t["seconds"] / (e["seconds"] + prep["seconds"]),
                    "erase_peak_rss_mib": e["peak_rss_mib"],
                    "retrain_peak_rss_mib": t["peak_rss_mib"],
                    "prepare_peak_rss_mib": prep["peak_rss_mib"],
                    "erase_profile": e["profile"],
                    "sequence_seconds": next(
                        (
                            r["seconds"]
                            for r in results
                            if r["model"] == m and r["phase"] == "sequence" and r.get("k") == k
                        ),
                        [],
                    ),
                }
            )
    payload = {
        "machine": {
            "platform": platform.platform(),
            "cpus": mp.cpu_count(),
            "threads": args.threads,
            "loadavg_at_start": load_at_start,
        },
        "summary": summary,
        "raw": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(payload, indent=2))
    for s in summary:
        print(
            f"{s['model']:>12} k={s['k']:>4}: erase {s['erase_seconds']:.3f} s, retrain {s['retrain_seconds']:.1f} s "
            f"→ {s['speedup_retrain_over_erase']:.0f}x (incl. prepare {s['speedup_incl_prepare']:.1f}x); "
            f"peak RSS erase {s['erase_peak_rss_mib']} MiB vs retrain {s['retrain_peak_rss_mib']} MiB"
        )


if __name__ == "__main__":
    main()
