"""Two ways to compute the rows of a :class:`~unlearnkit.curvature.programs.RowProgram` for a
chunk of groups, both ``(B, r, d)``:

* **func** (any ``nn.Module``): ``vmap(jacrev(unit_values))`` over ``functional_call`` of the
  model (Opacus/curvlinops style), parameters *and buffers* passed explicitly;
* **hooks** (models whose trainable parameters all live in ``nn.Linear``): per-sample weight
  gradients as ``einsum(backprop, activation)`` (kronfluence/Opacus style).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.curvature.programs import RowProgram
from unlearnkit.errors import UnsupportedError


@dataclass
class DetachedModel:
    """Detached copies of the model's tensors on the compute device."""

    model: nn.Module
    params: dict[str, Tensor]  # trainable, the ones differentiated
    frozen: dict[str, Tensor]  # non-trainable parameters and buffers

    def call(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(self.model, (dict(params), self.frozen), (x,))


def detach_model(
    model: nn.Module, device: torch.device, dtype: torch.dtype | None
) -> DetachedModel:
    def conv(t: Tensor) -> Tensor:
        t = t.detach().to(device)
        return t.to(dtype) if dtype is not None and t.is_floating_point() else t

    params = {n: conv(p) for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: conv(p) for n, p in model.named_parameters() if not p.requires_grad}
    frozen.update({n: conv(b) for n, b in model.named_buffers()})
    return DetachedModel(model, params, frozen)


def unit_values_fn(state: DetachedModel, program: RowProgram) -> Callable[..., Tensor]:
    """``unit_values(params, xg, yg, auxg, wg) = sum_j wg[j] * values(z_j, y_j, aux_j)``."""

    def unit_values(
        params: dict[str, Tensor], xg: Tensor, yg: Tensor, auxg: Tensor, wg: Tensor
    ) -> Tensor:
        logits = state.call(params, xg)
        vals = vmap(program.values)(logits, yg, auxg)  # (g, r)
        return (wg.unsqueeze(-1).to(vals.dtype) * vals).sum(0)

    return unit_values


def func_rows(
    state: DetachedModel,
    program: RowProgram,
    layout: ParamLayout,
    xb: Tensor,
    yb: Tensor,
    auxb: Tensor,
    wb: Tensor,
    out: Tensor | None = None,
) -> Tensor:
    """(B, r, d) rows of B groups: vmap over groups of jacrev of the weighted group values."""
    jac = vmap(jacrev(unit_values_fn(state, program)), in_dims=(None, 0, 0, 0, 0))(
        state.params, xb, yb, auxb, wb
    )
    return layout.flatten(jac, batch_dims=2, out=out)


def linear_modules(model: nn.Module, layout: ParamLayout) -> dict[str, nn.Linear]:
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


def hooks_rows(
    state: DetachedModel,
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
    owners = linear_modules(state.model, layout)
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
