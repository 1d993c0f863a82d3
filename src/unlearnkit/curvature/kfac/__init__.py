"""Kronecker-factored curvature (K-FAC, EK-FAC) beside the exact rows of
:mod:`unlearnkit.curvature`.

For each ``nn.Linear`` / ``nn.Conv2d`` layer the curvature block is ``A ⊗ G`` with ``A`` the
second moment of the (augmented) layer inputs and ``G`` that of the pre-activation gradients
(Martens & Grosse 2015; convolutions: Grosse & Martens 2016), or its eigenvalue-corrected
version (EK-FAC: George et al. 2018; as used for influence functions by Grosse et al. 2023).
Other parameters get a diagonal block. Modules, in dependency order:

* :mod:`.capture`: which layers are factored; hooks; label modes (empirical, true, ggn);
* :mod:`.factors`: the sums ``Σ ã ãᵀ``, ``Σ g gᵀ``, diagonal blocks, counts; normalisation;
* :mod:`.ekfac`: eigenbases, corrected scales, damped products and solves per layer;
* :mod:`.direction`: the model's block-diagonal curvature and the SSSE direction;
* :mod:`.downdate`: leave-S-out by subtracting S's sums;
* :mod:`.distributed`: one all-reduce of the sums across processes.
"""

from unlearnkit.curvature.kfac.capture import LABEL_MODES, LayerSpec, plan_layers
from unlearnkit.curvature.kfac.direction import (
    KroneckerCurvature,
    flatten_like,
    ssse_direction,
    summed_gradient,
)
from unlearnkit.curvature.kfac.distributed import (
    all_reduce_scale_sums,
    all_reduce_sums,
    broadcast_bases,
    shard_curvature,
)
from unlearnkit.curvature.kfac.downdate import Downdated, leave_out, subtract, subtract_scales
from unlearnkit.curvature.kfac.ekfac import (
    LayerEigen,
    ScaleSums,
    eigenbases,
    ekfac_matvec,
    ekfac_solve,
    kfac_matvec,
    kfac_solve,
    scale_sums,
)
from unlearnkit.curvature.kfac.factors import (
    KFACFactors,
    KFACSums,
    LayerFactors,
    LayerSums,
    accumulate,
)

__all__ = [
    "LABEL_MODES",
    "Downdated",
    "KFACFactors",
    "KFACSums",
    "KroneckerCurvature",
    "LayerEigen",
    "LayerFactors",
    "LayerSpec",
    "LayerSums",
    "ScaleSums",
    "accumulate",
    "all_reduce_scale_sums",
    "all_reduce_sums",
    "broadcast_bases",
    "eigenbases",
    "ekfac_matvec",
    "ekfac_solve",
    "flatten_like",
    "kfac_matvec",
    "kfac_solve",
    "leave_out",
    "plan_layers",
    "scale_sums",
    "shard_curvature",
    "ssse_direction",
    "subtract",
    "subtract_scales",
    "summed_gradient",
]
