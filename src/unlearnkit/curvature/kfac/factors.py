"""K-FAC factor sums: ``Σ ã ãᵀ`` and ``Σ g gᵀ`` per layer, with the counts that normalise them.

For a factored layer (see :mod:`.capture`) with augmented inputs ``ã_ip`` and pre-activation
gradients ``g_ipc`` (sample i, position p, column c of the label mode)::

    A_sum = Σ_i Σ_p ã_ip ã_ipᵀ            A = A_sum / T        T = Σ_i P_i  (sample-positions)
    G_sum = Σ_i Σ_c Σ_p g_ipc g_ipcᵀ       G = G_sum / n        n = number of samples

so that ``A ⊗ G`` approximates ``(1/n) Σ_i ∇ℓ_i ∇ℓ_iᵀ`` restricted to the layer (Martens &
Grosse 2015; for convolutions the "expand" K-FAC of Grosse & Martens 2016 and Eschenhagen et
al. 2023). These are the normalisations of curvlinops' ``KFACLinearOperator`` with a mean loss
(``loss_average``: A averaged over samples and positions, G over samples). For one sample at
one position, ``A ⊗ G = (ã ãᵀ) ⊗ (g gᵀ)`` is that sample's exact gradient outer product.

Parameters without a factorisation get a **diagonal block** of the same curvature:
``D_sum = Σ_i Σ_c (∂v_ic/∂θ)²`` (the diagonal empirical Fisher in the ``empirical`` mode) and
``D = D_sum / n``.

Everything is kept as *sums* plus counts (in ``sum_dtype``, float64 by default), so that shards
add up (:mod:`.distributed`) and samples can be removed exactly (:mod:`.downdate`).
Vectorisation: the parameter ``W̃`` (d_out × d_in) flattened row-major, as
:class:`~unlearnkit.curvature.layout.ParamLayout` does, is multiplied by ``G ⊗ A`` (``torch.kron``
order); in the column-major notation of the papers that is ``(A ⊗ G) vec(W̃)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from unlearnkit.curvature.kfac.capture import (
    LayerSpec,
    Pass,
    diagonal_squares,
    make_pass,
    plan_layers,
    run_batch,
)
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.tasks import Task


@dataclass(frozen=True)
class LayerSums:
    """One factored layer's sums: ``a_sum (d_in, d_in)``, ``g_sum (d_out, d_out)`` and the
    number of sample-positions ``positions`` (0-dim tensor, so it can be all-reduced)."""

    spec: LayerSpec
    a_sum: Tensor
    g_sum: Tensor
    positions: Tensor

    def combine(self, other: LayerSums, sign: float) -> LayerSums:
        return LayerSums(
            self.spec,
            self.a_sum + sign * other.a_sum,
            self.g_sum + sign * other.g_sum,
            self.positions + sign * other.positions,
        )


@dataclass(frozen=True)
class KFACSums:
    """Un-normalised K-FAC statistics of a set of samples (see the module docstring).

    ``mode``/``seed``/``samples`` say which curvature (label mode) they are sums of; sums of
    different curvatures cannot be combined.
    """

    mode: str
    seed: int
    samples: int
    count: Tensor  # 0-dim, number of samples n
    layers: dict[str, LayerSums]
    diag: dict[str, Tensor] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(round(float(self.count)))

    def _check_compatible(self, other: KFACSums) -> None:
        mine = (self.mode, self.seed, self.samples, tuple(self.layers), tuple(self.diag))
        theirs = (other.mode, other.seed, other.samples, tuple(other.layers), tuple(other.diag))
        if mine != theirs:
            raise ConfigError(
                "K-FAC sums of different curvatures or models cannot be combined "
                f"({mine[:3]} vs {theirs[:3]})"
            )

    def combine(self, other: KFACSums, sign: float) -> KFACSums:
        """``self + sign·other`` (sums and counts)."""
        self._check_compatible(other)
        return replace(
            self,
            count=self.count + sign * other.count,
            layers={k: v.combine(other.layers[k], sign) for k, v in self.layers.items()},
            diag={k: v + sign * other.diag[k] for k, v in self.diag.items()},
        )

    def __add__(self, other: KFACSums) -> KFACSums:
        return self.combine(other, 1.0)

    def factors(self) -> KFACFactors:
        """The normalised factors ``A = A_sum/T``, ``G = G_sum/n``, ``D = D_sum/n``."""
        if float(self.count) <= 0:
            raise DataError("K-FAC factors of an empty set of samples are undefined")
        layers = {}
        for k, s in self.layers.items():
            if float(s.positions) <= 0:
                raise DataError(f"layer {k!r} saw no inputs")
            layers[k] = LayerFactors(s.spec, s.a_sum / s.positions, s.g_sum / self.count)
        diag = {k: v / self.count for k, v in self.diag.items()}
        return KFACFactors(self.mode, self.n, layers, diag)


@dataclass(frozen=True)
class LayerFactors:
    """``A (d_in, d_in)`` and ``G (d_out, d_out)`` of one layer; ``F_layer ≈ A ⊗ G``."""

    spec: LayerSpec
    A: Tensor
    G: Tensor


@dataclass(frozen=True)
class KFACFactors:
    """Normalised K-FAC factors of ``n`` samples plus the diagonal blocks ``diag`` (per
    parameter, the shape of the parameter)."""

    mode: str
    n: int
    layers: dict[str, LayerFactors]
    diag: dict[str, Tensor]

    def describe(self) -> str:
        lines = [f"K-FAC ({self.mode}), n={self.n}"]
        for k, f in self.layers.items():
            lines.append(f"  {k or '<root>'}: {f.spec.kind} A {f.spec.d_in}², G {f.spec.d_out}²")
        for k, d in self.diag.items():
            lines.append(f"  {k}: diagonal of the {self.mode} curvature ({d.numel()} entries)")
        return "\n".join(lines)


def empty_sums(
    p: Pass, diag_names: tuple[str, ...], dtype: torch.dtype, device: torch.device
) -> KFACSums:
    """Zero sums for the layers of ``p`` and the diagonal parameters ``diag_names``."""
    params = dict(p.model.named_parameters())

    def zero(*shape: int) -> Tensor:
        return torch.zeros(shape, dtype=dtype, device=device)

    layers = {
        s.name: LayerSums(s, zero(s.d_in, s.d_in), zero(s.d_out, s.d_out), zero()) for s in p.layers
    }
    diag = {k: zero(*params[k].shape) for k in diag_names}
    return KFACSums(p.mode, p.seed, p.samples, zero(), layers, diag)


def accumulate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    task: str | Task,
    *,
    mode: str = "empirical",
    ids: Tensor | None = None,
    seed: int = 0,
    samples: int = 1,
    batch_size: int = 256,
    sum_dtype: torch.dtype = torch.float64,
) -> KFACSums:
    """K-FAC sums of the samples ``(x, y)`` (ids default ``arange(n)``) for ``model``.

    ``mode``: ``empirical`` (true labels), ``true`` (``samples`` labels drawn from the model,
    keyed by ``(seed, id)``) or ``ggn`` (square root of the logit Hessian); see
    :mod:`.capture`. The model must be in eval mode; it is not modified. The batch size
    changes only the memory used, not the result (up to rounding).
    """
    n = int(x.shape[0])
    if int(y.shape[0]) != n:
        raise DataError(f"x and y disagree in length ({n} vs {y.shape[0]})")
    if n < 1:
        raise DataError("no samples to accumulate K-FAC factors of")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    ids = torch.arange(n) if ids is None else torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids.numel() != n or torch.unique(ids).numel() != n:
        raise DataError(f"ids must be {n} unique sample ids")
    p = make_pass(model, task, mode, seed, samples)
    _, diag_names = plan_layers(model)
    dev = next(model.parameters()).device
    sums = empty_sums(p, diag_names, sum_dtype, dev)
    a_acc = {k: s.a_sum for k, s in sums.layers.items()}
    g_acc = {k: s.g_sum for k, s in sums.layers.items()}
    pos = {k: s.positions for k, s in sums.layers.items()}
    first = [True]

    def on_column(inputs: dict[str, Tensor], grads: dict[str, Tensor]) -> None:
        for k, g in grads.items():
            gf = g.reshape(-1, g.shape[-1]).to(sum_dtype)
            g_acc[k].add_(gf.T @ gf)
            if first[0]:  # inputs are the same for every column of a batch
                a = inputs[k].reshape(-1, inputs[k].shape[-1]).to(sum_dtype)
                a_acc[k].add_(a.T @ a)
                pos[k].add_(a.shape[0])
        first[0] = False

    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        xb, yb, ib = x[sl].to(dev), y[sl].to(dev), ids[sl]
        first[0] = True
        run_batch(p, xb, yb, ib, on_column)
        for k, d in diagonal_squares(p, diag_names, xb, yb, ib).items():
            sums.diag[k].add_(d.to(sum_dtype))
        sums.count.add_(sl.stop - sl.start)
    return sums
