"""Brute-force K-FAC references for the tests: one sample at a time, activations and
pre-activation gradients captured by hand, convolution patches cut out by explicit loops.

Only ``nn.Sequential`` models of Linear / Conv2d / elementwise / Flatten / LayerNorm modules,
multiclass (softmax cross-entropy) outputs. Nothing here calls the hooks or the unfolding
of :mod:`unlearnkit.curvature.kfac`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unlearnkit.curvature.kfac.capture import label_uniforms
from unlearnkit.tasks import get_task

FACTORED = (nn.Linear, nn.Conv2d)


def patches(conv: nn.Conv2d, h: Tensor) -> Tensor:
    """``(P, C·kh·kw)`` input patches of ONE image ``h (C, H, W)``, row-major over outputs."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
    )
    hp = F.pad(h, (pw, pw, ph, ph))
    out_h = (hp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    out_w = (hp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    rows = []
    for i in range(out_h):
        for j in range(out_w):
            win = hp[
                :,
                i * sh : i * sh + dh * (kh - 1) + 1 : dh,
                j * sw : j * sw + dw * (kw - 1) + 1 : dw,
            ]
            rows.append(win.reshape(-1))
    return torch.stack(rows)


def forward_capture(model: nn.Sequential, x1: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Logits ``(C,)`` of one sample, the augmented inputs ``(P, d_in)`` and the
    pre-activations ``(P, d_out)`` (in the graph) of every factored layer."""
    h = x1.unsqueeze(0)
    ins, pres = [], []
    for mod in model:
        if isinstance(mod, nn.Conv2d):
            a = patches(mod, h[0].detach())
            s = mod(h)
            pres.append(s)
        elif isinstance(mod, nn.Linear):
            a = h[0].detach().reshape(1, -1)
            s = mod(h)
            pres.append(s)
        else:
            h = mod(h.clone())  # keep the pre-activation intact under in-place modules
            continue
        if mod.bias is not None:
            a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
        ins.append(a)
        h = s
    return h[0], ins, pres


def as_positions(mod: nn.Module, g: Tensor) -> Tensor:
    """Pre-activation gradient of one sample as ``(P, d_out)``."""
    if isinstance(mod, nn.Conv2d):
        return g[0].reshape(g.shape[1], -1).T
    return g.reshape(1, -1)


def layer_names(model: nn.Sequential) -> list[str]:
    return [str(i) for i, m in enumerate(model) if isinstance(m, FACTORED)]


def log_hessian(z: Tensor) -> Tensor:
    """``diag(p) − p pᵀ``: the Hessian of softmax cross-entropy in the logits."""
    p = torch.softmax(z.detach(), dim=0)
    return torch.diag(p) - torch.outer(p, p)


def sampled_labels(x: Tensor, model: nn.Module, ids: Tensor, seed: int, samples: int) -> Tensor:
    """The documented draws: uniforms keyed by ``(seed, id)``, inverse-CDF sampling."""
    task = get_task("multiclass")
    with torch.no_grad():
        z = model(x)
    u = label_uniforms(task, seed, ids, samples, int(z.shape[1]))
    return task.sample_labels(z, u)


def brute_factors(
    model: nn.Sequential,
    x: Tensor,
    y: Tensor,
    mode: str,
    *,
    ids: Tensor | None = None,
    seed: int = 0,
    samples: int = 1,
) -> dict[str, object]:
    """``{layer: (A_sum, G_sum, positions)}``, ``diag`` sums and ``count`` by loops."""
    n = x.shape[0]
    ids = torch.arange(n) if ids is None else ids
    names = layer_names(model)
    mods = [m for m in model if isinstance(m, FACTORED)]
    A = {k: 0.0 for k in names}
    G = {k: 0.0 for k in names}
    P = {k: 0 for k in names}
    diag_params = {
        f"{i}.{pn}": p
        for i, m in enumerate(model)
        if not isinstance(m, FACTORED)
        for pn, p in m.named_parameters()
    }
    D = {k: torch.zeros_like(p) for k, p in diag_params.items()}
    labels = sampled_labels(x, model, ids, seed, samples) if mode == "true" else None
    for i in range(n):
        z, ins, pres = forward_capture(model, x[i])
        for k, a in zip(names, ins, strict=True):
            A[k] = A[k] + a.T @ a
            P[k] += a.shape[0]
        if mode == "ggn":
            lam = log_hessian(z)
            jac = [
                torch.autograd.grad(z[c], pres + list(diag_params.values()), retain_graph=True)
                for c in range(z.numel())
            ]
            for li, (k, mod) in enumerate(zip(names, mods, strict=True)):
                J = torch.stack([as_positions(mod, jc[li]) for jc in jac])  # (C, P, d_out)
                G[k] = G[k] + torch.einsum("cpo,cd,dpq->oq", J, lam, J)
            for pi, k in enumerate(diag_params):
                J = torch.stack([jc[len(pres) + pi].reshape(-1) for jc in jac])  # (C, d)
                D[k] += torch.einsum("ck,cd,dk->k", J, lam, J).reshape(D[k].shape)
            continue
        if mode == "empirical":
            vals = [F.cross_entropy(z, y[i])]
        else:
            vals = [F.cross_entropy(z, labels[i, s]) / math.sqrt(samples) for s in range(samples)]
        for v in vals:
            grads = torch.autograd.grad(v, pres + list(diag_params.values()), retain_graph=True)
            for k, mod, g in zip(names, mods, grads, strict=False):
                gp = as_positions(mod, g)
                G[k] = G[k] + gp.T @ gp
            for k, g in zip(diag_params, grads[len(pres) :], strict=True):
                D[k] += g.square()
    return {"layers": {k: (A[k], G[k], P[k]) for k in names}, "diag": D, "count": n}


def per_sample_layer_gradients(model: nn.Sequential, x1: Tensor, y1: Tensor) -> dict[str, Tensor]:
    """``W̃``-shaped gradient ``[∇W | ∇b]`` of ``ℓ(x1, y1)`` per factored layer (autograd on the
    parameters themselves, no capture)."""
    loss = F.cross_entropy(model(x1.unsqueeze(0)), y1.reshape(1))
    out = {}
    for i, m in enumerate(model):
        if not isinstance(m, FACTORED):
            continue
        params = [m.weight] + ([m.bias] if m.bias is not None else [])
        gs = torch.autograd.grad(loss, params, retain_graph=True)
        w = gs[0].reshape(m.weight.shape[0], -1)
        out[str(i)] = torch.cat([w, gs[1].reshape(-1, 1)], dim=1) if len(gs) > 1 else w
    return out


def per_sample_logit_jacobians(
    model: nn.Sequential, x1: Tensor
) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits ``z`` and ``∂z_c/∂W̃`` stacked over c: ``{layer: (C, d_out, d_in)}``."""
    z = model(x1.unsqueeze(0))[0]
    out: dict[str, list[Tensor]] = {}
    for c in range(z.numel()):
        for i, m in enumerate(model):
            if not isinstance(m, FACTORED):
                continue
            params = [m.weight] + ([m.bias] if m.bias is not None else [])
            gs = torch.autograd.grad(z[c], params, retain_graph=True)
            w = gs[0].reshape(m.weight.shape[0], -1)
            W = torch.cat([w, gs[1].reshape(-1, 1)], dim=1) if len(gs) > 1 else w
            out.setdefault(str(i), []).append(W)
    return z, {k: torch.stack(v) for k, v in out.items()}


def conv_norm_model() -> nn.Sequential:
    """A seeded fp64 Conv2d → ReLU → LayerNorm → Linear model (factored and diagonal blocks)."""
    torch.manual_seed(4)
    return (
        nn.Sequential(
            nn.Conv2d(1, 2, 3, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.LayerNorm(32),
            nn.Linear(32, 3),
        )
        .double()
        .eval()
    )


def image_data(n: int, first_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """n seeded fp64 1×4×4 inputs, labels in 0..2 and ids first_id, first_id + 1, …"""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=g), torch.arange(first_id, first_id + n)
