"""Kronecker eigenbases, EK-FAC corrected scales, and (damped) products with one layer's block.

With ``A = U_A diag(α) U_Aᵀ`` and ``G = U_G diag(γ) U_Gᵀ`` (``torch.linalg.eigh``; eigenvalues
below 0, rounding of PSD matrices, clamped to 0), for a layer gradient ``V`` (``d_out × d_in``,
the layout of ``W̃ = [W | b]``)::

    K-FAC       (A ⊗ G) vec V        = G V A
                (A ⊗ G + λI)⁻¹ vec V = U_G [ (U_Gᵀ V U_A) ⊘ (γ αᵀ + λ) ] U_Aᵀ
    EK-FAC      F̃ vec V              = U_G [ (U_Gᵀ V U_A) ⊙ s ] U_Aᵀ
                (F̃ + λI)⁻¹ vec V     = U_G [ (U_Gᵀ V U_A) ⊘ (s + λ) ] U_Aᵀ

(⊘, ⊙ element-wise; Martens & Grosse 2015 §4, George et al. 2018 eq. 9-11, Grosse et al. 2023
eq. 20). λ is added once, as in the exact engine's ``λI + (1/N) RᵀR``.

The EK-FAC **corrected scales** are the exact diagonal of the curvature in the Kronecker
eigenbasis (George et al. 2018, eq. 12)::

    s_jk = (1/n) Σ_i Σ_c ( U_Gᵀ Ĝ_ic U_A )_jk²,     Ĝ_ic = Σ_p g_ipc ã_ipᵀ

with ``Ĝ_ic`` sample i's gradient of column c (:mod:`.capture`), summed over the positions of
a convolution *before* squaring (the per-sample gradient). They need a second pass over the
data once the eigenbases are known; :class:`ScaleSums` holds ``Σ`` and ``n`` for all-reduces
and downdates, always in the eigenbasis they were computed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from unlearnkit.curvature.kfac.capture import LayerSpec, make_pass, run_batch
from unlearnkit.curvature.kfac.factors import KFACFactors
from unlearnkit.errors import ConfigError, DataError, NumericalError
from unlearnkit.tasks import Task


@dataclass(frozen=True)
class LayerEigen:
    """Eigendecompositions ``A = U_A diag(alpha) U_Aᵀ`` and ``G = U_G diag(gamma) U_Gᵀ``."""

    spec: LayerSpec
    UA: Tensor
    alpha: Tensor
    UG: Tensor
    gamma: Tensor

    @property
    def kfac_scales(self) -> Tensor:
        """``γ αᵀ`` (d_out × d_in): the eigenvalues of ``A ⊗ G`` in the layout of ``W̃``."""
        return self.gamma[:, None] * self.alpha[None, :]

    def rotate(self, V: Tensor) -> Tensor:
        """``U_Gᵀ V U_A``: ``V`` in the Kronecker eigenbasis."""
        return self.UG.T @ V @ self.UA

    def unrotate(self, V: Tensor) -> Tensor:
        """``U_G V U_Aᵀ``: back to the parameter basis."""
        return self.UG @ V @ self.UA.T


def eigenbases(factors: KFACFactors) -> dict[str, LayerEigen]:
    """Eigendecompose ``A`` and ``G`` of every layer (cost ``d_in³ + d_out³`` per layer)."""
    out = {}
    for k, f in factors.layers.items():
        alpha, UA = torch.linalg.eigh(f.A)
        gamma, UG = torch.linalg.eigh(f.G)
        out[k] = LayerEigen(f.spec, UA, alpha.clamp(min=0), UG, gamma.clamp(min=0))
    return out


def kfac_matvec(V: Tensor, A: Tensor, G: Tensor) -> Tensor:
    """``(A ⊗ G) vec V = vec(G V A)``."""
    return G @ V @ A


def _divide(R: Tensor, scales: Tensor, damping: float) -> Tensor:
    den = scales + damping
    if not bool((den > 0).all()):
        raise NumericalError(
            "the damped Kronecker block is singular (a zero eigenvalue and damping 0); "
            "use damping > 0"
        )
    return R / den


def kfac_solve(V: Tensor, eig: LayerEigen, damping: float) -> Tensor:
    """``(A ⊗ G + λI)⁻¹ vec V = U_G [(U_Gᵀ V U_A) ⊘ (γ αᵀ + λ)] U_Aᵀ``."""
    return eig.unrotate(_divide(eig.rotate(V), eig.kfac_scales, damping))


def ekfac_matvec(V: Tensor, eig: LayerEigen, scales: Tensor) -> Tensor:
    """``F̃ vec V = U_G [(U_Gᵀ V U_A) ⊙ s] U_Aᵀ``."""
    return eig.unrotate(eig.rotate(V) * scales)


def ekfac_solve(V: Tensor, eig: LayerEigen, scales: Tensor, damping: float) -> Tensor:
    """``(F̃ + λI)⁻¹ vec V = U_G [(U_Gᵀ V U_A) ⊘ (s + λ)] U_Aᵀ``."""
    return eig.unrotate(_divide(eig.rotate(V), scales, damping))


@dataclass(frozen=True)
class ScaleSums:
    """``Σ_i Σ_c (U_Gᵀ Ĝ_ic U_A)²`` per layer (d_out × d_in) over ``count`` samples, in the
    eigenbases ``bases`` they were computed in; ``mode``/``seed``/``samples`` as
    :class:`~unlearnkit.curvature.kfac.factors.KFACSums`."""

    mode: str
    seed: int
    samples: int
    count: Tensor
    sums: dict[str, Tensor]
    bases: dict[str, LayerEigen]

    @property
    def n(self) -> int:
        return int(round(float(self.count)))

    def combine(self, other: ScaleSums, sign: float) -> ScaleSums:
        """``self + sign·other``; both must be sums in the same eigenbases."""
        if (self.mode, self.seed, self.samples, tuple(self.sums)) != (
            other.mode,
            other.seed,
            other.samples,
            tuple(other.sums),
        ):
            raise ConfigError("EK-FAC scale sums of different curvatures cannot be combined")
        for k, e in self.bases.items():
            o = other.bases[k]
            if not (torch.equal(e.UA, o.UA) and torch.equal(e.UG, o.UG)):
                raise ConfigError(f"EK-FAC scale sums of layer {k!r} are in different eigenbases")
        return replace(
            self,
            count=self.count + sign * other.count,
            sums={k: v + sign * other.sums[k] for k, v in self.sums.items()},
        )

    def scales(self) -> dict[str, Tensor]:
        """The corrected scales ``s = Σ / n``."""
        if float(self.count) <= 0:
            raise DataError("EK-FAC scales of an empty set of samples are undefined")
        return {k: v / self.count for k, v in self.sums.items()}


def scale_sums(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    task: str | Task,
    bases: dict[str, LayerEigen],
    *,
    mode: str = "empirical",
    ids: Tensor | None = None,
    seed: int = 0,
    samples: int = 1,
    batch_size: int = 64,
    sum_dtype: torch.dtype = torch.float64,
) -> ScaleSums:
    """EK-FAC scale sums of ``(x, y)`` in the eigenbases ``bases`` (second pass over the data;
    same ``mode``, ``seed`` and ``samples`` as the factors). Memory per batch:
    ``batch_size · d_out · d_in`` per layer for the rotated per-sample gradients."""
    n = int(x.shape[0])
    if n < 1 or int(y.shape[0]) != n:
        raise DataError(f"need matching, non-empty x and y (got {n} and {int(y.shape[0])})")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    ids = torch.arange(n) if ids is None else torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids.numel() != n:
        raise DataError(f"ids has {ids.numel()} entries for {n} samples")
    p = make_pass(model, task, mode, seed, samples)
    if {s.name for s in p.layers} != set(bases):
        raise ConfigError("the eigenbases do not belong to this model's factored layers")
    dev = next(model.parameters()).device
    sums = {
        k: torch.zeros(e.spec.d_out, e.spec.d_in, dtype=sum_dtype, device=dev)
        for k, e in bases.items()
    }

    def on_column(inputs: dict[str, Tensor], grads: dict[str, Tensor]) -> None:
        for k, g in grads.items():
            e = bases[k]
            gr = g.to(e.UG.dtype) @ e.UG  # (b, P, d_out): U_Gᵀ g_p
            ar = inputs[k].to(e.UA.dtype) @ e.UA  # (b, P, d_in): U_Aᵀ ã_p
            rotated = gr.transpose(1, 2) @ ar  # (b, d_out, d_in): U_Gᵀ Ĝ_i U_A
            sums[k].add_(rotated.square().sum(0).to(sum_dtype))

    for start in range(0, n, batch_size):
        sl = slice(start, min(n, start + batch_size))
        run_batch(p, x[sl].to(dev), y[sl].to(dev), ids[sl], on_column)
    count = torch.tensor(float(n), dtype=sum_dtype, device=dev)
    return ScaleSums(p.mode, p.seed, p.samples, count, sums, dict(bases))
