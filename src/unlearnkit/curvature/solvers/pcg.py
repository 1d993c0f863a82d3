"""Preconditioned conjugate gradients for SPD systems, column by column (Hestenes & Stiefel
1952; Saad, *Iterative Methods for Sparse Linear Systems*, 2003, Alg. 9.1).

Used by the Woodbury downdates (:mod:`.woodbury`) with an exact inverse of a *nearby* matrix as
the preconditioner: after removing k of N samples the system matrix is A = K_RR + N'λI, the
preconditioner is P = (K_RR + N₀λI)⁻¹ (from the factor kept at build), so P⁻¹ − A = (N₀ − N')λI
and the eigenvalues of PA lie in [N'/N₀, 1]. PCG's error then shrinks at least by
ρ = (√κ − 1)/(√κ + 1) per iteration, κ = N₀/N' (e.g. ρ ≈ 0.007 for k = 100 of N = 3 500).

The iteration runs until every column's (recursive) residual satisfies ‖b − Ax‖ ≤ tol·‖b‖,
tol = 1e-15: a solve to fp64 rounding level, not an approximation. Breakdown (the iteration cap
reached, or a true residual ‖b − Ax‖ above 1e-10·(‖b‖ + ‖A‖·‖x‖) at the end) is reported as
``converged=False`` so that the caller can fall back to a direct factorisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Relative residual at which PCG stops (per column): fp64 rounding level for the systems here.
PCG_TOL = 1e-15
#: Iteration cap; the callers' cost model keeps κ small enough to need far fewer.
PCG_MAX_ITER = 100
#: Normwise backward error above which the final true residual counts as a breakdown.
CHECK_TOL = 1e-10


@dataclass(frozen=True)
class PCGResult:
    """The solution, the iterations used and whether the true residual met the tolerance."""

    x: Tensor
    iterations: int
    converged: bool


def pcg_iterations(kappa: float, tol: float = PCG_TOL) -> int:
    """Iterations that the bound 2ρⁱ ≤ tol guarantees for a spectrum in [1/κ, 1] (κ ≥ 1)."""
    if kappa <= 1.0 + 1e-15:
        return 1
    sq = math.sqrt(kappa)
    rho = (sq - 1.0) / (sq + 1.0)
    return max(1, math.ceil(math.log(tol / 2.0) / math.log(rho)))


def pcg(
    matvec: Callable[[Tensor], Tensor],
    precond: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    tol: float = PCG_TOL,
    max_iter: int = PCG_MAX_ITER,
    anorm: float = 0.0,
) -> PCGResult:
    """Solve A·X = B for SPD A (``matvec``) with SPD preconditioner P ≈ A⁻¹ (``precond``).

    B is (n, r); the r columns run together with their own step sizes α_j, β_j. ``anorm``:
    an upper bound of ‖A‖₂ for the final backward-error check (0: relative to ‖b‖ only).
    """
    x = precond(b) if x0 is None else x0.clone()
    bnorm = torch.linalg.vector_norm(b, dim=0)
    goal = tol * bnorm
    r = b - matvec(x)
    it = 0
    reached = bool((torch.linalg.vector_norm(r, dim=0) <= goal).all())
    if reached:
        return PCGResult(x, 0, True)
    z = precond(r)
    p = z.clone()
    rz = (r * z).sum(dim=0)
    while it < max_iter:
        it += 1
        ap = matvec(p)
        pap = (p * ap).sum(dim=0)
        alpha = torch.where(pap > 0, rz / torch.where(pap > 0, pap, 1.0), 0.0)
        x.add_(p * alpha)
        r.sub_(ap * alpha)
        if bool((torch.linalg.vector_norm(r, dim=0) <= goal).all()):
            reached = True
            break
        z = precond(r)
        rz_new = (r * z).sum(dim=0)
        beta = torch.where(rz > 0, rz_new / torch.where(rz > 0, rz, 1.0), 0.0)
        p = z + p * beta
        rz = rz_new
    true_res = torch.linalg.vector_norm(b - matvec(x), dim=0)
    bound = CHECK_TOL * (bnorm + anorm * torch.linalg.vector_norm(x, dim=0))
    return PCGResult(x, it, reached and bool((true_res <= bound).all()))
