"""Which structure stores the curvature (``ErasureConfig.structure``), preparing and loading a
state of either kind.

``auto`` chooses between the exact rows (:class:`~unlearnkit.ssse.state.ErasureState`) and
K-FAC factors (:class:`~unlearnkit.ssse.kronecker.KroneckerState`) before anything large is
computed, from estimates (bytes, and floating-point operations as the cost):

* **rows**: the rows matrix (:func:`~unlearnkit.ssse.rows.estimate_rows_bytes`, m rows of d
  fp32) plus the block inverse the solvers plan for it
  (:meth:`~unlearnkit.curvature.block_inverse.BlockDiagonalInverse.plan`); cost: the per-sample
  gradients, n·c·3·f (c columns per sample, f the forward flops of one sample) plus each
  block's factorisation, min(m, d_b)²·max(m, d_b);
* **kfac**: the fp64 factor sums, Σ_l (d_in² + d_out²) + the diagonal blocks, twice while
  streaming (:func:`~unlearnkit.curvature.kfac.stream.sums_bytes`); cost: the same gradient
  pass, the products n·c·Σ_l P_l·(d_in² + d_out²) and the eigendecompositions Σ_l d_in³ + d_out³.

Rule: **rows** when they fit the memory budget and cost at most :data:`COST_RATIO` times the
factors (or under :data:`CHEAP_FLOPS`, a few seconds of CPU) — they are the exact curvature of
the structure the SSSE paper uses; otherwise **kfac** when its sums fit; otherwise
:class:`~unlearnkit.errors.MemoryBudgetError`. The choice and a sentence with the numbers are
recorded in the manifest (``structure_choice``) and printed by ``describe()``; the state's
config holds the chosen structure.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse
from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.kfac.capture import plan_layers
from unlearnkit.curvature.kfac.sources import first_input
from unlearnkit.curvature.kfac.stream import (
    label_columns,
    per_sample_bytes,
    sums_bytes,
)
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.memory import default_memory_budget, format_bytes
from unlearnkit.errors import MemoryBudgetError
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.distributed import rank0_choice, total_samples
from unlearnkit.ssse.kronecker import KroneckerState
from unlearnkit.ssse.persistence import read_manifest, state_structure
from unlearnkit.ssse.rows import SampleData, estimate_rows_bytes
from unlearnkit.ssse.state import ErasureState

#: rows are taken while they cost at most this many times the Kronecker factors
COST_RATIO = 10.0
#: below this many floating-point operations the rows are cheap whatever the ratio
CHEAP_FLOPS = 1e10

AnyState = ErasureState | KroneckerState


def choose_structure(
    model: nn.Module, data: SampleData, cfg: ErasureConfig, n: int | None = None
) -> dict[str, Any]:
    """``{"requested", "chosen", "reason", "numbers"}`` for ``cfg.structure == "auto"`` (the
    rule of the module docstring) for ``n`` samples (default ``len(data)``); MemoryBudgetError
    when neither fits."""
    model = copy.deepcopy(model).eval()
    layout = ParamLayout.from_model(model)
    n, d = len(data) if n is None else int(n), layout.d
    budget = cfg.memory_budget_bytes or default_memory_budget()
    rows_cfg = ErasureConfig(**{**cfg.model_dump(), "structure": "rows"})
    rows_bytes = estimate_rows_bytes(model, n, len(data.classes), rows_cfg, d)
    m = rows_bytes // (4 * d)
    x1 = first_input(data)
    with_outputs = cfg.curvature == "ggn"
    columns = label_columns(cfg.curvature, 1, len(data.classes) if with_outputs else 1)
    _, pos = per_sample_bytes(model, x1, columns)
    layers, diag = plan_layers(model)
    params = dict(model.named_parameters())
    forward = 2 * sum(pos.get(s.name, 1) * s.d_in * s.d_out for s in layers)
    forward += 2 * sum(params[k].numel() for k in diag)
    grad_flops = 3.0 * n * columns * forward
    inverse_bytes: int | None
    try:
        blocks = make_blocks(cfg.blocks, model, **cfg.block_options)
        plan = BlockDiagonalInverse.plan(
            m, d, blocks, solver=cfg.solver, memory_budget_bytes=max(budget - rows_bytes, 0)
        )
        inverse_bytes = sum(int(p["bytes"]) for p in plan)  # type: ignore[call-overload]
        sizes = [int(p["d_b"]) for p in plan]  # type: ignore[call-overload]
    except MemoryBudgetError:
        inverse_bytes, sizes = None, [d]
    rows_flops = grad_flops + sum(min(m, b) ** 2 * max(m, b) for b in sizes)
    kfac_bytes = 2 * sums_bytes(model)
    kfac_flops = grad_flops + sum(
        n * columns * pos.get(s.name, 1) * (s.d_in**2 + s.d_out**2) + s.d_in**3 + s.d_out**3
        for s in layers
    )
    rows_fit = inverse_bytes is not None and rows_bytes + inverse_bytes <= budget
    cheap = rows_flops <= max(COST_RATIO * kfac_flops, CHEAP_FLOPS)
    rows_mem = (
        f"{format_bytes(rows_bytes)} of rows + {format_bytes(inverse_bytes)} of inverse"
        if inverse_bytes is not None
        else f"{format_bytes(rows_bytes)} of rows and an inverse that does not fit"
    )
    numbers = (
        f"rows need {rows_mem} and about {rows_flops:.3g} flops; K-FAC factors need "
        f"{format_bytes(kfac_bytes)} and about {kfac_flops:.3g} flops; the memory budget is "
        f"{format_bytes(budget)}"
    )
    if rows_fit and cheap:
        chosen, why = "rows", "the exact rows fit the memory budget at an acceptable cost"
    elif kfac_bytes <= budget:
        why = (
            "the rows exceed the memory budget"
            if not rows_fit
            else f"the rows cost more than {COST_RATIO:g}x the K-FAC factors"
        )
        chosen = "kfac"
    else:
        raise MemoryBudgetError(
            f"neither structure fits: {numbers}. Raise memory_budget_bytes, or group the "
            "rows (group_size)"
        )
    return {
        "requested": "auto",
        "chosen": chosen,
        "reason": f"{chosen}: {why} ({numbers}).",
        "numbers": {
            "rows_bytes": rows_bytes,
            "inverse_bytes": inverse_bytes,
            "rows_flops": rows_flops,
            "kfac_bytes": kfac_bytes,
            "kfac_flops": kfac_flops,
            "budget": budget,
        },
    }


def prepare_state(
    model: nn.Module,
    data: SampleData,
    config: ErasureConfig | dict[str, Any] | None = None,
) -> AnyState:
    """Prepare the erasure state of ``config.structure`` (``auto``: :func:`choose_structure`,
    its choice recorded in the state's notes and manifest).

    With ``torch.distributed`` initialised, ``data`` is this process's shard and every process
    gets the state of all shards (:mod:`unlearnkit.ssse.distributed`); ``auto`` then chooses
    for the total number of samples, rank 0's choice taken by all."""
    cfg = config if isinstance(config, ErasureConfig) else ErasureConfig(**(config or {}))
    notes: dict[str, Any] = {}
    if cfg.structure == "auto":
        choice = rank0_choice(choose_structure(model, data, cfg, n=total_samples(data)))
        notes["structure_choice"] = choice
        cfg = ErasureConfig(**{**cfg.model_dump(), "structure": choice["chosen"]})
    if cfg.kronecker:
        return KroneckerState.prepare(model, data, cfg, notes=notes)
    state = ErasureState.prepare(model, data, cfg)
    return replace(state, notes={**state.notes, **notes})


def load_state(path: str | Path, model: nn.Module | None = None) -> AnyState:
    """Load a saved state of any structure (the manifest's config says which)."""
    manifest = read_manifest(path)
    if manifest is not None and state_structure(manifest) in ("kfac", "ekfac"):
        return KroneckerState.load(path, model)
    return ErasureState.load(path, model)


__all__ = ["AnyState", "choose_structure", "load_state", "prepare_state"]
