"""IU: influence unlearning with a WoodFisher inverse (Koh & Liang 2017; Izzo et al. 2021; as used
by Jia et al., NeurIPS 2023 and SalUn; Deep Unlearn, arXiv 2410.01276). One Newton-type step, eval mode,
over all trainable parameters.

1. n_f = |D_f|, n_r = |D_r|, n = n_f + n_r; gradient sums G_f = Σ_{i∈F} ∇ℓ_i, G_r = Σ_{i∈R} ∇ℓ_i.
2. Direction v = G_f/n − G_r·n_f/(n·n_r) = (n_f/n)·(mean_F ∇ℓ − mean_R ∇ℓ).
3. k ≈ H⁻¹v with H the WoodFisher (dampened empirical Fisher) of retain samples.
4. θ ← θ + α·k.

**Corrected (default, ``faithful=False``).** H = λ·I + (1/m)·Σ_{t=1}^{m} g_t g_tᵀ over the
single-sample gradients g_t of m = min(``num_samples``, n_r) retain samples drawn at random
(without replacement, from the run's generator), λ = ``damping``. This is the matrix whose
inverse WoodFisher (Singh & Alistarh, NeurIPS 2020) builds by Sherman–Morrison updates; here
k = H⁻¹v is solved by conjugate gradients with exact matrix-free products
H·x = λx + (1/m)·G(Gᵀx) (Gᵀx by a double backward pass, G·u by one backward pass of
Σ_t u_t ℓ_t; :func:`fisher_matvec`), so no P×m gradient matrix is stored.

**Faithful (``faithful=True``).** The released recursion, which is *not* an exact inverse (k only
moves along g_1): with damping N = 1000 and the single-sample gradients g_1..g_1002 of the
first 1002 retain samples in dataset order, k = v, o = g_1, then for t = 2..1002:
τ = o·g_t; k ← k − (k·g_t)/(N + τ)·o; o ← o − τ/(N + τ)·o.

``batch_size`` only chunks the computation; Deep Unlearn also searches it and an unused
``num_epochs``, so the search space here is α alone.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import make_loader, model_device
from unlearnkit.methods.toolkit.loops import trainable_params
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, u01_dist

FAITHFUL_DAMPING = 1000.0
FAITHFUL_SAMPLES = 1002


class IUConfig(MethodConfig):
    """Defaults: batch 256, α 0.2; corrected mode: 1000 samples, λ 1, CG tol 1e-5, 200 iters."""

    batch_size: int = Field(256, ge=1)
    alpha: float = Field(0.2, ge=0)
    num_samples: int = Field(1000, ge=1)
    damping: float = Field(1.0, gt=0)
    cg_tol: float = Field(1e-5, gt=0)
    cg_max_iter: int = Field(200, ge=1)
    faithful: bool = False


def flat_grad_sum(model: nn.Module, ds: ArrayDataset, batch_size: int) -> torch.Tensor:
    """Σ_i ∇ℓ_i over ``ds`` as one flat vector (current mode; batches of ``batch_size``)."""
    params = trainable_params(model)
    device = model_device(model)
    total = torch.zeros(sum(p.numel() for p in params), device=device, dtype=params[0].dtype)
    for x, y in make_loader(ds, batch_size, shuffle=False):
        loss = F.cross_entropy(model(x.to(device)), y.to(device), reduction="sum")
        total += _flat(torch.autograd.grad(loss, params, allow_unused=True), params)
    return total


def _flat(grads: tuple, params: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).flatten()
            for g, p in zip(grads, params, strict=True)
        ]
    )


def influence_direction(model: nn.Module, data: UnlearnData, batch_size: int) -> torch.Tensor:
    """v = G_f/n − G_r·n_f/(n·n_r) (step 2)."""
    n_f, n_r = len(data.forget), len(data.retain)
    n = n_f + n_r
    g_f = flat_grad_sum(model, data.forget, batch_size)
    g_r = flat_grad_sum(model, data.retain, batch_size)
    return g_f / n - g_r * (n_f / (n * n_r))


def sample_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Iterator[torch.Tensor]:
    """Single-sample loss gradients, flat, one backward pass per sample, in order (lazily, so
    only one P-vector lives at a time)."""
    params = trainable_params(model)
    device = model_device(model)
    for i in range(x.shape[0]):
        loss = F.cross_entropy(model(x[i : i + 1].to(device)), y[i : i + 1].to(device))
        yield _flat(torch.autograd.grad(loss, params, allow_unused=True), params)


def released_woodfisher(
    v: torch.Tensor, grads: Iterable[torch.Tensor], damping: float
) -> torch.Tensor:
    """The released recursion (faithful mode); see the module docstring."""
    k = v.clone()
    o: torch.Tensor | None = None
    for g in grads:
        if o is None:
            o = g.clone()
            continue
        tau = torch.dot(o, g)
        k = k - (torch.dot(k, g) / (damping + tau)) * o
        o = o - (tau / (damping + tau)) * o
    return k


def fisher_matvec(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, damping: float, chunk: int
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x ↦ λx + (1/m)·Σ_t g_t (g_tᵀx) over the m samples (x, y), matrix-free.

    Per chunk of samples with losses ℓ: w(u) = Jᵀu = ∇_θ(u·ℓ) built with a graph, then
    Jx = ∂(w(u)·x)/∂u (double backward, no forward-mode AD), then Jᵀ(Jx)/m by one more backward.
    """
    params = trainable_params(model)
    sizes = [p.numel() for p in params]
    device = model_device(model)
    m = x.shape[0]

    def matvec(vec: torch.Tensor) -> torch.Tensor:
        tangents = [t.view_as(p) for t, p in zip(vec.split(sizes), params, strict=True)]
        out = damping * vec
        for start in range(0, m, chunk):
            xc, yc = x[start : start + chunk].to(device), y[start : start + chunk].to(device)
            losses = F.cross_entropy(model(xc), yc, reduction="none")
            u = torch.zeros_like(losses, requires_grad=True)
            w = torch.autograd.grad(losses, params, u, create_graph=True, allow_unused=True)
            dot = sum((wi * ti).sum() for wi, ti in zip(w, tangents, strict=True) if wi is not None)
            (jx,) = torch.autograd.grad(dot, u)  # g_tᵀ·vec per sample
            g_u = torch.autograd.grad(losses, params, jx.detach() / m, allow_unused=True)
            out = out + _flat(g_u, params)
        return out

    return matvec


def conjugate_gradient(
    matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, tol: float, max_iter: int
) -> tuple[torch.Tensor, int, float]:
    """Solve A x = b for SPD A by CG; returns x, iterations and the final relative residual.

    IU runs it on float64 vectors (the products themselves are computed in the model's dtype).
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = torch.dot(r, r)
    b_norm = math.sqrt(float(rs)) or 1.0
    it = 0
    while it < max_iter and math.sqrt(float(rs)) > tol * b_norm:
        ap = matvec(p)
        a = rs / torch.dot(p, ap)
        x = x + a * p
        r = r - a * ap
        rs_new = torch.dot(r, r)
        p = r + (rs_new / rs) * p
        rs = rs_new
        it += 1
    return x, it, math.sqrt(float(rs)) / b_norm


@METHODS.register("iu")
class InfluenceUnlearning(MulticlassUnlearner):
    """One step θ ← θ + α·H⁻¹v along the influence of the forget set."""

    name = "Influence Unlearning"
    abbreviation = "IU"
    family = "literature"
    paper = "Koh & Liang 2017; Izzo et al. 2021; WoodFisher variant of Jia et al., NeurIPS 2023"
    uses = ("retain", "forget")
    Config = IUConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """alpha: U01."""
        return {"alpha": u01_dist()}

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = IUConfig.model_validate(config.model_dump())
        model.eval()
        v = influence_direction(model, data, cfg.batch_size)
        retain = data.retain
        if cfg.faithful:
            m = min(FAITHFUL_SAMPLES, len(retain))
            grads = sample_gradients(model, retain.x[:m], retain.y[:m])
            k = released_woodfisher(v, grads, FAITHFUL_DAMPING)
        else:
            m = min(cfg.num_samples, len(retain))
            pick = torch.randperm(len(retain), generator=generator)[:m]
            matvec = fisher_matvec(
                model, retain.x[pick], retain.y[pick], cfg.damping, cfg.batch_size
            )
            k, iters, rel = conjugate_gradient(
                lambda u: matvec(u.to(v.dtype)).double(), v.double(), cfg.cg_tol, cfg.cg_max_iter
            )
            k = k.to(v.dtype)
            if rel > cfg.cg_tol:
                warnings.warn(
                    f"IU: conjugate gradients stopped after {iters} iterations at relative "
                    f"residual {rel:.2e} > cg_tol {cfg.cg_tol:.0e}; raise cg_max_iter or damping",
                    RuntimeWarning,
                    stacklevel=2,
                )
        params = trainable_params(model)
        with torch.no_grad():
            vector_to_parameters(parameters_to_vector(params) + cfg.alpha * k, params)
        return model
