"""One grouped exact SSSE request on a synthetic Woodbury block: row replacement, before/after.

In ``exact`` mode with grouped gradients (rows = means of groups of g samples), erasing k
random samples mostly shrinks k groups: their k rows get new values and N drops by k. This
times ``WoodburyInverse.replace_rows`` + the request's solve F⁻¹v for

* **legacy**: the previous implementation (copy G and K, recompute the k Gram rows, refactor
  NλI + K' from scratch: O(m³/3) and a second copy of G), re-implemented here from the same
  kernels;
* **refactor** / **incremental**: the current code with the path forced (patch of replaced
  rows, no copy of G/K; the kept factor bordered on the replaced rows + PCG for the shift);
* **auto**: the current code choosing by its cost model;

for one request and for a sequence of requests on the same factor, and checks every answer
against the legacy one. Extra memory: bytes the request's inverse holds besides the G, K
(and L) that it shares with the built one.

    flock /tmp/unlearnkit-cpu.lock python benchmarks/woodbury_replace.py \\
        --m 4000 --d 8000 --k 100 --requests 3 --out benchmarks/results/woodbury_replace.json
    python benchmarks/woodbury_replace.py --device cuda --m 5000 --d 70000 --k 100
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from unlearnkit.curvature.solvers import SOLVERS, WoodburyInverse
from unlearnkit.curvature.solvers.base import F64, gram_rows64
from unlearnkit.curvature.solvers.woodbury_factor import shifted_factor


def legacy_replace(
    inv: WoodburyInverse, rows: torch.Tensor, new: torch.Tensor, normalizer: float
) -> WoodburyInverse:
    """The replace_rows of the previous commit: clone G and K, new Gram rows, refactor."""
    rows = rows.to(inv.G.device)
    G = inv.G.clone()
    G[rows] = new.to(G.dtype)
    C = gram_rows64(G.index_select(0, rows), G, inv.chunk_bytes)
    K = inv.K.clone()
    K[rows, :] = C
    K[:, rows] = C.T
    L = shifted_factor(K, rows=inv.rows, damping=inv.damping, normalizer=normalizer, name=inv.name)
    return WoodburyInverse(
        G=G,
        K=K,
        L=L,
        chunk_bytes=inv.chunk_bytes,
        name=inv.name,
        d_b=inv.d_b,
        damping=inv.damping,
        normalizer=normalizer,
        rows=inv.rows.clone(),
        n_built=inv.n_built,
    )


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run(
    m: int,
    d: int,
    k: int,
    requests: int,
    group: int,
    damping: float,
    seed: int,
    device: str = "cpu",
) -> dict[str, Any]:
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    G = (torch.randn(m, d, generator=gen) / d**0.5).to(dev)
    v = torch.randn(d, generator=gen, dtype=F64).to(dev)
    n0 = float(m * group)
    t0 = time.perf_counter()
    base = SOLVERS.get("woodbury")().build(G, damping, n0)
    build_s = time.perf_counter() - t0
    # each request: k groups lose one member (the new mean differs by a random vector)
    reqs = []
    for i in range(requests):
        r = torch.randperm(m, generator=gen)[:k].sort().values
        reqs.append((r, (torch.randn(k, d, generator=gen) / d**0.5).to(dev), n0 - k * (i + 1)))
    out: dict[str, Any] = {"build_s": build_s}
    answers: dict[str, list[torch.Tensor]] = {}
    for name in ("legacy", "refactor", "incremental", "auto"):
        inv, times, extra, peak = base, [], [], []
        answers[name] = []
        for r, new, n in reqs:
            _sync(dev)
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
                before = torch.cuda.memory_allocated(dev)
            t = time.perf_counter()
            if name == "legacy":
                inv = legacy_replace(inv, r, new, n)
                extra.append(inv.G.numel() * 4 + inv.K.numel() * 8 + inv.L.numel() * 8)
            else:
                inv = inv.replace_rows(r, new, n, how=None if name == "auto" else name)
                shared = base.G.numel() * 4 + base.K.numel() * 8  # + the build's L if kept
                shared += base.L.numel() * 8 if inv.L is base.L else 0
                extra.append(inv.memory_bytes() - shared)
            answers[name].append(inv.solve(v))
            _sync(dev)
            times.append(time.perf_counter() - t)
            if dev.type == "cuda":  # peak GPU memory of the request above what was held
                peak.append(torch.cuda.max_memory_allocated(dev) - before)
        out[name] = {
            "seconds": times,
            "extra_bytes": extra,
            "peak_extra_gpu_bytes": peak,
            "shares_build_factor": bool(inv.L is base.L),
        }
    for name in ("refactor", "incremental", "auto"):
        out[name]["max_rel_diff_vs_legacy"] = max(
            float((a - b).norm() / b.norm())
            for a, b in zip(answers[name], answers["legacy"], strict=True)
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--m", type=int, default=4000, help="rows in the block (groups)")
    ap.add_argument("--d", type=int, default=8000, help="block size d_b (> m: Woodbury)")
    ap.add_argument("--k", type=int, default=100, help="shrunk groups per request")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--group", type=int, default=10, help="samples per group (N = m·group)")
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    res = {
        "config": vars(a) | {"out": None if a.out is None else str(a.out)},
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name() if a.device.startswith("cuda") else "cpu",
        **run(a.m, a.d, a.k, a.requests, a.group, a.damping, a.seed, a.device),
    }
    text = json.dumps(res, indent=2)
    print(text)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
