"""The SSSE erasure state with Kronecker-factored curvature (``structure="kfac"`` / ``"ekfac"``).

    state = KroneckerState.prepare(model, train_data, ErasureConfig(structure="kfac"))
    new_model, state = state.erase(model, forget_data, holdout=test_data, retain_sample=retain)

Instead of curvature rows and a block inverse (:class:`~unlearnkit.ssse.state.ErasureState`),
the state keeps the K-FAC **sums** of the training data D at θ_F (Σ ã ãᵀ, Σ g gᵀ, the diagonal
blocks and the counts; :mod:`unlearnkit.curvature.kfac.factors`), streamed from the data in
batches (:mod:`unlearnkit.curvature.kfac.stream`), and for EK-FAC the scale sums in the
eigenbases of D's factors (a second pass). A request for S (k samples, n_t left) at θ_t:

1. validates ids and the model (:class:`~unlearnkit.ssse.base.StateBase`);
2. ``exact`` mode: S's sums at θ_F (same label mode and seed) are subtracted and renormalised,
   F_R = A_R ⊗ G_R per layer (:func:`~unlearnkit.curvature.kfac.stream.leave_out_stream`;
   EK-FAC: R's scales kept in **D's** eigenbasis, ``scales_basis="full-data"``); ``paper``
   mode keeps F of D;
3. v = Σ_{i∈S} ∇ℓ_i(θ_t) (+ k·l2·θ_t with ``regularized_step``), Δ = (F + λI)⁻¹ v;
4. θ_{t+1} = θ_t + ε/(n_t − k)·Δ with ε, the utility budget and the ledger of
   :class:`~unlearnkit.ssse.request.ErasureRequest` — the exact engine's path; the ledger
   entry adds ``structure`` and ``scales_basis``.

States are immutable: a sequence of requests downdates from the previous state's sums. The
folder format is the exact engine's (:mod:`unlearnkit.ssse.persistence`): ``inverse.safetensors``
holds the sums (:mod:`unlearnkit.ssse.kronecker_io`), the manifest states their facts.
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

from unlearnkit.curvature.kfac import KFACSums, KroneckerCurvature, ScaleSums
from unlearnkit.curvature.kfac.distributed import stream_curvature_shards
from unlearnkit.curvature.kfac.stream import (
    leave_out_stream,
    resolve_batch_size,
    stream_curvature,
    stream_gradient,
    sums_bytes,
)
from unlearnkit.curvature.layout import ParamLayout, flat_params, with_params
from unlearnkit.curvature.memory import check_budget, default_memory_budget
from unlearnkit.errors import ConfigError, NumericalError, StateMismatchError
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse.base import StateBase, choice_line
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.distributed import NOTE, plan_shards, slowest, writes_state
from unlearnkit.ssse.kronecker_io import KroneckerTensors, read_kronecker, sums_to
from unlearnkit.ssse.persistence import (
    check_stated_facts,
    layout_dict,
    layout_from_dict,
    read_state_tensors,
    state_structure,
    write_state_folder,
)
from unlearnkit.ssse.request import (
    ErasureRequest,
)
from unlearnkit.ssse.rows import SampleData


def build_curvature(sums: KFACSums, scales: ScaleSums | None) -> KroneckerCurvature:
    """K-FAC of ``sums`` (re-diagonalised), or EK-FAC with ``scales`` in their own bases."""
    if scales is None:
        return KroneckerCurvature.build(sums.factors())
    return KroneckerCurvature.build(sums.factors(), scales.scales(), bases=scales.bases)


@dataclass(frozen=True)
class KroneckerState(StateBase):
    """Immutable Kronecker-factored erasure state; every update returns a new object."""

    config: ErasureConfig
    layout: ParamLayout
    sums: KFACSums  # of the samples F currently covers (exact: the remaining ones)
    scale_sums: ScaleSums | None  # EK-FAC, in D's eigenbases
    sample_ids: Tensor  # (n,) int64
    erased: Tensor  # (n,) bool
    theta_fisher: Tensor  # (d,) θ_F, where the sums were computed
    fingerprint: str
    ledger: tuple[dict[str, Any], ...] = ()
    prepare_seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    state_id: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        data: SampleData,
        config: ErasureConfig | dict[str, Any] | None = None,
        *,
        notes: dict[str, Any] | None = None,
        progress: bool | None = None,
    ) -> KroneckerState:
        """Stream the Kronecker sums of ``data`` at the model's θ (two passes for EK-FAC).

        With ``torch.distributed`` initialised, ``data`` is this process's shard and the state
        is that of all shards, the same on every process (:mod:`unlearnkit.ssse.distributed`)."""
        cfg = config if isinstance(config, ErasureConfig) else ErasureConfig(**(config or {}))
        plan = plan_shards(model, data, cfg)  # None unless torch.distributed is initialised
        if not cfg.kronecker:
            raise ConfigError(
                f"KroneckerState needs structure 'kfac' or 'ekfac', not {cfg.structure!r}"
            )
        if cfg.task != data.task:
            raise ConfigError(f"config task {cfg.task!r} does not match dataset task {data.task!r}")
        t0 = time.perf_counter()
        model = copy.deepcopy(model).eval()
        layout = ParamLayout.from_model(model)
        budget = cfg.memory_budget_bytes or default_memory_budget()
        ekfac = cfg.structure == "ekfac"
        check_budget(
            2 * sums_bytes(model, ekfac),
            budget,
            f"the {cfg.structure} factor sums (kept twice while streaming)",
            "Raise memory_budget_bytes.",
        )
        stream = stream_curvature if plan is None else stream_curvature_shards
        sums, scales = stream(
            model,
            data,
            cfg.task,
            ekfac=ekfac,
            mode=cfg.curvature,
            seed=cfg.seed,
            memory_budget_bytes=budget,
            progress=progress,
        )
        ids = torch.as_tensor(data.ids, dtype=torch.int64).reshape(-1).clone()
        notes = dict(notes or {})
        if plan is not None:
            ids, notes[NOTE] = plan.ids, plan.note()
        return cls(
            config=cfg,
            layout=layout,
            sums=sums,
            scale_sums=scales,
            sample_ids=ids,
            erased=torch.zeros(ids.numel(), dtype=torch.bool),
            theta_fisher=flat_params(model, layout).clone(),
            fingerprint=model_fingerprint(model),
            prepare_seconds=slowest(time.perf_counter() - t0),
            notes=notes,
            state_id=uuid.uuid4().hex if plan is None else plan.state_id,
        )

    # ------------------------------------------------------------------ properties
    @property
    def scales_basis(self) -> str:
        """``"none"`` (K-FAC) or ``"full-data"`` (EK-FAC scales in D's eigenbases)."""
        return "none" if self.scale_sums is None else "full-data"

    def curvature(self) -> KroneckerCurvature:
        """The curvature of the sums this state holds (eigendecomposes the factors)."""
        return build_curvature(self.sums, self.scale_sums)

    def describe(self) -> str:
        c, s = self.config, self.sums
        lines = [
            f"SSSE state: n={self.n} ({self.n_remaining} remaining, {len(self.ledger)} "
            f"request(s)), curvature={c.curvature}, mode={c.mode}, λ={c.damping:g}, "
            f"structure={c.structure} (scales_basis={self.scales_basis}), sums of {s.n} samples"
        ]
        for k, ls in s.layers.items():
            sp = ls.spec
            lines.append(f"  {k or '<root>'}: {c.structure} {sp.kind}, A {sp.d_in}², G {sp.d_out}²")
        for k, d in s.diag.items():
            lines.append(f"  {k}: diagonal ({d.numel()} entries)")
        return "\n".join(lines) + choice_line(self.notes)

    # ------------------------------------------------------------------ requests
    def request(self, model: nn.Module, forget: SampleData) -> ErasureRequest:
        """Validate; the ε-independent direction Δ = (F + λI)⁻¹ v for ``forget``."""
        t0 = time.perf_counter()
        self.check_model(model)
        cfg = self.config
        if forget.task != cfg.task:
            raise ConfigError(f"forget data task {forget.task!r} ≠ state task {cfg.task!r}")
        pos = self.positions(forget.ids)
        k = int(pos.numel())
        model = copy.deepcopy(model).eval()
        theta = flat_params(model, self.layout).double()
        dev = next(model.parameters()).device
        budget = cfg.memory_budget_bytes or default_memory_budget()
        ekfac = self.scale_sums is not None
        bs = resolve_batch_size(
            model, forget, None, budget, cfg.curvature, self.sums.samples, ekfac
        )
        v = self.layout.flatten(stream_gradient(model, forget, cfg.task, bs)).double()
        if cfg.regularized_step:
            v = v + k * cfg.l2 * theta.to(v.device)
        kt = sums_to(KroneckerTensors(self.sums, self.scale_sums), dev)
        sums, scales = kt.sums, kt.scales
        if cfg.mode == "exact":
            at_fisher = with_params(model, self.layout, self.theta_fisher)
            out = leave_out_stream(at_fisher, sums, forget, cfg.task, scales=scales, batch_size=bs)
            del at_fisher
            curv, sums, scales = out.curvature, out.sums, out.scale_sums
        else:
            curv = build_curvature(sums, scales)
        solved = curv.solve(self.layout.unflatten(v), cfg.damping)
        delta = self.layout.flatten(solved).double().cpu()
        if not bool(torch.isfinite(delta).all()):
            raise NumericalError("the SSSE direction (F + λI)⁻¹v has NaN/Inf entries")
        erased = self.erased.clone()
        erased[pos] = True
        return ErasureRequest(
            state=self,
            model=model,
            forget=forget,  # type: ignore[arg-type]
            theta=theta.cpu(),
            delta=delta,
            scale=1.0 / (self.n_remaining - k),
            next_erased=erased,
            seconds=time.perf_counter() - t0,
            next_fields={"sums": sums, "scale_sums": scales},
            ledger_extra={"structure": cfg.structure, "scales_basis": self.scales_basis},
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the state atomically (:mod:`unlearnkit.ssse.persistence`), compare-and-swap
        on the ledger as :meth:`ErasureState.save <unlearnkit.ssse.state.ErasureState.save>`.
        A data-parallel state is written by rank 0 only; other ranks write nothing
        (:func:`~unlearnkit.ssse.distributed.writes_state`)."""
        if not writes_state(self.notes):
            return Path(path)
        kt = KroneckerTensors(self.sums, self.scale_sums)
        tensors = {
            "sample_ids": self.sample_ids,
            "erased": self.erased.to(torch.uint8),
            "theta_fisher": self.theta_fisher,
        }
        manifest = {
            "config": self.config.model_dump(),
            "layout": layout_dict(self.layout),
            "model_fingerprint": self.fingerprint,
            "n": self.n,
            "n_remaining": self.n_remaining,
            "structure": self.config.structure,
            "scales_basis": self.scales_basis,
            "kronecker": kt.facts(),
            "sums_count": self.sums.n,
            "ledger": list(self.ledger),
            "prepare_seconds": self.prepare_seconds,
            "state_id": self.state_id,
            "structure_choice": self.notes.get("structure_choice"),
        }
        return write_state_folder(path, kt, tensors, manifest, self._check_replace)

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> KroneckerState:
        """Load and verify a saved Kronecker state (digest, checksums, the ledger against the
        erased mask, the sums' counts against the samples they cover); with ``model``, check
        it is the model the state applies to."""
        manifest, inv_t, t = read_state_tensors(path)
        structure = state_structure(manifest)
        if structure not in ("kfac", "ekfac"):
            raise StateMismatchError(
                f"{path} holds a {structure!r} erasure state; load it with "
                "unlearnkit.ssse.load_state"
            )
        layout = layout_from_dict(manifest["layout"])
        shapes = dict(zip(layout.names, layout.shapes, strict=True))
        kt = read_kronecker(inv_t, manifest.get("kronecker"), shapes)
        state = cls(
            config=ErasureConfig(**manifest["config"]),
            layout=layout,
            sums=kt.sums,
            scale_sums=kt.scales,
            sample_ids=t["sample_ids"],
            erased=t["erased"].bool(),
            theta_fisher=t["theta_fisher"],
            fingerprint=manifest["model_fingerprint"],
            ledger=tuple(manifest["ledger"]),
            prepare_seconds=float(manifest.get("prepare_seconds", 0.0)),
            notes={"structure_choice": manifest.get("structure_choice")},
            state_id=str(manifest.get("state_id", "")),
        )
        check_stated_facts(manifest, state.sample_ids, state.erased)
        state.check_counts()
        if not bool(torch.isfinite(state.theta_fisher).all()):
            raise NumericalError("stored theta_fisher has NaN/Inf entries")
        if model is not None:
            state.check_model(model)
        return state

    def check_counts(self) -> None:
        """The sums cover the samples F should: the remaining ones (``exact``) or all n
        (``paper``); EK-FAC scale sums the same number. StateMismatchError otherwise."""
        want = self.n_remaining if self.config.mode == "exact" else self.n
        counts = {"sums": self.sums.n}
        if self.scale_sums is not None:
            counts["scale sums"] = self.scale_sums.n
        bad = {k: c for k, c in counts.items() if c != want}
        if bad:
            raise StateMismatchError(
                f"the erasure state is inconsistent: the Kronecker {', '.join(bad)} count "
                f"{list(bad.values())} sample(s), the state's mask {want} ({self.config.mode} mode)"
            )
