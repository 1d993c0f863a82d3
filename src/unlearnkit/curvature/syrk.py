"""Symmetric rank-k updates C += α·AᵀA in fp64 through BLAS ``dsyrk`` (CPU) or a GEMM (GPU).

A Gram matrix is symmetric, so only one triangle needs computing: BLAS ``dsyrk`` does
m·d² multiply-adds for an (m, d) chunk where a GEMM does 2·m·d² flops' worth of both
triangles, i.e. half the work (ssse-engine.md §4.2, "one GEMM per block, then Cholesky";
Golub & Van Loan, *Matrix Computations*, §1.3 on SYRK). torch exposes no syrk, so on CPU the
update goes through ``scipy.linalg.blas.dsyrk`` on zero-copy NumPy views of the torch
tensors; on other devices (where GEMMs are cheap and scipy cannot reach) it is ``addmm_``.

Layout trick: for a C-contiguous (rows, d) fp64 chunk X, ``X.numpy().T`` is an F-contiguous
(d, rows) array, so ``dsyrk(trans=0)`` computes (Xᵀ)(Xᵀ)ᵀ = XᵀX without a copy. The result
matrix C is symmetric, so its C-contiguous buffer seen as F-contiguous is Cᵀ = C; dsyrk
updates one triangle of it in place, and :func:`mirror_upper_` copies that triangle to the
other one at the end.
"""

from __future__ import annotations

import torch
from scipy.linalg import blas
from threadpoolctl import threadpool_limits
from torch import Tensor

F64 = torch.float64


def use_blas_syrk(C: Tensor) -> bool:
    """True when ``C`` (the fp64 result) can be updated in place by scipy's ``dsyrk``."""
    return C.device.type == "cpu" and C.dtype == F64 and C.is_contiguous()


def syrk_update_(C: Tensor, X: Tensor, alpha: float = 1.0, *, rows: bool = False) -> None:
    """In place: the upper triangle (C-order) of C gets α·XᵀX (``rows=True``: α·XXᵀ) added.

    X is fp64 (made C-contiguous if it is not). Only the upper triangle of ``C`` is
    meaningful afterwards; call :func:`mirror_upper_` once all chunks are in. Uses as many
    BLAS threads as torch does.
    """
    if X.numel() == 0:
        return
    x = X.contiguous().numpy().T  # Xᵀ as an F-contiguous array, no copy
    c = C.numpy().T  # F-contiguous view of the symmetric C
    with threadpool_limits(limits=torch.get_num_threads(), user_api="blas"):
        # trans=0: x·xᵀ = XᵀX;  trans=1: xᵀ·x = XXᵀ
        out = blas.dsyrk(alpha, x, beta=1.0, c=c, trans=int(rows), lower=1, overwrite_c=1)
    if out.ctypes.data != c.ctypes.data:  # scipy had to copy; write the result back
        C.copy_(torch.from_numpy(out.T))


def mirror_upper_(C: Tensor) -> Tensor:
    """In place: C ← triu(C) + triu(C, 1)ᵀ (make C symmetric from its upper triangle)."""
    upper = torch.triu(C, 1)
    return C.triu_().add_(upper.T)


def gram_update_(C: Tensor, X: Tensor, alpha: float = 1.0, *, rows: bool = False) -> None:
    """C += α·XᵀX (``rows=True``: α·XXᵀ) on any device, X cast to fp64.

    On the BLAS path only the upper triangle is updated (see :func:`finish_gram_`).
    """
    X = X.to(F64)
    if use_blas_syrk(C):
        syrk_update_(C, X, alpha, rows=rows)
    elif rows:
        C.addmm_(X, X.T, alpha=alpha)
    else:
        C.addmm_(X.T, X, alpha=alpha)


def finish_gram_(C: Tensor) -> Tensor:
    """Symmetrise C after :func:`gram_update_` calls (a no-op off the BLAS path)."""
    return mirror_upper_(C) if use_blas_syrk(C) else C
