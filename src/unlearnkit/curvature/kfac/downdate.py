"""Leave-S-out: the Kronecker curvature of the retained data R = D∖S by exact downdates.

A, G, the diagonal blocks and the EK-FAC scales are sample means, so with k = |S| of n::

    A_R = (T_D·A_D − Σ_{i∈S} Σ_p ã_ip ã_ipᵀ) / (T_D − T_S)     (T: sample-positions)
    G_R = (n·G_D − Σ_{i∈S} Σ_c Σ_p g g ᵀ) / (n − k)
    D_R = (n·D_D − Σ_{i∈S} Σ_c (∂v_ic/∂θ)²) / (n − k)
    s_R = (n·s_D − Σ_{i∈S} Σ_c (U_Gᵀ Ĝ_ic U_A)²) / (n − k)     in D's eigenbasis U

(George et al. 2018 for s; the factor sums are those of :mod:`.factors`). ``A_R``, ``G_R`` and
``D_R`` equal the factors rebuilt on D∖S exactly (up to rounding), and the K-FAC of R is then
re-diagonalised (``d_in³ + d_out³`` per layer). ``s_R`` is kept **in D's eigenbasis**: it is
the exact diagonal of R's curvature in that basis, not the EK-FAC of R (which would need
R's eigenbasis and a pass over the retained data). Which one a curvature uses is stated by
:attr:`Downdated.scales_basis`.

S's contributions must be evaluated at the parameters D's sums were computed at (θ_F) and
with the same label mode and seed (sampled labels are keyed by sample id, :mod:`.capture`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearnkit.curvature.kfac.direction import KroneckerCurvature
from unlearnkit.curvature.kfac.ekfac import ScaleSums, scale_sums
from unlearnkit.curvature.kfac.factors import KFACSums, accumulate
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.tasks import Task


def subtract(full: KFACSums, removed: KFACSums) -> KFACSums:
    """``full − removed`` (sums and counts); at least one sample must remain."""
    k, n = float(removed.count), float(full.count)
    if k > n:
        raise DataError(f"cannot remove {int(k)} samples from sums of {int(n)}")
    if k == n:
        raise DataError("cannot remove every sample from the K-FAC sums")
    return full.combine(removed, -1.0)


def subtract_scales(full: ScaleSums, removed: ScaleSums) -> ScaleSums:
    """``full − removed`` for EK-FAC scale sums computed in the same (D's) eigenbasis."""
    if float(removed.count) >= float(full.count):
        raise DataError("cannot remove every sample from the EK-FAC scale sums")
    return full.combine(removed, -1.0)


@dataclass(frozen=True)
class Downdated:
    """The retained data's sums and the curvature built from them.

    ``scales_basis``: ``"none"`` (K-FAC: ``curvature`` re-diagonalises R's factors) or
    ``"full-data"`` (EK-FAC: ``curvature`` holds R's factors but solves with R's scales in
    D's eigenbases). The sums are R's exactly in both cases."""

    sums: KFACSums
    scale_sums: ScaleSums | None
    curvature: KroneckerCurvature
    scales_basis: str


def leave_out(
    model_at_fisher: nn.Module,
    sums: KFACSums,
    x_forget: Tensor,
    y_forget: Tensor,
    task: str | Task,
    *,
    ids: Tensor,
    scales: ScaleSums | None = None,
    batch_size: int = 256,
) -> Downdated:
    """Remove the samples ``ids`` (inputs ``x_forget``, labels ``y_forget``) from ``sums``
    (and from the EK-FAC ``scales`` if given) and build the retained data's curvature.

    ``model_at_fisher`` must hold the parameters the sums were computed at. Nothing is
    modified: new sums are returned."""
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids.numel() != int(x_forget.shape[0]):
        raise DataError(f"{ids.numel()} ids for {int(x_forget.shape[0])} forget samples")
    if scales is not None and (scales.mode, scales.seed, scales.samples) != (
        sums.mode,
        sums.seed,
        sums.samples,
    ):
        raise ConfigError("EK-FAC scale sums and K-FAC sums are of different curvatures")
    dtype = next(iter(sums.layers.values())).a_sum.dtype if sums.layers else torch.float64
    common = dict(mode=sums.mode, ids=ids, seed=sums.seed, samples=sums.samples, sum_dtype=dtype)
    removed = accumulate(model_at_fisher, x_forget, y_forget, task, batch_size=batch_size, **common)
    kept = subtract(sums, removed)
    if scales is None:
        return Downdated(kept, None, KroneckerCurvature.build(kept.factors()), "none")
    s_removed = scale_sums(
        model_at_fisher, x_forget, y_forget, task, scales.bases, batch_size=batch_size, **common
    )
    s_kept = subtract_scales(scales, s_removed)
    curv = KroneckerCurvature.build(kept.factors(), s_kept.scales(), bases=scales.bases)
    return Downdated(kept, s_kept, curv, "full-data")
