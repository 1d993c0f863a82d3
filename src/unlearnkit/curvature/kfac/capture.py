"""Which layers are Kronecker-factored, and the passes that capture their inputs and output
gradients.

**Layers** (Martens & Grosse 2015, Grosse & Martens 2016). ``nn.Linear`` and ``nn.Conv2d``
(``groups=1``, zero padding given as integers) whose weight is trainable are factored. Their
parameter ``W̃ = [W | b]`` (shape ``d_out × d_in``; conv weights flattened to
``C_out × C_in·k_h·k_w``, the order of ``weight.reshape(C_out, -1)``) acts on the augmented
input ``ã = [a; 1]`` (the 1 only with a bias), so that a sample's gradient is
``Σ_p g_p ã_pᵀ`` with ``g_p = ∂ℓ/∂s_p`` the gradient of its pre-activation at position ``p``.
Positions: one for a Linear on ``(b, d_in)`` inputs, every leading index for higher-rank inputs,
and every output pixel for a Conv2d, where ``ã_p`` is the unfolded input patch
(``torch.nn.functional.unfold``) — the "expand" convention of Eschenhagen et al. 2023.
Every other trainable parameter (norm layers, embeddings, grouped convolutions, ...) gets a
diagonal block (:mod:`.factors`).

**Label modes** (what ``g`` is the gradient of; one or more "columns" ``v_ic`` per sample):

* ``empirical``: ``v_i = ℓ(z_i, y_i)`` at the true label — the empirical Fisher.
* ``true``: ``v_is = ℓ(z_i, ŷ_is)/√S`` with ``ŷ_is ~ p(·|x_i)``, S draws — the Fisher.
  Draws are keyed by ``(seed, sample id)``: independent of batching, order and sharding, so
  downdates and all-reduces see the labels the accumulation saw.
* ``ggn``: ``v_ic = (L_iᵀ z_i)_c`` with ``L_i`` held constant, ``L_i L_iᵀ = ∂²ℓ/∂z²``
  (for softmax cross-entropy ``diag(p) − p pᵀ``, :meth:`~unlearnkit.tasks.Task.ggn_values`).
  Back-propagating column c gives ``J_iᵀ L_i[:, c]``, so ``Σ_c g_c g_cᵀ = J_iᵀ Λ_i J_i``: the
  Gauss-Newton matrix by the square-root trick, one backward pass per column.

Output gradients are taken with ``torch.autograd.grad`` with respect to each layer's output
(the forward hook hands the rest of the model a copy, so in-place activations cannot alter it).
A layer called twice in one forward pass (weight sharing across calls) is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from unlearnkit.curvature.gradients import check_eval_mode
from unlearnkit.errors import ConfigError, DataError, UnsupportedError
from unlearnkit.tasks import Task, get_task

LabelMode = Literal["empirical", "true", "ggn"]
LABEL_MODES: tuple[str, ...] = ("empirical", "true", "ggn")


@dataclass(frozen=True)
class LayerSpec:
    """A Kronecker-factored layer: module name, kind, its parameter names and factor sizes."""

    name: str
    kind: str  # "linear" | "conv2d"
    weight: str
    bias: str | None
    d_in: int  # columns of W̃, the bias column included
    d_out: int

    @property
    def params(self) -> tuple[str, ...]:
        return (self.weight,) if self.bias is None else (self.weight, self.bias)


def _factorable(mod: nn.Module) -> bool:
    if not isinstance(mod, nn.Linear | nn.Conv2d) or not mod.weight.requires_grad:
        return False
    if mod.bias is not None and not mod.bias.requires_grad:
        return False
    if isinstance(mod, nn.Conv2d):
        return mod.groups == 1 and mod.padding_mode == "zeros" and not isinstance(mod.padding, str)
    return True


def plan_layers(model: nn.Module) -> tuple[tuple[LayerSpec, ...], tuple[str, ...]]:
    """``(factored layers, names of the other trainable parameters)``, in model order."""
    specs: list[LayerSpec] = []
    owned: set[str] = set()
    for name, mod in model.named_modules():
        if not _factorable(mod):
            continue
        prefix = f"{name}." if name else ""
        w = mod.weight
        d_out = int(w.shape[0])
        d_in = math.prod(w.shape[1:]) + (mod.bias is not None)
        kind = "conv2d" if isinstance(mod, nn.Conv2d) else "linear"
        bias = None if mod.bias is None else prefix + "bias"
        specs.append(LayerSpec(name, kind, prefix + "weight", bias, d_in, d_out))
        owned.update(specs[-1].params)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = owned - set(names)
    if missing:  # a factored parameter is shared with (and named under) another module
        raise UnsupportedError(f"parameters shared between modules are not supported: {missing}")
    return tuple(specs), tuple(n for n in names if n not in owned)


def layer_inputs(mod: nn.Module, x: Tensor) -> Tensor:
    """``(b, P, d_in)`` augmented inputs ``ã_p`` (unfolded patches for a Conv2d)."""
    if isinstance(mod, nn.Conv2d):
        if x.dim() != 4:
            raise UnsupportedError("K-FAC needs batched (b, C, H, W) inputs to Conv2d layers")
        a = F.unfold(x, mod.kernel_size, mod.dilation, mod.padding, mod.stride).transpose(1, 2)
    else:
        a = x.reshape(x.shape[0], -1, x.shape[-1])
    if getattr(mod, "bias", None) is not None:
        a = torch.cat([a, a.new_ones(*a.shape[:2], 1)], dim=2)
    return a


def layer_output_grads(mod: nn.Module, g: Tensor) -> Tensor:
    """``(b, P, d_out)`` gradients of the pre-activations, positions in the order of
    :func:`layer_inputs`."""
    if isinstance(mod, nn.Conv2d):
        return g.flatten(2).transpose(1, 2)
    return g.reshape(g.shape[0], -1, g.shape[-1])


# ---------------------------------------------------------------------- label modes
def _mix(seed: int, sample_id: int) -> int:
    """A 64-bit seed for one sample's draws (golden-ratio multiply, distinct per pair)."""
    return (int(seed) * 0x9E3779B97F4A7C15 + int(sample_id) * 0xBF58476D1CE4E5B9 + 1) % 2**64


def label_uniforms(task: Task, seed: int, ids: Tensor, samples: int, num_outputs: int) -> Tensor:
    """``(b, S, *uniform_shape)`` fp64 uniforms, each sample's from a generator keyed by
    ``(seed, id)``."""
    shape = (samples, *task.uniform_shape(num_outputs))
    rows = []
    for i in ids.tolist():
        gen = torch.Generator().manual_seed(_mix(seed, i))
        rows.append(torch.rand(shape, generator=gen, dtype=torch.float64))
    return torch.stack(rows)


def sample_values(task: Task, mode: str, z: Tensor, y: Tensor, aux: Tensor) -> Tensor:
    """The columns ``v_c`` of ONE sample (vmappable); their gradients define the curvature."""
    if mode == "empirical":
        return task.sample_loss(z, y).reshape(1)
    if mode == "true":
        vals = [task.sample_loss(z, aux[s]) for s in range(aux.shape[0])]
        return torch.stack(vals) / math.sqrt(aux.shape[0])
    return task.ggn_values(z, aux)


def batch_aux(
    task: Task, mode: str, logits: Tensor, y: Tensor, ids: Tensor, seed: int, samples: int
) -> Tensor:
    """Per-sample constants of the columns (no gradient): sampled labels, Hessian factors."""
    z = logits.detach()
    if mode == "true":
        u = label_uniforms(task, seed, ids, samples, int(z.shape[-1])).to(z.device)
        return task.sample_labels(z, u)
    if mode == "ggn":
        return task.ggn_aux(z, y)
    return torch.zeros(z.shape[0], device=z.device)


def check_mode(mode: str, samples: int) -> None:
    if mode not in LABEL_MODES:
        raise ConfigError(f"unknown curvature {mode!r}; known: {', '.join(LABEL_MODES)}")
    if samples < 1 or (mode != "true" and samples != 1):
        raise ConfigError(f"samples must be 1 (or >= 1 for 'true'), got {samples} for {mode!r}")


# ---------------------------------------------------------------------- passes
@dataclass
class Pass:
    """What one pass needs: model, task, label mode, seed, draws per sample, layers."""

    model: nn.Module
    task: Task
    mode: str
    seed: int
    samples: int
    layers: tuple[LayerSpec, ...]


def make_pass(model: nn.Module, task: str | Task, mode: str, seed: int, samples: int) -> Pass:
    """Validate and plan a pass (the model must be in eval mode; it is not modified)."""
    check_eval_mode(model)
    check_mode(mode, samples)
    layers, _ = plan_layers(model)
    return Pass(model, get_task(task), mode, int(seed), int(samples), layers)


@contextmanager
def _hooked(p: Pass, inputs: dict[str, Tensor], outputs: dict[str, Tensor]) -> Iterator[None]:
    modules = dict(p.model.named_modules())
    handles = []

    def hook(name: str) -> Callable[[nn.Module, tuple[Tensor, ...], Tensor], Tensor]:
        def fn(mod: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
            if name in outputs:
                raise UnsupportedError(f"layer {name!r} is called more than once per forward")
            inputs[name] = layer_inputs(mod, args[0].detach())
            outputs[name] = out
            return out.clone()  # in-place ops downstream act on the copy

        return fn

    try:
        for spec in p.layers:
            handles.append(modules[spec.name].register_forward_hook(hook(spec.name)))
        yield
    finally:
        for h in handles:
            h.remove()


ColumnFn = Callable[[dict[str, Tensor], dict[str, Tensor]], None]


def run_batch(p: Pass, x: Tensor, y: Tensor, ids: Tensor, on_column: ColumnFn) -> None:
    """One forward pass over a batch, then one backward pass per column; ``on_column`` gets
    ``{layer: ã (b, P, d_in)}`` and ``{layer: g (b, P, d_out)}`` for each column."""
    inputs: dict[str, Tensor] = {}
    outputs: dict[str, Tensor] = {}
    with torch.enable_grad(), _hooked(p, inputs, outputs):
        logits = p.model(x)
    if logits.dim() != 2:
        raise UnsupportedError(f"K-FAC needs (b, C) model outputs, got shape {tuple(logits.shape)}")
    aux = batch_aux(p.task, p.mode, logits, y, ids, p.seed, p.samples)
    values = vmap(lambda z, yi, ai: sample_values(p.task, p.mode, z, yi, ai))(logits, y, aux)
    if not bool(torch.isfinite(values).all()):
        raise DataError("non-finite losses in a batch; check the inputs, labels and model")
    names = [s.name for s in p.layers]
    mods = dict(p.model.named_modules())
    tensors = [outputs[n] for n in names]
    for c in range(values.shape[1]):
        grads = torch.autograd.grad(
            values[:, c].sum(), tensors, retain_graph=c < values.shape[1] - 1, allow_unused=True
        )
        gs = {
            n: layer_output_grads(mods[n], torch.zeros_like(t) if g is None else g)
            for n, t, g in zip(names, tensors, grads, strict=True)
        }
        on_column(inputs, gs)


def diagonal_squares(
    p: Pass, names: tuple[str, ...], x: Tensor, y: Tensor, ids: Tensor
) -> dict[str, Tensor]:
    """``Σ_i Σ_c (∂v_ic/∂θ)²`` for the parameters ``names`` (per-sample Jacobians by
    ``torch.func``): the diagonal of the same curvature, un-normalised."""
    if not names:
        return {}
    params = {n: t.detach() for n, t in p.model.named_parameters()}
    fixed = {**{n: t for n, t in params.items() if n not in names}, **dict(p.model.named_buffers())}
    with torch.no_grad():
        logits = p.model(x)
    aux = batch_aux(p.task, p.mode, logits, y, ids, p.seed, p.samples)

    def values(dp: dict[str, Tensor], xi: Tensor, yi: Tensor, ai: Tensor) -> Tensor:
        z = functional_call(p.model, {**fixed, **dp}, (xi.unsqueeze(0),)).squeeze(0)
        return sample_values(p.task, p.mode, z, yi, ai)

    own = {n: params[n] for n in names}
    jac = vmap(jacrev(values), in_dims=(None, 0, 0, 0))(own, x, y, aux)
    return {n: jac[n].square().sum(dim=(0, 1)) for n in names}
