"""Per-sample and grouped gradients with ``torch.func``, chunked to a memory budget.

Every curvature in unlearnkit is stored as a matrix of *rows* R (m x d) such that the
curvature is ``(1/N) * R^T R`` (plus ``lambda * I``, added by the solvers). This module builds
R for any ``nn.Module``:

* A **row program** (:class:`RowProgram`) says which scalar "pseudo-losses" of one sample to
  differentiate: the empirical Fisher (SSSE paper, eq. 2) differentiates the loss at the true
  label, one row per sample; the true Fisher and the Gauss-Newton matrix (``rows.py``)
  differentiate several pseudo-losses per sample.
* The **func backend** computes ``vmap(jacrev(unit_values))`` over ``functional_call`` of the
  model (Opacus/curvlinops style), with parameters *and buffers* passed explicitly.
* The **hooks backend** (models whose trainable parameters all live in ``nn.Linear``) computes
  per-sample weight gradients as ``einsum(backprop, activation)`` (kronfluence/Opacus style).
* **Groups** (the paper's "mini-batches of 10 gradients", after WoodFisher): the row of a group
  b is the mean over its members, ``r_b = (1/|b|) sum_{i in b} r_i``. Membership comes from a
  seeded permutation and is *recorded*, which exact deletion needs (spec ssse-engine.md §4.3).
  With ``n`` samples and group size ``g`` there are ``ceil(n/g)`` groups: consecutive slices of
  the permutation, the **last group smaller** when ``g`` does not divide ``n``. ``g = 1`` keeps
  the input order (no permutation).

The model must be in eval mode (BatchNorm statistics frozen, dropout off); a model in training
mode raises :class:`~unlearnkit.errors.ConfigError` rather than being switched silently. The
caller's model is never modified: parameters and buffers are detached copies moved to
``device``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from unlearnkit.errors import (
    ConfigError,
    DataError,
    MemoryBudgetError,
    NumericalError,
    UnknownIdsError,
    UnsupportedError,
)
from unlearnkit.registry import Registry

log = logging.getLogger(__name__)

#: A per-sample loss: ``loss_fn(logits_of_one_sample, label_of_one_sample) -> scalar``.
#: It must be written with vmappable torch operations (no ``.item()``, no data-dependent
#: Python control flow).
Loss = Callable[[Tensor, Tensor], Tensor]

#: Losses for the task names of :class:`~unlearnkit.data.base.ArrayDataset`.
TASK_LOSSES: Registry[Loss] = Registry("task loss")

#: Default working-memory budget of one vmapped chunk (bytes), used when neither
#: ``chunk_size`` nor ``max_bytes`` is given.
DEFAULT_MAX_BYTES = 256 * 2**20

#: Padding value in :attr:`GradientMatrix.group_members` past a group's size.
PAD_ID = -1

Backend = Literal["func", "hooks"]


@TASK_LOSSES.register("multiclass")
def multiclass_nll(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of one sample: ``-log softmax(z)[y]`` (``y`` an int64 class index)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.long().reshape(1)).squeeze(-1)


@TASK_LOSSES.register("multilabel")
def multilabel_bce(logits: Tensor, y: Tensor) -> Tensor:
    """Sum over attributes of BCE-with-logits: ``sum_k -[y_k log s(z_k) + (1-y_k) log(1-s(z_k))]``."""
    return nn.functional.binary_cross_entropy_with_logits(
        logits, y.to(logits.dtype), reduction="sum"
    )


def resolve_loss(loss: str | Loss) -> Loss:
    """A task name ("multiclass"/"multilabel") or a per-sample loss callable -> the callable."""
    if isinstance(loss, str):
        return TASK_LOSSES.get(loss)
    if not callable(loss):
        raise ConfigError(f"loss must be a task name or a callable, got {type(loss).__name__}")
    return loss


# --------------------------------------------------------------------------------------------
# Parameter layout
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamLayout:
    """Where each trainable parameter lives in the flat vector of length ``d``.

    Order is ``model.named_parameters()`` restricted to ``requires_grad`` parameters; each
    tensor is flattened row-major (``tensor.reshape(-1)``).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]

    @classmethod
    def from_model(cls, model: nn.Module) -> ParamLayout:
        names: list[str] = []
        shapes: list[tuple[int, ...]] = []
        offsets: list[int] = []
        off = 0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            names.append(name)
            shapes.append(tuple(p.shape))
            offsets.append(off)
            off += p.numel()
        if not names:
            raise UnsupportedError("the model has no trainable parameters (requires_grad=True)")
        return cls(tuple(names), tuple(shapes), tuple(offsets))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def d(self) -> int:
        """Total number of trainable parameters."""
        return self.offsets[-1] + self.numels[-1]

    def slice_of(self, name: str) -> slice:
        """The flat index range of parameter ``name``."""
        try:
            i = self.names.index(name)
        except ValueError:
            raise ConfigError(f"no trainable parameter named {name!r}") from None
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def flatten(
        self, tensors: Mapping[str, Tensor], batch_dims: int = 0, out: Tensor | None = None
    ) -> Tensor:
        """Concatenate ``tensors[name]`` (shape ``(*batch, *shape)``) into ``(*batch, d)``.

        With ``out`` (shape ``(*batch, d)``, any dtype/device) the parts are copied into it,
        which saves one temporary the size of the result.
        """
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            t = tensors[name]
            batch = t.shape[:batch_dims]
            if tuple(t.shape[batch_dims:]) != shape:
                raise ConfigError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
            parts.append(t.reshape(*batch, -1))
        if out is None:
            return torch.cat(parts, dim=-1)
        for part, off, k in zip(parts, self.offsets, self.numels, strict=True):
            out[..., off : off + k].copy_(part)
        return out

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """Split a ``(*batch, d)`` tensor into ``{name: (*batch, *shape)}`` views."""
        if vec.shape[-1] != self.d:
            raise ConfigError(f"expected a vector of length {self.d}, got {vec.shape[-1]}")
        batch = vec.shape[:-1]
        return {
            name: vec[..., off : off + k].reshape(*batch, *shape)
            for name, shape, off, k in zip(
                self.names, self.shapes, self.offsets, self.numels, strict=True
            )
        }


# --------------------------------------------------------------------------------------------
# Result container
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientMatrix:
    """Curvature rows R (m x d) with the bookkeeping needed to delete samples exactly.

    The curvature they define is ``(1/N) R^T R`` with ``N = normalizer = n_groups`` (the number
    of samples when ``group_size == 1``; SSSE eq. 2 uses N = n). Rows are stored group-major:
    group ``b`` owns rows ``b*r .. b*r + r - 1`` where ``r = rows_per_group`` (1 for gradients,
    C for a softmax Gauss-Newton, S for a true Fisher with S label draws, ...).

    Attributes:
        G: (m, d) rows, ``m = n_groups * rows_per_group``.
        row_group: (m,) int64, the group each row belongs to (index into ``group_members``).
        row_output: (m,) int64, which of its group's ``r`` rows it is (output unit, class,
            or label draw; 0 for gradients).
        group_members: (n_groups, group_size) int64 sample ids; entries past
            ``group_sizes[b]`` are ``PAD_ID`` (only the last group can be smaller).
        group_sizes: (n_groups,) int64 number of members of each group.
        sample_ids: (n,) int64 ids of the input samples, in input order.
        layout: the flat parameter layout the columns follow.
        kind: the row program ("empirical", "true", "ggn", ...).
        group_size: the requested group size g.
        seed: the seed of the group permutation (and of label draws for the true Fisher).
    """

    G: Tensor
    row_group: Tensor
    row_output: Tensor
    group_members: Tensor
    group_sizes: Tensor
    sample_ids: Tensor
    layout: ParamLayout
    kind: str
    group_size: int
    seed: int

    @property
    def m(self) -> int:
        return int(self.G.shape[0])

    @property
    def d(self) -> int:
        return int(self.G.shape[1])

    @property
    def n_samples(self) -> int:
        return int(self.sample_ids.numel())

    @property
    def n_groups(self) -> int:
        return int(self.group_sizes.numel())

    @property
    def rows_per_group(self) -> int:
        return self.m // max(self.n_groups, 1)

    @property
    def normalizer(self) -> int:
        """N in ``(1/N) R^T R``: the number of groups (= samples when ``group_size == 1``)."""
        return self.n_groups

    @property
    def member_mask(self) -> Tensor:
        """(n_groups, group_size) bool, True where ``group_members`` holds a real sample."""
        cols = torch.arange(self.group_members.shape[1], device=self.group_sizes.device)
        return cols[None, :] < self.group_sizes[:, None]

    @property
    def row_members(self) -> Tensor:
        """(m, group_size) sample ids of the members of each row's group (``PAD_ID`` padded)."""
        return self.group_members[self.row_group]

    @property
    def row_ids(self) -> Tensor:
        """(m,) the sample id of each row; only defined when ``group_size == 1``."""
        if self.group_members.shape[1] != 1:
            raise ConfigError(
                "row_ids needs group_size == 1; with groups use row_members / group_members"
            )
        return self.group_members[self.row_group, 0]

    def groups_of(self, ids: Tensor | list[int]) -> Tensor:
        """The group index of each id in ``ids`` (in order); unknown ids raise."""
        want = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        members = self.group_members.cpu()
        mask = self.member_mask.cpu()
        flat_ids = members[mask]
        flat_group = torch.arange(self.n_groups).unsqueeze(1).expand_as(members)[mask]
        order = torch.argsort(flat_ids)
        sorted_ids = flat_ids[order]
        idx = torch.searchsorted(sorted_ids, want).clamp(max=max(sorted_ids.numel() - 1, 0))
        found = sorted_ids[idx] == want if sorted_ids.numel() else torch.zeros_like(want).bool()
        if not bool(found.all()):
            missing = want[~found][:10].tolist()
            raise UnknownIdsError(f"{int((~found).sum())} id(s) not in these rows: {missing}")
        return flat_group[order[idx]]

    def rows_of(self, ids: Tensor | list[int]) -> Tensor:
        """Sorted indices of the rows whose group contains any of ``ids``."""
        groups = torch.unique(self.groups_of(ids))
        hit = torch.isin(self.row_group.cpu(), groups)
        return torch.nonzero(hit).reshape(-1)

    def dense_curvature(self, damping: float = 0.0, normalizer: float | None = None) -> Tensor:
        """``damping * I + (1/N) G^T G`` as a dense fp64 (d, d) matrix: for small-d checks only."""
        if self.d > 20_000:
            raise MemoryBudgetError(f"dense curvature of d={self.d} needs {8 * self.d**2} bytes")
        n = float(self.normalizer if normalizer is None else normalizer)
        g = self.G.double()
        return damping * torch.eye(self.d, dtype=torch.float64, device=g.device) + g.T @ g / n


# --------------------------------------------------------------------------------------------
# Row programs
# --------------------------------------------------------------------------------------------

#: ``values(logits_one, y_one, aux_one) -> (r,)``: pseudo-losses of one sample whose gradients
#: w.r.t. the parameters are that sample's rows.
ValuesFn = Callable[[Tensor, Tensor, Tensor], Tensor]
#: ``prepare(logits, y, positions) -> aux``: per-sample constants computed without gradient
#: from a forward pass (label draws, Hessian factors); ``positions`` index the input samples.
PrepareFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class RowProgram:
    """What to differentiate for each sample: ``row_k = d values(z(theta), y, aux)_k / d theta``.

    ``prepare`` (optional) runs on detached logits before differentiation; its output is
    constant in theta, which is how Gauss-Newton factors and sampled labels stay fixed.
    """

    kind: str
    values: ValuesFn
    prepare: PrepareFn | None = None


def empirical_program(loss: str | Loss) -> RowProgram:
    """Empirical Fisher rows: the gradient of the loss at the true label (SSSE eq. 2)."""
    fn = resolve_loss(loss)

    def values(z: Tensor, y: Tensor, aux: Tensor) -> Tensor:
        return fn(z, y).reshape(1)

    return RowProgram(kind="empirical", values=values)


# --------------------------------------------------------------------------------------------
# Groups and validation
# --------------------------------------------------------------------------------------------


def make_groups(n: int, group_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Seeded group membership: ``(positions (n_groups, g) padded with -1, sizes (n_groups,))``.

    ``g = 1`` keeps the input order; otherwise a ``torch.randperm(n)`` from a generator seeded
    with ``seed`` is cut into consecutive slices of ``g``; the last group holds ``n mod g``
    samples when ``g`` does not divide ``n``.
    """
    if group_size < 1:
        raise ConfigError(f"group_size must be >= 1, got {group_size}")
    if n < 1:
        raise DataError("no samples to compute gradients of")
    if group_size == 1:
        order = torch.arange(n)
    else:
        gen = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(n, generator=gen)
    n_groups = -(-n // group_size)
    padded = torch.full((n_groups * group_size,), -1, dtype=torch.int64)
    padded[:n] = order
    sizes = torch.full((n_groups,), group_size, dtype=torch.int64)
    sizes[-1] = n - (n_groups - 1) * group_size
    return padded.reshape(n_groups, group_size), sizes


def check_eval_mode(model: nn.Module) -> None:
    """Raise ConfigError if any submodule is in training mode (BatchNorm/dropout not frozen)."""
    training = [name or "<root>" for name, mod in model.named_modules() if mod.training]
    if training:
        raise ConfigError(
            "per-sample gradients need the model in eval mode (BatchNorm statistics frozen, "
            f"dropout off); call model.eval() first. Modules in training mode: {training[:5]}"
        )


def _check_inputs(x: Tensor, y: Tensor, ids: Tensor | None) -> Tensor:
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise DataError(f"x and y disagree in length ({n} vs {y.shape[0]})")
    if ids is None:
        return torch.arange(n, dtype=torch.int64)
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1).cpu()
    if ids.numel() != n:
        raise DataError(f"ids has {ids.numel()} entries for {n} samples")
    if torch.unique(ids).numel() != n:
        raise DataError("sample ids are not unique")
    return ids


# --------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------


@dataclass
class _State:
    """Detached copies of the model's tensors on the compute device."""

    model: nn.Module
    params: dict[str, Tensor]  # trainable, the ones differentiated
    frozen: dict[str, Tensor]  # non-trainable parameters and buffers

    def call(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.model, (dict(params), self.frozen), (x,))


def _make_state(model: nn.Module, device: torch.device, dtype: torch.dtype | None) -> _State:
    def conv(t: Tensor) -> Tensor:
        t = t.detach().to(device)
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    params = {n: conv(p) for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: conv(p) for n, p in model.named_parameters() if not p.requires_grad}
    frozen.update({n: conv(b) for n, b in model.named_buffers()})
    return _State(model, params, frozen)


def _unit_values_fn(state: _State, program: RowProgram) -> Callable[..., Tensor]:
    """``unit_values(params, xg, yg, auxg, wg) = sum_j wg[j] * values(z_j, y_j, aux_j)``."""

    def unit_values(
        params: dict[str, Tensor], xg: Tensor, yg: Tensor, auxg: Tensor, wg: Tensor
    ) -> Tensor:
        logits = state.call(params, xg)
        vals = vmap(program.values)(logits, yg, auxg)  # (g, r)
        return (wg.unsqueeze(-1).to(vals.dtype) * vals).sum(0)

    return unit_values


def _func_rows(
    state: _State,
    program: RowProgram,
    layout: ParamLayout,
    xb: Tensor,
    yb: Tensor,
    auxb: Tensor,
    wb: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """(B, r, d) rows of B groups: vmap over groups of jacrev of the weighted group values."""
    jac = vmap(jacrev(_unit_values_fn(state, program)), in_dims=(None, 0, 0, 0, 0))(
        state.params, xb, yb, auxb, wb
    )
    return layout.flatten(jac, batch_dims=2, out=out)


def _linear_modules(model: nn.Module, layout: ParamLayout) -> dict[str, nn.Linear]:
    """The nn.Linear modules owning every trainable parameter, or UnsupportedError."""
    owners: dict[str, nn.Linear] = {}
    names = set(layout.names)
    for mname, mod in model.named_modules():
        own = [f"{mname}.{p}" if mname else p for p, _ in mod.named_parameters(recurse=False)]
        mine = [n for n in own if n in names]
        if not mine:
            continue
        if not isinstance(mod, nn.Linear):
            raise UnsupportedError(
                f"backend='hooks' handles nn.Linear only; {mname!r} is {type(mod).__name__}. "
                "Use backend='func'."
            )
        owners[mname] = mod
    return owners


def _hooks_rows(
    state: _State,
    program: RowProgram,
    layout: ParamLayout,
    xs: Tensor,
    ys: Tensor,
    auxs: Tensor,
    wb: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """(B, r, d) group rows via saved activations A and backprops B of each nn.Linear.

    ``xs`` holds the B*g members group-major and ``wb`` (B, g) their weights. Backpropagating
    ``sum_i w_i values_k(i)`` gives each member's backprop already weighted, so the group's
    weight gradient is ``einsum('bg...o,bg...i->boi', B, A)`` (``...``: positions a Linear is
    applied to) and its bias gradient is B summed over members and positions.
    """
    owners = _linear_modules(state.model, layout)
    saved: dict[str, list[tuple[Tensor, Tensor]]] = {m: [] for m in owners}
    handles = []
    for mname, mod in owners.items():

        def hook(_mod: nn.Module, inp: tuple[Tensor, ...], out: Tensor, _name: str = mname) -> None:
            saved[_name].append((inp[0].detach(), out))

        handles.append(mod.register_forward_hook(hook))
    params = {k: v.detach().requires_grad_(True) for k, v in state.params.items()}
    try:
        with torch.enable_grad():
            logits = state.call(params, xs)
            vals = vmap(program.values)(logits, ys, auxs)  # (B*g, r)
            vals = vals * wb.reshape(-1, 1).to(vals.dtype)
    finally:
        for h in handles:
            h.remove()
    keys = [(m, j) for m in owners for j in range(len(saved[m]))]
    outs = [saved[m][j][1] for m, j in keys]
    bsz, g = wb.shape
    r = int(vals.shape[1])
    rows = []
    for k in range(r):
        gouts = torch.autograd.grad(vals[:, k].sum(), outs, retain_graph=k < r - 1)
        grads: dict[str, Tensor] = {}
        for (mname, j), gout in zip(keys, gouts, strict=True):
            act = saved[mname][j][0]
            prefix = f"{mname}." if mname else ""
            bo = gout.reshape(bsz, -1, gout.shape[-1])  # (B, g*positions, out)
            ai = act.reshape(bsz, -1, act.shape[-1])  # (B, g*positions, in)
            for pname, grad_fn in (
                ("weight", lambda bo=bo, ai=ai: torch.bmm(bo.transpose(1, 2), ai)),
                ("bias", lambda bo=bo: bo.sum(1)),
            ):
                full = prefix + pname
                if full in layout.names:
                    gp = grad_fn()
                    grads[full] = grads[full] + gp if full in grads else gp
        rows.append(layout.flatten(grads, batch_dims=1, out=None if out is None else out[:, k]))
    if out is not None:
        return out
    return rows[0].unsqueeze(1) if r == 1 else torch.stack(rows, dim=1)


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def _chunk_units(
    chunk_size: int | None,
    max_bytes: int | None,
    *,
    d: int,
    r: int,
    g: int,
    x_numel: int,
    itemsize: int,
) -> int:
    """Groups per vmapped call. The estimate (documented, rough): 3 copies of each group's
    (r x d) Jacobian plus 32 activations the size of each member's input."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
        return int(chunk_size)
    budget = DEFAULT_MAX_BYTES if max_bytes is None else int(max_bytes)
    per_unit = itemsize * (3 * r * d + 32 * g * x_numel)
    if per_unit > budget:
        raise MemoryBudgetError(
            f"one group needs about {per_unit} bytes of working memory, over max_bytes={budget}"
        )
    return max(1, budget // per_unit)


def collect_rows(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    program: RowProgram,
    *,
    ids: Tensor | None = None,
    group_size: int = 1,
    seed: int = 0,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """Rows of ``program`` for every sample (or group of samples) of ``(x, y)``.

    Args:
        model: any ``nn.Module`` in eval mode; not modified.
        x, y: inputs (n, ...) and labels (n, ...), as the model and loss expect.
        program: what to differentiate (see :func:`empirical_program`, ``rows.py``).
        ids: (n,) unique int64 sample ids (default ``arange(n)``).
        group_size: g; each row is the mean over a group's members (see module docstring).
        seed: seed of the group permutation.
        chunk_size: groups per vmapped call; overrides ``max_bytes``.
        max_bytes: working-memory budget of one chunk (rough estimate; default 256 MiB).
        device: where to compute (default: the device of the model's first parameter).
        storage_device: where G is kept (default: ``device``).
        compute_dtype: cast floating parameters, buffers and inputs (e.g. float64 for checks).
        out_dtype: dtype of G (float32 by default).
        backend: "func" (any module) or "hooks" (nn.Linear-only models).

    Raises:
        ConfigError: model in training mode, bad sizes or backend.
        NumericalError: NaN/Inf rows; the message names the sample ids involved.
    """
    check_eval_mode(model)
    ids = _check_inputs(x, y, ids)
    layout = ParamLayout.from_model(model)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    store = torch.device(storage_device) if storage_device is not None else dev
    state = _make_state(model, dev, compute_dtype)
    if backend not in ("func", "hooks"):
        raise ConfigError(f"unknown backend {backend!r}; known: func, hooks")
    if backend == "hooks":
        _linear_modules(model, layout)  # fail early

    n = int(x.shape[0])
    members_pos, sizes = make_groups(n, group_size, seed)
    n_groups, g = members_pos.shape
    fill = torch.where(members_pos >= 0, members_pos, members_pos[:, :1])  # pad: first member
    weights = (members_pos >= 0).to(torch.float64) / sizes[:, None].to(torch.float64)
    x_dtype = compute_dtype if compute_dtype is not None and x.is_floating_point() else x.dtype
    itemsize = torch.empty((), dtype=compute_dtype or torch.float32).element_size()
    x_numel = max(1, math.prod(x.shape[1:]))

    G: Tensor | None = None
    r = 0
    chunk = 0
    start = 0
    while start < n_groups:
        if G is None:
            chunk = 1  # first call finds r
        stop = min(n_groups, start + chunk)
        pos = fill[start:stop]  # (B, g)
        bsz = stop - start
        flat = pos.reshape(-1)
        xs = x[flat].to(dev, x_dtype)
        ys = y[flat].to(dev)
        if program.prepare is not None:
            with torch.no_grad():
                logits = state.call(state.params, xs)
                auxs = program.prepare(logits, ys, flat.to(dev))
        else:
            auxs = torch.zeros(flat.numel(), device=dev)
        wb = weights[start:stop].to(dev, compute_dtype or torch.float32)
        out = None if G is None else G[start * r : stop * r].view(bsz, r, layout.d)
        if backend == "func":
            rows = _func_rows(
                state,
                program,
                layout,
                xs.reshape(bsz, g, *xs.shape[1:]),
                ys.reshape(bsz, g, *ys.shape[1:]),
                auxs.reshape(bsz, g, *auxs.shape[1:]),
                wb,
                out,
            )
        else:
            rows = _hooks_rows(state, program, layout, xs, ys, auxs, wb, out)
        # one pass, no (B, r, d) mask: a sum is non-finite iff a term is (barring overflow)
        bad = ~torch.isfinite(rows.sum(dim=-1)).all(dim=-1)
        if bool(bad.any()):
            groups = start + torch.nonzero(bad.cpu()).reshape(-1)
            offending = ids[members_pos[groups][members_pos[groups] >= 0]]
            raise NumericalError(
                f"NaN/Inf {program.kind} gradients for sample id(s) {offending[:20].tolist()}"
                " (check their inputs and labels, and the model's parameters)"
            )
        if G is None:
            r = int(rows.shape[1])
            need = n_groups * r * layout.d * torch.empty((), dtype=out_dtype).element_size()
            log.info("allocating %d x %d rows (%.1f MiB)", n_groups * r, layout.d, need / 2**20)
            G = torch.empty(n_groups * r, layout.d, dtype=out_dtype, device=store)
            chunk = _chunk_units(
                chunk_size, max_bytes, d=layout.d, r=r, g=g, x_numel=x_numel, itemsize=itemsize
            )
            G[start * r : stop * r] = rows.reshape(bsz * r, layout.d)
        start = stop

    assert G is not None
    group_members = torch.where(members_pos >= 0, ids[fill], torch.full_like(fill, PAD_ID))
    return GradientMatrix(
        G=G,
        row_group=torch.arange(n_groups).repeat_interleave(r),
        row_output=torch.arange(r).repeat(n_groups),
        group_members=group_members,
        group_sizes=sizes,
        sample_ids=ids,
        layout=layout,
        kind=program.kind,
        group_size=group_size,
        seed=seed,
    )


def per_sample_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str | Loss,
    *,
    ids: Tensor | None = None,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """(n, d) per-sample gradients ``grad_theta loss(f(x_i; theta), y_i)``, row i = sample i.

    ``loss`` is "multiclass" (cross-entropy), "multilabel" (sum of BCE-with-logits over
    attributes) or a per-sample callable ``loss(logits_one, y_one) -> scalar``.
    """
    return collect_rows(
        model,
        x,
        y,
        empirical_program(loss),
        ids=ids,
        group_size=1,
        chunk_size=chunk_size,
        max_bytes=max_bytes,
        device=device,
        storage_device=storage_device,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )


def grouped_gradients(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    loss: str | Loss,
    *,
    group_size: int,
    seed: int = 0,
    ids: Tensor | None = None,
    chunk_size: int | None = None,
    max_bytes: int | None = None,
    device: str | torch.device | None = None,
    storage_device: str | torch.device | None = None,
    compute_dtype: torch.dtype | None = None,
    out_dtype: torch.dtype = torch.float32,
    backend: Backend = "func",
) -> GradientMatrix:
    """(ceil(n/g), d) group-mean gradients ``(1/|b|) sum_{i in b} grad loss_i`` (WoodFisher's
    mini-batch gradients, SSSE §4), membership recorded in ``group_members``."""
    return collect_rows(
        model,
        x,
        y,
        empirical_program(loss),
        ids=ids,
        group_size=group_size,
        seed=seed,
        chunk_size=chunk_size,
        max_bytes=max_bytes,
        device=device,
        storage_device=storage_device,
        compute_dtype=compute_dtype,
        out_dtype=out_dtype,
        backend=backend,
    )
