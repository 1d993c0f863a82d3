"""The SSSE erasure state: ``prepare`` once, then ``erase(ids, ε)`` for each deletion request.

    state = ErasureState.prepare(model, train_data, ErasureConfig(...))
    new_model, state = state.erase(model, forget_data, eps=1.0)
    state.save("state/"); state = ErasureState.load("state/", new_model)

The state holds the block-diagonal inverse F⁻¹ (see :mod:`unlearnkit.curvature.block_inverse`),
the ids of the training samples, which of them are erased (the ledger), the parameters θ_F at
which the curvature was computed, and the fingerprint of the model it currently applies to.

A request for the samples S (k of them) at the current parameters θ_t with n_t samples left:

1. validates: every id is a training id (:class:`UnknownIdsError`), none was erased before
   (:class:`AlreadyErasedError`), the model is the one the state applies to
   (:class:`StateMismatchError`);
2. ``exact`` mode only: removes S from F, an exact downdate of its rows (groups that lose some
   members get their mean row replaced), renormalised with N' (n_t − k samples, or the rows
   left);
3. v = Σ_{i∈S} ∇ℓ_i(θ_t) (+ k·l2·θ_t with ``regularized_step``), Δ = F⁻¹v;
4. θ_{t+1} = θ_t + ε/(n_t − k) · Δ  (SSSE eq. 4).

Nothing is modified in place: ``erase`` returns a new model and a new state, and on any error
the model and the state are unchanged. The direction Δ does not depend on ε, so
:meth:`ErasureState.request` computes it once and :class:`ErasureRequest` evaluates any ε grid.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

import unlearnkit
from unlearnkit.curvature.block_inverse import BlockDiagonalInverse, BlockEntry
from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.gradients import per_sample_gradients
from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.matrix import PAD_ID
from unlearnkit.curvature.memory import format_bytes
from unlearnkit.curvature.solvers import WoodburyInverse
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import (
    AlreadyErasedError,
    ConfigError,
    MemoryBudgetError,
    NumericalError,
    StateMismatchError,
    UnknownIdsError,
)
from unlearnkit.io import atomic_write_json, load_tensors, model_fingerprint, save_tensors
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.rows import build_rows, has_closed_form_rows

FORMAT_VERSION = 1


def flat_params(model: nn.Module, layout: ParamLayout) -> Tensor:
    """θ as a flat vector in ``layout`` order (trainable parameters)."""
    params = dict(model.named_parameters())
    return layout.flatten({n: params[n].detach() for n in layout.names})


def with_params(model: nn.Module, layout: ParamLayout, theta: Tensor) -> nn.Module:
    """A deep copy of ``model`` with its trainable parameters set from the flat ``theta``."""
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, value in layout.unflatten(theta).items():
            params[name].copy_(value.to(params[name].dtype))
    return out


def default_memory_budget(fraction: float = 0.8) -> int:
    """``fraction`` of the memory available now (``MemAvailable`` in /proc/meminfo), or 8 GiB
    where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(int(line.split()[1]) * 1024 * fraction)
    except OSError:
        pass
    return 8 * 2**30


def estimate_rows_bytes(model: nn.Module, data: ArrayDataset, cfg: ErasureConfig, d: int) -> int:
    """fp32 bytes of the rows matrix: ceil(n/g) groups × rows per group × d."""
    n_groups = -(-len(data) // cfg.group_size)
    per_group = 1
    if cfg.curvature == "ggn" and not has_closed_form_rows(model, cfg):
        per_group = data.num_outputs
    return n_groups * per_group * d * 4


def _layout_dict(layout: ParamLayout) -> dict[str, Any]:
    return {"names": list(layout.names), "shapes": [list(s) for s in layout.shapes]}


def share_rows(inverse: BlockDiagonalInverse, rows: Tensor | None) -> BlockDiagonalInverse:
    """Woodbury blocks whose stored rows (G with its replaced-row patch) equal the exact-mode
    rows' columns hold a view of ``rows`` instead of a second copy (the rows matrix is then in
    memory once)."""
    if rows is None:
        return inverse
    entries = []
    for e in inverse.entries:
        inv = e.inverse
        if (
            isinstance(inv, WoodburyInverse)
            and isinstance(e.sel, slice)
            and tuple(inv.G.shape) == (rows.shape[0], e.index.numel())
            and inv.G.dtype == rows.dtype
            and inv.G.device == rows.device
        ):
            try:  # equal outside the replaced-row patch and on it
                inv = inv.sharing(rows[:, e.sel])
            except ConfigError:
                pass
        entries.append(BlockEntry(e.name, e.index, e.sel, inv, e.reason))
    return BlockDiagonalInverse(entries, inverse.d)


@dataclass(frozen=True)
class ErasureState:
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

    # ------------------------------------------------------------------ construction
    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        data: ArrayDataset,
        config: ErasureConfig | dict[str, Any] | None = None,
    ) -> ErasureState:
        """Compute the curvature rows of ``data`` at the model's θ and invert F (once)."""
        cfg = config if isinstance(config, ErasureConfig) else ErasureConfig(**(config or {}))
        if cfg.task != data.task:
            raise ConfigError(f"config task {cfg.task!r} does not match dataset task {data.task!r}")
        t0 = time.perf_counter()
        model = copy.deepcopy(model).eval()
        layout = ParamLayout.from_model(model)
        blocks = make_blocks(cfg.blocks, model, **cfg.block_options)
        budget = cfg.memory_budget_bytes or default_memory_budget()
        rows_bytes = estimate_rows_bytes(model, data, cfg, layout.d)
        if rows_bytes > budget:
            raise MemoryBudgetError(
                f"the curvature rows alone need about {format_bytes(rows_bytes)} "
                f"(n={len(data)}, d={layout.d}, group_size={cfg.group_size}, curvature={cfg.curvature}) "
                f"but the memory budget is {format_bytes(budget)}; group the gradients "
                "(group_size=10 divides the rows by 10), use the empirical Fisher (one row per "
                "sample), or raise memory_budget_bytes"
            )
        gm = build_rows(model, data.x, data.y, data.ids, cfg)
        normalizer = len(data) if cfg.normalizer_kind == "samples" else gm.n_groups
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
            sample_ids=data.ids.clone(),
            erased=torch.zeros(len(data), dtype=torch.bool),
            theta_fisher=flat_params(model, layout).clone(),
            row_group=gm.row_group.clone(),
            group_members=gm.group_members.clone(),
            group_sizes=gm.group_sizes.clone(),
            rows=rows,
            fingerprint=model_fingerprint(model),
            prepare_seconds=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ properties
    @property
    def n(self) -> int:
        return int(self.sample_ids.numel())

    @property
    def n_remaining(self) -> int:
        return int((~self.erased).sum())

    @property
    def erased_ids(self) -> Tensor:
        return self.sample_ids[self.erased]

    def describe(self) -> str:
        c = self.config
        return (
            f"SSSE state: n={self.n} ({self.n_remaining} remaining, {len(self.ledger)} request(s)), "
            f"curvature={c.curvature}, mode={c.mode}, λ={c.damping:g}, N={self.inverse.normalizer:g}, "
            f"group_size={c.group_size}\n{self.inverse.describe()}"
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

    # ------------------------------------------------------------------ validation
    def check_model(self, model: nn.Module) -> None:
        """The model must have this state's layout and be the model the state applies to."""
        try:
            layout = ParamLayout.from_model(model)
        except Exception as e:  # noqa: BLE001 - reported as a mismatch
            raise StateMismatchError(f"model does not match the erasure state: {e}") from None
        if layout != self.layout:
            raise StateMismatchError(
                "model parameters do not match the erasure state (different architecture or "
                f"parameter shapes: state has {len(self.layout.names)} tensors, d={self.layout.d}; "
                f"model has {len(layout.names)}, d={layout.d})"
            )
        fp = model_fingerprint(model)
        if fp != self.fingerprint:
            raise StateMismatchError(
                "this model is not the one the erasure state applies to (weights fingerprint "
                f"{fp[:12]} ≠ {self.fingerprint[:12]}); load the model that the last erase "
                "returned, or prepare a new state for this model"
            )

    def positions(self, ids: Tensor) -> Tensor:
        """Positions of ``ids`` among the training ids; unknown, repeated or erased ids raise."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if ids.numel() == 0:
            raise ConfigError("an erasure request needs at least one sample id")
        if torch.unique(ids).numel() != ids.numel():
            raise ConfigError("the erasure request repeats sample ids")
        order = torch.argsort(self.sample_ids)
        sorted_ids = self.sample_ids[order]
        idx = torch.searchsorted(sorted_ids, ids).clamp(max=self.n - 1)
        found = sorted_ids[idx] == ids
        if not bool(found.all()):
            raise UnknownIdsError(
                f"{int((~found).sum())} id(s) are not training samples of this state: "
                f"{ids[~found][:10].tolist()}"
            )
        pos = order[idx]
        already = self.erased[pos]
        if bool(already.any()):
            raise AlreadyErasedError(
                f"{int(already.sum())} id(s) were already erased: {ids[already][:10].tolist()}"
            )
        if int(ids.numel()) >= self.n_remaining:
            raise ConfigError("cannot erase every remaining training sample")
        return pos

    # ------------------------------------------------------------------ requests
    def request(self, model: nn.Module, forget: ArrayDataset) -> ErasureRequest:
        """Validate and compute the ε-independent direction Δ for erasing ``forget``."""
        t0 = time.perf_counter()
        self.check_model(model)
        if forget.task != self.config.task:
            raise ConfigError(f"forget data task {forget.task!r} ≠ state task {self.config.task!r}")
        pos = self.positions(forget.ids)
        k = int(pos.numel())
        model = copy.deepcopy(model).eval()
        dtype = next(model.parameters()).dtype
        gm = per_sample_gradients(
            model, forget.x, forget.y, self.config.task, ids=forget.ids, compute_dtype=dtype
        )
        v = gm.G.double().sum(0)
        theta = flat_params(model, self.layout).double()
        if self.config.regularized_step:
            v = v + k * self.config.l2 * theta
        n_after = self.n_remaining - k
        inverse, sizes, members = self.inverse, self.group_sizes, self.group_members
        patch = self.row_patch
        if self.config.mode == "exact":
            # at θ_F (the first request after prepare) the per-sample gradients just computed
            # are the empirical-Fisher rows that shrinking groups lose: no second gradient pass
            theta_now = flat_params(model, self.layout).to(self.theta_fisher.device)
            at_fisher = torch.equal(theta_now, self.theta_fisher)
            reuse = gm.G if at_fisher and self.config.curvature == "empirical" else None
            inverse, patch, sizes, members = self._leave_out(model, forget, n_after, reuse)
        delta = inverse.solve(v)
        if not bool(torch.isfinite(delta).all()):
            raise NumericalError("the SSSE direction F⁻¹v has NaN/Inf entries")
        erased = self.erased.clone()
        erased[pos] = True
        return ErasureRequest(
            state=self,
            model=model,
            ids=forget.ids.clone(),
            theta=theta,
            delta=delta,
            scale=1.0 / n_after,
            next_inverse=inverse,
            next_sizes=sizes,
            next_members=members,
            next_erased=erased,
            seconds=time.perf_counter() - t0,
            next_row_patch=patch,
        )

    def _leave_out(
        self,
        model: nn.Module,
        forget: ArrayDataset,
        n_after: int,
        forget_rows: Tensor | None = None,
    ) -> tuple[BlockDiagonalInverse, tuple[Tensor, Tensor] | None, Tensor, Tensor]:
        """Exact Fisher of the remaining data: drop or re-average the rows holding S.

        Returns the new inverse, the new row patch (``rows`` is never copied or modified),
        the group sizes and members.

        ``forget_rows`` (k, d): the samples' curvature rows at θ_F in ``forget`` order, when
        already known; otherwise they are computed for the samples of shrinking groups."""
        assert self.rows is not None
        cfg = self.config
        members, sizes = self.group_members.clone(), self.group_sizes.clone()
        remove = torch.isin(members, forget.ids) & (members != PAD_ID)
        hit_groups = torch.nonzero(remove.any(dim=1)).reshape(-1)
        lost = remove[hit_groups].sum(dim=1)
        emptied = hit_groups[lost == sizes[hit_groups]]
        shrunk = hit_groups[lost < sizes[hit_groups]]
        r = self.row_group.numel() // max(self.group_sizes.numel(), 1)
        rows_of = lambda groups: (groups.reshape(-1, 1) * r + torch.arange(r)).reshape(-1)  # noqa: E731
        n_groups_after = int((sizes > 0).sum()) - int(emptied.numel())
        N = n_after if cfg.normalizer_kind == "samples" else n_groups_after
        inverse = self.inverse
        patch = self.row_patch  # ``rows`` is shared (never modified in place)
        if shrunk.numel():
            # g_b' = (|b|·g_b − Σ_{i∈S∩b} g_i) / (|b| − |S∩b|), per-sample g_i at θ_F
            gone = members[shrunk][remove[shrunk]]
            if forget_rows is not None:
                g_rm = forget_rows[forget.positions(gone)].double()
            else:
                theta_model = with_params(model, self.layout, self.theta_fisher)
                sub = forget.subset(gone)
                g_rm = build_rows(theta_model, sub.x, sub.y, sub.ids, cfg, group_size=1).G.double()
            dev = g_rm.device  # the model's device (rows may live on a GPU)
            owner = torch.repeat_interleave(torch.arange(shrunk.numel()), remove[shrunk].sum(dim=1))
            sums = torch.zeros(shrunk.numel(), g_rm.shape[1], dtype=torch.float64, device=dev)
            sums.index_add_(0, owner.to(dev), g_rm)
            b = sizes[shrunk].double().to(dev)
            kb = lost[lost < sizes[hit_groups]].double().to(dev)
            ridx = rows_of(shrunk)
            old = self.rows_at(ridx).double()
            new = (b[:, None] * old - sums) / (b - kb)[:, None]
            inverse = inverse.replace_rows(ridx, new, N, old_values=old)
            patch = _patched(patch, ridx, new.to(device=self.rows.device, dtype=self.rows.dtype))
        if emptied.numel():
            ridx = rows_of(emptied)
            inverse = inverse.downdate(ridx, N, row_values=self.rows_at(ridx))
        if not shrunk.numel() and not emptied.numel():
            inverse = inverse.downdate(torch.empty(0, dtype=torch.int64), N, row_values=None)
        members[remove] = PAD_ID
        sizes[hit_groups] -= lost
        return inverse, patch, sizes, members

    def erase(
        self, model: nn.Module, forget: ArrayDataset, eps: float = 1.0
    ) -> tuple[nn.Module, ErasureState]:
        """Erase ``forget`` with scale ε: returns (new model, new state); inputs unchanged."""
        return self.request(model, forget).commit(eps)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the state to the folder ``path`` atomically (a temp folder, then a rename).

        Files: ``inverse.safetensors`` (F⁻¹), ``state.safetensors`` (ids, ledger mask, θ_F, row
        bookkeeping, exact-mode rows) and ``manifest.json`` (config, fingerprint, counts,
        ledger, SHA-256 of both tensor files, versions).
        """
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp-{time.time_ns()}")
        tmp.mkdir(parents=True)
        try:
            inv_sha = save_tensors(tmp / "inverse.safetensors", self.inverse.state_dict())
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
            st_sha = save_tensors(tmp / "state.safetensors", tensors)
            manifest = {
                "format": "unlearnkit.ssse-state",
                "format_version": FORMAT_VERSION,
                "unlearnkit_version": unlearnkit.__version__,
                "torch_version": torch.__version__,
                "config": self.config.model_dump(),
                "layout": _layout_dict(self.layout),
                "model_fingerprint": self.fingerprint,
                "n": self.n,
                "n_remaining": self.n_remaining,
                "m_rows": int(self.row_group.numel()),
                "normalizer": self.inverse.normalizer,
                "solvers": self.inverse.describe(),
                "ledger": list(self.ledger),
                "prepare_seconds": self.prepare_seconds,
                "checksums": {"inverse.safetensors": inv_sha, "state.safetensors": st_sha},
                "saved_at": datetime.now(timezone.utc).isoformat(),
            }
            atomic_write_json(tmp / "manifest.json", manifest)
            old = path.with_name(f".{path.name}.old-{time.time_ns()}")
            if path.exists():
                path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None) -> ErasureState:
        """Load and verify a saved state; with ``model``, check it is the model it applies to."""
        path = Path(path)
        mpath = path / "manifest.json"
        if not mpath.exists():
            raise StateMismatchError(f"{path} is not an erasure state (no manifest.json)")
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise StateMismatchError(f"{mpath} is not valid JSON: {e}") from None
        if manifest.get("format") != "unlearnkit.ssse-state":
            raise StateMismatchError(f"{mpath} is not an unlearnkit SSSE state manifest")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StateMismatchError(
                f"state format version {manifest.get('format_version')} is not supported "
                f"(this unlearnkit reads version {FORMAT_VERSION})"
            )
        sums = manifest["checksums"]
        inv = BlockDiagonalInverse.from_state_dict(
            load_tensors(path / "inverse.safetensors", sums["inverse.safetensors"])
        )
        t = load_tensors(path / "state.safetensors", sums["state.safetensors"])
        cfg = ErasureConfig(**manifest["config"])
        lay = manifest["layout"]
        layout = _rebuild_layout(lay["names"], lay["shapes"])
        state = cls(
            config=cfg,
            layout=layout,
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
        )
        for name, tensor in (("theta_fisher", state.theta_fisher), ("rows", state.rows)):
            if tensor is not None and not bool(torch.isfinite(tensor).all()):
                raise NumericalError(f"stored {name} has NaN/Inf entries")
        if model is not None:
            state.check_model(model)
        return state


def _patched(
    patch: tuple[Tensor, Tensor] | None, ridx: Tensor, values: Tensor
) -> tuple[Tensor, Tensor]:
    """A new row patch: ``patch`` with the rows ``ridx`` set to ``values`` (inputs unchanged)."""
    if patch is None:
        return ridx.clone(), values
    pid, old = patch
    fresh = ~torch.isin(ridx, pid)
    ids = torch.cat([pid, ridx[fresh]])
    out = torch.cat([old, values[fresh.to(values.device)]])
    pos = torch.full((int(ids.max()) + 1,), -1, dtype=torch.int64)
    pos[ids] = torch.arange(ids.numel())
    out[pos[ridx].to(out.device)] = values
    return ids, out


def _rebuild_layout(names: list[str], shapes: list[list[int]]) -> ParamLayout:
    offsets, off = [], 0
    for s in shapes:
        offsets.append(off)
        n = 1
        for k in s:
            n *= int(k)
        off += n
    return ParamLayout(
        tuple(names), tuple(tuple(int(k) for k in s) for s in shapes), tuple(offsets)
    )


@dataclass(frozen=True)
class ErasureRequest:
    """A validated request: the direction Δ = F⁻¹v, evaluated for any ε without recomputing."""

    state: ErasureState
    model: nn.Module
    ids: Tensor
    theta: Tensor
    delta: Tensor
    scale: float  # 1 / (n_t − k)
    next_inverse: BlockDiagonalInverse
    next_sizes: Tensor
    next_members: Tensor
    next_erased: Tensor
    seconds: float
    next_row_patch: tuple[Tensor, Tensor] | None = None

    def theta_for(self, eps: float) -> Tensor:
        """θ_t + ε/(n_t − k)·Δ (SSSE eq. 4)."""
        if not (isinstance(eps, int | float) and eps == eps and abs(eps) != float("inf")):
            raise ConfigError(f"ε must be a finite number, got {eps!r}")
        return self.theta + (eps * self.scale) * self.delta

    def apply(self, eps: float) -> nn.Module:
        """The erased model for scale ε (a new model; the input is unchanged)."""
        return with_params(self.model, self.state.layout, self.theta_for(eps))

    def commit(self, eps: float) -> tuple[nn.Module, ErasureState]:
        """Apply ε and return the new model with the state after this request."""
        t0 = time.perf_counter()
        new_model = self.apply(eps)
        step = (eps * self.scale) * self.delta
        entry = {
            "request": len(self.state.ledger) + 1,
            "ids": self.ids.tolist(),
            "k": int(self.ids.numel()),
            "eps": float(eps),
            "n_before": self.state.n_remaining,
            "step_norm": float(step.norm()),
            "seconds": self.seconds + time.perf_counter() - t0,
            "model_before": self.state.fingerprint,
            "model_after": model_fingerprint(new_model),
            "time": datetime.now(timezone.utc).isoformat(),
        }
        new_state = replace(
            self.state,
            inverse=self.next_inverse,
            row_patch=self.next_row_patch,
            group_sizes=self.next_sizes,
            group_members=self.next_members,
            erased=self.next_erased,
            fingerprint=entry["model_after"],
            ledger=(*self.state.ledger, entry),
        )
        return new_model, new_state
