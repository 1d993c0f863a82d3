"""The Kronecker-factored curvature of a whole model and the SSSE direction it gives.

:class:`KroneckerCurvature` is block diagonal: one ``d_in·d_out`` block per factored layer
(K-FAC ``A ⊗ G``, or EK-FAC ``U diag(s) Uᵀ`` when corrected scales are given; formulas in
:mod:`.ekfac`) and one diagonal block per other parameter (``D``, :mod:`.factors`). It acts on
*model-shaped* vectors: ``{parameter name: tensor of the parameter's shape}`` covering every
trainable parameter.

The SSSE direction for a forget set S (Peste, Alistarh & Lampert 2021, eq. 4; docs/ssse.md)::

    v = Σ_{i∈S} ∇ℓ_i(θ),        Δ = (F + λI)⁻¹ v,        θ' = θ + ε/(n − k) · Δ

with F the Kronecker curvature of the retained data (:mod:`.downdate`) or of D, and λ the
damping, added once. :func:`ssse_direction` returns ``(v, Δ)``; the step size is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearnkit.curvature.gradients import check_eval_mode
from unlearnkit.curvature.kfac.capture import LayerSpec
from unlearnkit.curvature.kfac.ekfac import (
    LayerEigen,
    eigenbases,
    ekfac_matvec,
    ekfac_solve,
    kfac_matvec,
    kfac_solve,
)
from unlearnkit.curvature.kfac.factors import KFACFactors
from unlearnkit.errors import ConfigError, DataError, NumericalError
from unlearnkit.tasks import Task, get_task


def layer_matrix(spec: LayerSpec, grads: Mapping[str, Tensor]) -> Tensor:
    """``W̃ = [W | b]`` (d_out × d_in) from a model-shaped dict."""
    w = grads[spec.weight].reshape(spec.d_out, -1)
    if spec.bias is None:
        return w
    return torch.cat([w, grads[spec.bias].reshape(spec.d_out, 1)], dim=1)


def split_layer(spec: LayerSpec, V: Tensor, shapes: Mapping[str, torch.Size]) -> dict[str, Tensor]:
    """Inverse of :func:`layer_matrix`."""
    out = {spec.weight: V[:, : V.shape[1] - (spec.bias is not None)].reshape(shapes[spec.weight])}
    if spec.bias is not None:
        out[spec.bias] = V[:, -1].reshape(shapes[spec.bias])
    return out


@dataclass(frozen=True)
class KroneckerCurvature:
    """K-FAC (``scales is None``) or EK-FAC curvature of a model, block diagonal.

    ``bases`` are the eigenbases the solves use; for EK-FAC they are the bases ``scales`` are
    expressed in (after a downdate: those of the full data, see :mod:`.downdate`).
    """

    factors: KFACFactors
    bases: dict[str, LayerEigen]
    scales: dict[str, Tensor] | None = None

    @classmethod
    def build(
        cls,
        factors: KFACFactors,
        scales: dict[str, Tensor] | None = None,
        bases: dict[str, LayerEigen] | None = None,
    ) -> KroneckerCurvature:
        """Eigendecompose the factors (unless ``bases`` are given, as EK-FAC scales need the
        bases they were computed in)."""
        if scales is not None and bases is None:
            raise ConfigError("EK-FAC scales need the eigenbases they were computed in")
        return cls(factors, eigenbases(factors) if bases is None else bases, scales)

    @property
    def variant(self) -> str:
        return "kfac" if self.scales is None else "ekfac"

    @property
    def param_names(self) -> tuple[str, ...]:
        names = [n for f in self.factors.layers.values() for n in f.spec.params]
        return (*names, *self.factors.diag)

    def blocks(self) -> list[dict[str, object]]:
        """One JSON-able entry per block (for a state's manifest or ledger): the block, its
        structure (``kfac`` / ``ekfac`` per factored layer, ``diagonal`` otherwise), the label
        mode, its parameters and the factor sizes."""
        out: list[dict[str, object]] = []
        for k, f in self.factors.layers.items():
            out.append(
                {
                    "block": k,
                    "structure": self.variant,
                    "layer": f.spec.kind,
                    "curvature": self.factors.mode,
                    "params": list(f.spec.params),
                    "A": f.spec.d_in,
                    "G": f.spec.d_out,
                }
            )
        for k, d in self.factors.diag.items():
            out.append(
                {
                    "block": k,
                    "structure": "diagonal",
                    "curvature": self.factors.mode,
                    "params": [k],
                    "size": d.numel(),
                }
            )
        return out

    def _check(self, grads: Mapping[str, Tensor]) -> None:
        want, got = set(self.param_names), set(grads)
        if want != got:
            raise ConfigError(
                f"model-shaped vector does not match the curvature: missing "
                f"{sorted(want - got)[:5]}, unexpected {sorted(got - want)[:5]}"
            )

    def _apply(self, grads: Mapping[str, Tensor], damping: float | None) -> dict[str, Tensor]:
        self._check(grads)
        shapes = {k: v.shape for k, v in grads.items()}
        out: dict[str, Tensor] = {}
        for k, f in self.factors.layers.items():
            dtype = f.A.dtype
            V = layer_matrix(f.spec, grads).to(dtype)
            eig = self.bases[k]
            if self.scales is None:
                R = kfac_matvec(V, f.A, f.G) if damping is None else kfac_solve(V, eig, damping)
            elif damping is None:
                R = ekfac_matvec(V, eig, self.scales[k])
            else:
                R = ekfac_solve(V, eig, self.scales[k], damping)
            out.update(split_layer(f.spec, R, shapes))
        for k, d in self.factors.diag.items():
            v = grads[k].to(d.dtype)
            if damping is None:
                out[k] = d * v
            else:
                if not bool((d + damping > 0).all()):
                    raise NumericalError(f"diagonal block {k!r} is singular; use damping > 0")
                out[k] = v / (d + damping)
        return out

    def matvec(self, grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``F v`` for a model-shaped ``v`` (results in the factors' dtype)."""
        return self._apply(grads, None)

    def solve(self, grads: Mapping[str, Tensor], damping: float) -> dict[str, Tensor]:
        """``(F + λI)⁻¹ v`` for a model-shaped ``v`` (results in the factors' dtype)."""
        if not damping >= 0:
            raise ConfigError(f"damping must be >= 0, got {damping}")
        return self._apply(grads, float(damping))

    def dense(self) -> Tensor:
        """The full ``d × d`` matrix in ``param_names`` order, each parameter flattened
        row-major (small models and tests only)."""
        blocks = [torch.kron(f.G, f.A) for f in self.factors.layers.values()]
        if self.scales is not None:
            blocks = []
            for k in self.factors.layers:
                e = self.bases[k]
                U = torch.kron(e.UG, e.UA)
                blocks.append(U @ torch.diag(self.scales[k].reshape(-1)) @ U.T)
        mats = [torch.block_diag(*blocks)] if blocks else []
        mats += [torch.diag(d.reshape(-1)) for d in self.factors.diag.values()]
        return torch.block_diag(*mats)


def flatten_like(curv: KroneckerCurvature, grads: Mapping[str, Tensor]) -> Tensor:
    """A model-shaped vector flattened in the order of :meth:`KroneckerCurvature.dense`
    (weight columns then bias, per layer, as in ``W̃``)."""
    parts = [layer_matrix(f.spec, grads).reshape(-1) for f in curv.factors.layers.values()]
    parts += [grads[k].reshape(-1) for k in curv.factors.diag]
    return torch.cat(parts)


def summed_gradient(
    model: nn.Module, x: Tensor, y: Tensor, task: str | Task, *, batch_size: int = 256
) -> dict[str, Tensor]:
    """``v = Σ_i ∇_θ ℓ(f(x_i; θ), y_i)`` over the given samples, per trainable parameter."""
    check_eval_mode(model)
    n = int(x.shape[0])
    if n < 1 or int(y.shape[0]) != n:
        raise DataError(f"need matching, non-empty x and y (got {n} and {int(y.shape[0])})")
    t = get_task(task)
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    total = [torch.zeros_like(p) for _, p in named]
    dev = next(model.parameters()).device
    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        with torch.enable_grad():
            loss = t.per_sample_loss(model(x[sl].to(dev)), y[sl].to(dev)).sum()
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc.add_(g)
    return {k: g for (k, _), g in zip(named, total, strict=True)}


def ssse_direction(
    model: nn.Module,
    curvature: KroneckerCurvature,
    x_forget: Tensor,
    y_forget: Tensor,
    task: str | Task,
    damping: float,
    *,
    batch_size: int = 256,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """``(v, Δ)`` with ``v = Σ_{i∈S} ∇ℓ_i`` and ``Δ = (F + λI)⁻¹ v`` (model-shaped)."""
    v = summed_gradient(model, x_forget, y_forget, task, batch_size=batch_size)
    delta = curvature.solve(v, damping)
    if not all(bool(torch.isfinite(t).all()) for t in delta.values()):
        raise NumericalError("the SSSE direction (F + λI)⁻¹v has NaN/Inf entries")
    return v, delta
