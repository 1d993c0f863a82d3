"""The SSSE erasure state: ``prepare`` once, then ``erase(ids, ε)`` for each deletion request.

    state = ErasureState.prepare(model, train_data, ErasureConfig())
    new_model, state = state.erase(model, forget_data, holdout=test_data, retain_sample=retain)
    state.save("state/"); state = ErasureState.load("state/", new_model)

The state holds the block-diagonal inverse F⁻¹ (see :mod:`unlearnkit.curvature.block_inverse`),
the ids of the training samples, which of them are erased (the ledger), the parameters θ_F at
which the curvature was computed, and the fingerprint of the model it currently applies to.

A request for the samples S (k of them) at the current parameters θ_t with n_t samples left:

1. validates: every id is a training id (:class:`UnknownIdsError`), none was erased before
   (:class:`AlreadyErasedError`), the model is the one the state applies to
   (:class:`StateMismatchError`);
2. ``exact`` mode only: removes S from F, an exact downdate of its rows (shrunk groups get
   their mean row replaced), renormalised with N' (n_t − k samples, or the rows left);
3. v = Σ_{i∈S} ∇ℓ_i(θ_t) (+ k·l2·θ_t with ``regularized_step``), Δ = F⁻¹v;
4. θ_{t+1} = θ_t + ε/(n_t − k) · Δ  (SSSE eq. 4), ε chosen by the guarded retrain-free rule
   unless given, under a utility budget (:mod:`unlearnkit.ssse.request`).

Nothing is modified in place: ``erase`` returns a new model and a new state, and on any error
the model and the state are unchanged. The direction Δ does not depend on ε, so
:meth:`ErasureState.request` computes it once and
:class:`~unlearnkit.ssse.request.ErasureRequest` evaluates any ε grid. The exact leave-out is in
:mod:`unlearnkit.ssse.leave_out`, the file format in :mod:`unlearnkit.ssse.persistence`.
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse
from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.layout import ParamLayout, flat_params
from unlearnkit.curvature.memory import default_memory_budget, format_bytes
from unlearnkit.errors import ConfigError, MemoryBudgetError, NumericalError
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse.base import StateBase, choice_line
from unlearnkit.ssse.budget import forget_gradient_sums, input_numel, request_plan
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.distributed import (
    NOTE,
    check_rows,
    gather_rows,
    plan_shards,
    slowest,
    writes_state,
)
from unlearnkit.ssse.leave_out import leave_out, plan_leave_out, share_rows
from unlearnkit.ssse.persistence import (
    check_stated_facts,
    layout_dict,
    layout_from_dict,
    read_state_folder,
    write_state_folder,
)
from unlearnkit.ssse.request import (
    ErasureRequest,
)
from unlearnkit.ssse.rows import SampleData, dataset_rows, estimate_rows_bytes


@dataclass(frozen=True)
class ErasureState(StateBase):
    """Immutable erasure state; every update returns a new object."""

    config: ErasureConfig
    layout: ParamLayout
    inverse: BlockDiagonalInverse
    sample_ids: Tensor  # (n,) int64, training ids in prepare order
    erased: Tensor  # (n,) bool
    theta_fisher: Tensor  # (d,) θ_F, where the rows were computed
    row_group: Tensor  # (m,) group of each row
    group_members: Tensor  # (n_groups, g) sample ids (PAD_ID padded), current members
    group_sizes: Tensor  # (n_groups,) current member counts (0 = removed)
    rows: Tensor | None  # (m, d) row values at prepare/load (read-only); exact mode only
    fingerprint: str  # of the model the state currently applies to
    ledger: tuple[dict[str, Any], ...] = ()
    prepare_seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    #: rows re-averaged since (shrunk groups): (ids (p,), current values (p, d)); ``rows`` is
    #: then shared between the states of a sequence instead of copied per request
    row_patch: tuple[Tensor, Tensor] | None = None
    #: names the prepared state all its requests descend from (saved; a save refuses to
    #: replace a state of the same lineage whose ledger is not a prefix of this one's)
    state_id: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        data: SampleData,
        config: ErasureConfig | dict[str, Any] | None = None,
    ) -> ErasureState:
        """Compute the curvature rows of ``data`` at the model's θ and invert F (once).

        ``data``: an :class:`~unlearnkit.data.base.ArrayDataset` or any dataset with ids, y,
        task, classes, ``len`` and ``subset`` whose inputs come from ``batches(batch_size)``
        (:class:`~unlearnkit.ssse.rows.SampleData`; read in batches, never concatenated)."""
        cfg = config if isinstance(config, ErasureConfig) else ErasureConfig(**(config or {}))
        plan = plan_shards(model, data, cfg)  # data-parallel: :mod:`unlearnkit.ssse.distributed`
        if plan is not None:
            check_rows(cfg)
        if cfg.structure != "rows":
            raise ConfigError(
                f"ErasureState is the exact-rows engine; structure={cfg.structure!r} is prepared "
                "by unlearnkit.ssse.prepare_state (or uk.prepare), which returns either kind"
            )
        if cfg.task != data.task:
            raise ConfigError(f"config task {cfg.task!r} does not match dataset task {data.task!r}")
        t0 = time.perf_counter()
        model = copy.deepcopy(model).eval()
        layout = ParamLayout.from_model(model)
        blocks = make_blocks(cfg.blocks, model, **cfg.block_options)
        budget = cfg.memory_budget_bytes or default_memory_budget()
        n = len(data) if plan is None else plan.n
        rows_bytes = estimate_rows_bytes(model, n, len(data.classes), cfg, layout.d)
        if rows_bytes > budget:
            raise MemoryBudgetError(
                f"the curvature rows alone need about {format_bytes(rows_bytes)} "
                f"(n={n}, d={layout.d}, group_size={cfg.group_size}, curvature={cfg.curvature}) "
                f"but the memory budget is {format_bytes(budget)}; group the gradients "
                "(group_size=10 divides the rows by 10), use the empirical Fisher (one row per "
                "sample), or raise memory_budget_bytes"
            )
        gm = dataset_rows(model, data, cfg)
        gm = gm if plan is None else gather_rows(plan, gm)
        normalizer = n if cfg.normalizer_kind == "samples" else gm.n_groups
        inverse = BlockDiagonalInverse.build(
            gm.G,
            blocks,
            cfg.damping,
            normalizer,
            solver=cfg.solver,
            memory_budget_bytes=max(budget - rows_bytes, 0),
        )
        rows = gm.G if cfg.mode == "exact" else None
        return cls(
            config=cfg,
            layout=layout,
            inverse=share_rows(inverse, rows),
            sample_ids=gm.sample_ids.clone(),
            erased=torch.zeros(n, dtype=torch.bool),
            theta_fisher=flat_params(model, layout).clone(),
            row_group=gm.row_group.clone(),
            group_members=gm.group_members.clone(),
            group_sizes=gm.group_sizes.clone(),
            rows=rows,
            fingerprint=model_fingerprint(model),
            prepare_seconds=slowest(time.perf_counter() - t0),
            notes={} if plan is None else {NOTE: plan.note()},
            state_id=uuid.uuid4().hex if plan is None else plan.state_id,
        )

    # ------------------------------------------------------------------ properties
    def describe(self) -> str:
        c = self.config
        return (
            f"SSSE state: n={self.n} ({self.n_remaining} remaining, {len(self.ledger)} request(s)), "
            f"curvature={c.curvature}, mode={c.mode}, λ={c.damping:g}, N={self.inverse.normalizer:g}, "
            f"group_size={c.group_size}, structure=rows\n{self.inverse.describe()}"
            + choice_line(self.notes)
        )

    def rows_at(self, ridx: Tensor) -> Tensor:
        """Current values of the rows ``ridx`` (a new (len(ridx), d) tensor)."""
        assert self.rows is not None
        out = self.rows[ridx]
        if self.row_patch is not None:
            pid, values = self.row_patch
            pos = torch.full((self.rows.shape[0],), -1, dtype=torch.int64)
            pos[pid] = torch.arange(pid.numel())
            at = pos[ridx]
            hit = torch.nonzero(at >= 0).reshape(-1)
            if hit.numel():
                out[hit.to(out.device)] = values[at[hit].to(values.device)]
        return out

    def current_rows(self) -> Tensor | None:
        """(m, d) current row values (exact mode): ``rows`` itself, or a patched copy."""
        if self.rows is None or self.row_patch is None:
            return self.rows
        out = self.rows.clone()
        pid, values = self.row_patch
        out[pid.to(out.device)] = values
        return out

    # ------------------------------------------------------------------ requests
    def request(self, model: nn.Module, forget: SampleData) -> ErasureRequest:
        """Validate; the ε-independent direction Δ for ``forget`` in budget (:mod:`.budget`)."""
        t0 = time.perf_counter()
        self.check_model(model)
        if forget.task != self.config.task:
            raise ConfigError(f"forget data task {forget.task!r} ≠ state task {self.config.task!r}")
        pos = self.positions(forget.ids)
        k, cfg = int(pos.numel()), self.config
        exact = cfg.mode == "exact"
        plan = plan_leave_out(self, forget.ids) if exact else None
        budget = request_plan(self, plan, k, input_numel(forget))  # before allocating
        model = copy.deepcopy(model).eval()
        theta = flat_params(model, self.layout).double()
        v, sums = forget_gradient_sums(self, model, forget, plan, budget.chunk)
        if cfg.regularized_step:
            v = v + k * cfg.l2 * theta
        n_after = self.n_remaining - k
        inverse, sizes, members = self.inverse, self.group_sizes, self.group_members
        patch = self.row_patch
        if exact:
            inverse, patch, sizes, members = leave_out(
                self, model, forget, n_after, plan, sums, budget.chunk
            )
        delta = inverse.solve(v)
        if not bool(torch.isfinite(delta).all()):
            raise NumericalError("the SSSE direction F⁻¹v has NaN/Inf entries")
        erased = self.erased.clone()
        erased[pos] = True
        return ErasureRequest(
            state=self,
            model=model,
            forget=forget,
            theta=theta,
            delta=delta,
            scale=1.0 / n_after,
            next_erased=erased,
            seconds=time.perf_counter() - t0,
            next_fields={
                "inverse": inverse,
                "row_patch": patch,
                "group_sizes": sizes,
                "group_members": members,
            },
            ledger_extra={"structure": "rows", "scales_basis": None},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the state to the folder ``path`` atomically (:mod:`unlearnkit.ssse.persistence`).

        Compare-and-swap: a state of the same lineage (``state_id``) already at ``path`` is
        replaced only when its ledger is a prefix of this one's, i.e. this state descends
        from it; otherwise (another process recorded a request since this state was loaded)
        :class:`StateMismatchError` and nothing is written. A data-parallel state is written
        by rank 0 only (:func:`~unlearnkit.ssse.distributed.writes_state`)."""
        if not writes_state(self.notes):
            return Path(path)
        tensors = {
            "sample_ids": self.sample_ids,
            "erased": self.erased.to(torch.uint8),
            "theta_fisher": self.theta_fisher,
            "row_group": self.row_group,
            "group_members": self.group_members,
            "group_sizes": self.group_sizes,
        }
        if self.rows is not None:
            tensors["rows"] = self.current_rows()  # the format keeps the current values
        manifest = {
            "config": self.config.model_dump(),
            "layout": layout_dict(self.layout),
            "model_fingerprint": self.fingerprint,
            "n": self.n,
            "n_remaining": self.n_remaining,
            "m_rows": int(self.row_group.numel()),
            "normalizer": self.inverse.normalizer,
            "solvers": self.inverse.describe(),
            "ledger": list(self.ledger),
            "prepare_seconds": self.prepare_seconds,
            "state_id": self.state_id,
            "structure_choice": self.notes.get("structure_choice"),
        }
        return write_state_folder(path, self.inverse, tensors, manifest, self._check_replace)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> ErasureState:
        """Load and verify a saved state; with ``model``, check it is the model it applies to."""
        manifest, inv, t = read_state_folder(path)
        state = cls(
            config=ErasureConfig(**manifest["config"]),
            layout=layout_from_dict(manifest["layout"]),
            inverse=share_rows(inv, t.get("rows")),
            sample_ids=t["sample_ids"],
            erased=t["erased"].bool(),
            theta_fisher=t["theta_fisher"],
            row_group=t["row_group"],
            group_members=t["group_members"],
            group_sizes=t["group_sizes"],
            rows=t.get("rows"),
            fingerprint=manifest["model_fingerprint"],
            ledger=tuple(manifest["ledger"]),
            prepare_seconds=float(manifest.get("prepare_seconds", 0.0)),
            state_id=str(manifest.get("state_id", "")),
            notes={"structure_choice": manifest.get("structure_choice")},
        )
        check_stated_facts(manifest, state.sample_ids, state.erased)
        for name, tensor in (("theta_fisher", state.theta_fisher), ("rows", state.rows)):
            if tensor is not None and not bool(torch.isfinite(tensor).all()):
                raise NumericalError(f"stored {name} has NaN/Inf entries")
        if model is not None:
            state.check_model(model)
        return state
