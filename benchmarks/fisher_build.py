"""Benchmark: building the dampened empirical-Fisher inverse of one block, by solver.

Times ``sherman_morrison`` (the SSSE paper's eq. 3 recursion) against ``dense`` (streaming
fp64 GEMM + Cholesky) and ``woodbury`` (fp64 Gram + Cholesky) for several (m, d_b), reports
the achieved GFLOP/s of each against this machine's own fp32/fp64 GEMM rate measured in the
same run, and checks that the methods' solves agree.

    python benchmarks/fisher_build.py            # full run (a few minutes on 2 cores)
    python benchmarks/fisher_build.py --quick    # seconds
    python benchmarks/fisher_build.py --device cuda --out benchmarks/results/fisher_build_gpu.json

Flop counts (1 multiply-add = 2 flops): dense 2·m·d_b² + d_b³/3, woodbury 2·m²·d_b + m³/3,
sherman_morrison 4·m·d_b² (one GEMV and one rank-1 update per row). Where the recursion over
all m rows would take too long, it is run over the first ``--sm-rows`` rows and extrapolated
linearly (each row costs the same); such rows are marked ``extrapolated``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from unlearnkit.curvature.solvers import SOLVERS

FULL = [(1000, 512), (4000, 1024), (4000, 2048), (8000, 256), (500, 4096)]
QUICK = [(200, 128), (400, 256)]
METHODS = ["sherman_morrison", "dense", "woodbury"]
FLOPS: dict[str, Callable[[int, int], float]] = {
    "dense": lambda m, d: 2.0 * m * d * d + d**3 / 3,
    "woodbury": lambda m, d: 2.0 * m * m * d + m**3 / 3,
    "sherman_morrison": lambda m, d: 4.0 * m * d * d,
}


DEVICE = torch.device("cpu")


def sync() -> None:
    """Wait for queued GPU work (timings on CUDA are otherwise only launch times)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize(DEVICE)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - t, out


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time over ``repeats`` calls (the least noisy estimate on a shared machine)."""
    return min(timed(fn)[0] for _ in range(repeats))


def gemm_rate(n: int, dtype: torch.dtype, repeats: int) -> float:
    """GFLOP/s of an n×n×n torch.mm in ``dtype`` on the benchmark's device."""
    a = torch.randn(n, n, dtype=dtype, device=DEVICE)
    b = torch.randn(n, n, dtype=dtype, device=DEVICE)
    torch.mm(a, b)  # warm-up
    return 2.0 * n**3 / best_time(lambda: torch.mm(a, b), repeats) / 1e9


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def run_case(
    m: int,
    d: int,
    lam: float,
    sm_rows: int,
    repeats: int,
    seed: int,
    gemm_n: int,
    budget_s: float,
    methods: list[str] = METHODS,
) -> dict:
    gen = torch.Generator().manual_seed(seed)
    # gradients with a decaying spectrum (ssse-engine.md §3), stored in fp32
    G = (torch.randn(m, d, generator=gen) * torch.logspace(0, -2, d)).float().to(DEVICE)
    V = torch.randn(d, 4, generator=gen, dtype=torch.float64).to(DEVICE)
    n = float(m)
    out: dict = {
        "m": m,
        "d_b": d,
        "damping": lam,
        "normalizer": n,
        "methods": {},
        # the machine is shared: re-measure the reference right before the case
        "gemm_gflops_fp64_before": gemm_rate(gemm_n, torch.float64, repeats),
    }
    rows = {k: (min(m, sm_rows) if k == "sherman_morrison" else m) for k in methods}
    times: dict[str, list[float]] = {k: [] for k in methods}
    invs = {}
    # interleave the methods round by round (the load on a shared machine drifts), repeat
    # each one while its total stays under the time budget, and keep the best time
    for _ in range(repeats):
        for name in methods:
            if times[name] and sum(times[name]) + min(times[name]) > budget_s:
                continue
            Gs = G[: rows[name]]
            t, invs[name] = timed(lambda s=SOLVERS.get(name)(), g=Gs: s.build(g, lam, n))
            times[name].append(t * m / rows[name])
    solves = {}
    for name in methods:
        inv = invs[name]
        t_full = min(times[name])
        rec = {
            "build_s": t_full,
            "build_times_s": times[name],
            "extrapolated": rows[name] < m,
            "rows_timed": rows[name],
            "gflops": FLOPS[name](m, d) / t_full / 1e9,
            "apply_ms": 1e3 * best_time(lambda i=inv: i.solve(V[:, 0]), repeats),
            "memory_bytes": inv.memory_bytes(),
        }
        if rows[name] == m:
            solves[name] = inv.solve(V)
        out["methods"][name] = rec
    # the reference solve: dense where it ran, else the first exact method that ran in full
    ref_name = next((k for k in ("dense", "woodbury", "sherman_morrison") if k in solves), None)
    out["reference"] = ref_name
    for name, rec in out["methods"].items():
        ok = name in solves and ref_name is not None
        rec["rel_diff_vs_dense"] = rel(solves[name], solves[ref_name]) if ok else None
    out["speedup_vs_sherman_morrison"] = {}
    if "sherman_morrison" in out["methods"]:
        sm = out["methods"]["sherman_morrison"]["build_s"]
        out["speedup_vs_sherman_morrison"] = {
            k: sm / out["methods"][k]["build_s"] for k in methods if k != "sherman_morrison"
        }
    return out


def table(result: dict) -> str:
    lines = [
        f"GEMM reference (torch.mm {result['gemm_n']}²): fp32 {result['gemm_gflops']['fp32']:.1f} "
        f"GFLOP/s, fp64 {result['gemm_gflops']['fp64']:.1f} GFLOP/s; threads={result['threads']}; "
        "%fp64 uses the fp64 GEMM rate re-measured before each case",
        f"{'m':>6} {'d_b':>6} {'method':>17} {'build s':>9} {'GFLOP/s':>8} {'%fp64':>6} "
        f"{'apply ms':>9} {'vs SM':>7} {'rel diff':>9}",
    ]
    for case in result["cases"]:
        g64 = case["gemm_gflops_fp64_before"]
        for name, rec in case["methods"].items():
            speed = case["speedup_vs_sherman_morrison"].get(name)
            diff = rec["rel_diff_vs_dense"]
            lines.append(
                f"{case['m']:>6} {case['d_b']:>6} {name:>17} {rec['build_s']:>9.3f}"
                f"{'*' if rec['extrapolated'] else ' '}{rec['gflops']:>7.1f} "
                f"{100 * rec['gflops'] / g64:>5.0f}% {rec['apply_ms']:>9.2f} "
                f"{'' if speed is None else f'{speed:.3g}x':>7} "
                f"{'-' if diff is None else f'{diff:.1e}':>9}"
            )
    lines.append("* extrapolated from the first rows of the recursion (cost per row is constant)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fisher_build.json"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated solvers to time (default: all three)",
    )
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument(
        "--sm-rows",
        type=int,
        default=None,
        help="run the Sherman–Morrison recursion over at most this many rows and "
        "extrapolate (default: all rows for m·d_b² ≤ 4.3e9, else 500)",
    )
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds per case (max)")
    ap.add_argument(
        "--budget-s",
        type=float,
        default=30.0,
        help="stop repeating a method once its builds took this long in total",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cases",
        type=str,
        default=None,
        help="comma-separated MxD sizes, e.g. 4000x1024,500x4096 (overrides the set)",
    )
    args = ap.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    gemm_n = 512 if args.quick else (8192 if DEVICE.type == "cuda" else 2048)
    result = {
        "benchmark": "fisher_build",
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "device": str(DEVICE),
        "device_name": (
            torch.cuda.get_device_name(DEVICE)
            if DEVICE.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "threads": torch.get_num_threads(),
        "quick": args.quick,
        "gemm_n": gemm_n,
        "gemm_gflops": {
            "fp32": gemm_rate(gemm_n, torch.float32, args.repeats),
            "fp64": gemm_rate(gemm_n, torch.float64, args.repeats),
        },
        "cases": [],
    }
    cases = QUICK if args.quick else FULL
    if args.cases:
        cases = [(int(a), int(b)) for a, b in (c.split("x") for c in args.cases.split(","))]
    for m, d in cases:
        sm_rows = args.sm_rows or (m if m * d * d <= 4.3e9 else 500)
        case = run_case(
            m,
            d,
            args.damping,
            sm_rows,
            args.repeats,
            args.seed,
            gemm_n,
            args.budget_s,
            args.methods.split(","),
        )
        result["cases"].append(case)
        print(f"done m={m} d_b={d}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
