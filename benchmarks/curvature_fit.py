"""Which curvature family fits a model on this machine: memory estimates, and one check.

Used by ``benchmarks/curvature_families.py`` (its ``fit`` section). For a model (built on the
``meta`` device: shapes only, no memory) and n training samples:

* **exact rows** (:class:`~unlearnkit.ssse.ErasureState`, ``per_layer`` blocks): the engine's
  own check in ``prepare``, i.e. the rows ``estimate_rows_bytes`` (⌈n/g⌉·d fp32) must fit
  the budget and the block inverses must fit what is left
  (:func:`~unlearnkit.curvature.block_plan.plan_blocks`, solver ``auto``, which switches
  blocks to their lower-memory solver to fit). Reported bytes: rows + the plan's
  ``total_bytes`` (every block's persistent bytes + the largest build workspace).
* **K-FAC** (:mod:`unlearnkit.curvature.kfac`): with ``S = Σ_layers (d_in² + d_out²)·8`` and
  ``D`` the diagonal blocks' entries, the state keeps the fp64 sums and the eigenbases,
  ``persistent = 2·S + Σ(d_in + d_out)·8 + D·8``; building adds the normalised factors (S)
  and ``eigh``'s workspace for the largest factor (``2.25·max(d_in, d_out)²·8``: measured,
  ``torch.linalg.eigh`` of an n×n fp64 matrix peaks at 3.24·n²·8 bytes with its n² output).
* **EK-FAC**: K-FAC plus the scale sums and the scales (``2·P·8``, ``P = Σ d_in·d_out``, the
  factored parameters) and, in the scale pass, the rotated per-sample gradients of one
  layer and their squares (``2·b·max(d_in·d_out)·8``, batch ``b``).

A family fits when its peak is at most the budget
(:func:`~unlearnkit.curvature.memory.default_memory_budget`: 80 % of ``MemAvailable``).
:func:`measure_kfac` checks an estimate empirically in a fresh process (peak RSS growth).
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import time
from typing import Any

import torch

from unlearnkit.curvature.block_plan import plan_blocks, total_bytes
from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.kfac import plan_layers
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import MemoryBudgetError
from unlearnkit.models import build_model
from unlearnkit.ssse import ErasureConfig
from unlearnkit.ssse.rows import estimate_rows_bytes

FP64 = 8
#: Model families of the table: (label, model, options, input shape, classes, n samples).
FIT_FAMILIES: list[tuple[str, str, dict[str, Any], tuple[int, ...], int, int]] = [
    *(
        (f"mlp w={w}", "mlp", {"width": w, "depth": 2}, (1, 28, 28), 10, 3500)
        for w in (256, 1024, 4096, 8192, 16384, 32768)
    ),
    ("resnet20 (CIFAR-10)", "resnet20", {}, (3, 32, 32), 10, 50000),
    ("resnet18 (CIFAR-10)", "resnet18", {}, (3, 32, 32), 10, 50000),
]


def meta_model(name: str, options: dict[str, Any], shape: tuple[int, ...], k: int) -> Any:
    """The model with parameters on the ``meta`` device (shapes only)."""
    with torch.device("meta"):
        return build_model(name, shape, k, seed=0, **options)


def exact_estimate(model: Any, n: int, k: int, group_size: int, budget: int) -> dict[str, Any]:
    """The exact engine's prepare check for ``n`` samples in groups of ``group_size``."""
    cfg = ErasureConfig(group_size=group_size)
    d = ParamLayout.from_model(model).d
    rows = estimate_rows_bytes(model, n, k, cfg, d)
    out: dict[str, Any] = {"rows_bytes": rows, "m": -(-n // group_size)}
    if rows > budget:
        return out | {"bytes": None, "fits": False, "why": "rows alone exceed the budget"}
    blocks = make_blocks("per_layer", model)
    m = out["m"]
    try:  # the budgeted plan (auto may switch blocks to their lower-memory solver)
        plans = plan_blocks(m, d, blocks, "auto", torch.float32, budget - rows)
        fits, why = True, ""
    except MemoryBudgetError:
        plans = plan_blocks(m, d, blocks, "auto", torch.float32, None)
        fits, why = False, "the block inverses exceed the rest of the budget"
    return out | {"bytes": rows + total_bytes(plans), "fits": fits, "why": why}


def kfac_estimate(model: Any, budget: int, scale_batch: int = 1) -> dict[str, Any]:
    """K-FAC and EK-FAC bytes (module docstring) for ``model``."""
    specs, diag = plan_layers(model)
    params = dict(model.named_parameters())
    s = sum((f.d_in**2 + f.d_out**2) * FP64 for f in specs)
    eig = sum((f.d_in + f.d_out) * FP64 for f in specs)
    d_diag = sum(params[k].numel() for k in diag) * FP64
    biggest = max((max(f.d_in, f.d_out) for f in specs), default=0)
    persistent = 2 * s + eig + d_diag
    peak = persistent + s + int(2.25 * biggest**2 * FP64)
    p = sum(f.d_in * f.d_out for f in specs) * FP64
    widest = max((f.d_in * f.d_out for f in specs), default=0) * FP64
    e_persistent = persistent + 2 * p
    e_peak = max(peak, e_persistent + 2 * scale_batch * widest)
    return {
        "layers": len(specs),
        "largest_factor": biggest,
        "kfac_bytes": persistent,
        "kfac_peak": peak,
        "kfac_fits": peak <= budget,
        "ekfac_bytes": e_persistent,
        "ekfac_peak": e_peak,
        "ekfac_fits": e_peak <= budget,
        "eigh_flops": sum(9 * (f.d_in**3 + f.d_out**3) for f in specs),
    }


def fit_table(budget: int) -> list[dict[str, Any]]:
    """One row per model of :data:`FIT_FAMILIES`: d, and each family's bytes and verdict."""
    rows = []
    for label, name, opts, shape, k, n in FIT_FAMILIES:
        model = meta_model(name, opts, shape, k)
        d = ParamLayout.from_model(model).d
        row: dict[str, Any] = {"model": label, "d": d, "n": n}
        for g in (1, 10):
            row[f"exact_g{g}"] = exact_estimate(model, n, k, g, budget)
        row.update(kfac_estimate(model, budget))
        rows.append(row)
    return rows


def mlp_fits(width: int, family: str, budget: int, n: int = 3500) -> bool:
    """Whether ``family`` (``exact_g1``, ``exact_g10``, ``kfac``, ``ekfac``) fits a depth-2 MLP
    of ``width`` on 28×28 inputs, 10 classes, n samples."""
    model = meta_model("mlp", {"width": width, "depth": 2}, (1, 28, 28), 10)
    if family.startswith("exact_g"):
        return bool(exact_estimate(model, n, 10, int(family[7:]), budget)["fits"])
    return bool(kfac_estimate(model, budget)[f"{family}_fits"])


def largest_mlp_width(budget: int, family: str = "kfac") -> int:
    """The largest MLP width whose ``family`` estimate fits ``budget`` (:func:`mlp_fits`;
    doubling, then bisection: the estimates grow with the width). 0 when width 1 does not."""
    if not mlp_fits(1, family, budget):
        return 0
    lo, hi = 1, 2
    while mlp_fits(hi, family, budget):
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if mlp_fits(mid, family, budget) else (lo, mid)
    return lo


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(job: tuple[str, dict[str, Any], tuple[int, ...], int, int, bool, int]) -> dict:
    """In a fresh process: build the model and n inputs, then time K-FAC (and EK-FAC) prepare
    and record the peak RSS growth (VmHWM, reset at the baseline) over the RSS after the
    model and data exist."""
    name, opts, shape, n, threads, ekfac, seed = job
    torch.set_num_threads(threads)
    from unlearnkit.curvature.kfac import KroneckerCurvature, accumulate, scale_sums

    model = build_model(name, shape, 10, seed=seed, **opts).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *shape, generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    # warm-up: the libraries' code and buffers (autograd, LAPACK) are loaded before the baseline
    small = build_model("mlp", (4,), 3, seed=0, width=4, depth=1).eval()
    accumulate(small, torch.rand(8, 4), torch.randint(0, 3, (8,)), "multiclass")
    torch.linalg.eigh(torch.eye(64, dtype=torch.float64))
    reset = _reset_peak()  # so that nothing before the baseline counts
    base = _status_kib("VmRSS")
    t0 = time.perf_counter()
    sums = accumulate(model, x, y, "multiclass", batch_size=64)
    curv = KroneckerCurvature.build(sums.factors())
    out: dict[str, Any] = {"kfac_seconds": time.perf_counter() - t0}
    if ekfac:
        t1 = time.perf_counter()
        ss = scale_sums(model, x, y, "multiclass", curv.bases, batch_size=1)
        KroneckerCurvature.build(sums.factors(), ss.scales(), bases=curv.bases)
        out["ekfac_extra_seconds"] = time.perf_counter() - t1
    peak = _status_kib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["peak_rss_growth_bytes"] = (peak - base) * 1024
    out["peak_reset"] = reset
    return out


def measure_kfac(
    name: str,
    opts: dict[str, Any],
    shape: tuple[int, ...],
    n: int,
    *,
    threads: int = 1,
    ekfac: bool = False,
) -> dict[str, Any]:
    """Prepare K-FAC (and EK-FAC, scale pass with batch 1) for ``name`` on ``n`` random inputs
    in a spawned process; its time and peak RSS growth beside :func:`kfac_estimate`."""
    budget_free = 2**62  # the verdicts are the caller's; here only the bytes
    est = kfac_estimate(meta_model(name, opts, shape, 10), budget_free)
    with mp.get_context("spawn").Pool(1) as pool:
        got = pool.map(_measure, [(name, opts, shape, n, threads, ekfac, 0)])[0]
    got["estimate_kfac_peak"] = est["kfac_peak"]
    got["estimate_ekfac_peak"] = est["ekfac_peak"]
    got["measured_over_estimate"] = got["peak_rss_growth_bytes"] / est["kfac_peak"]
    return got
