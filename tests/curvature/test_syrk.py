"""The BLAS syrk Gram kernels against plain fp64 matrix products."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit.curvature.solvers.base import gram_cols64, gram_rows64, row_sq_norms64
from unlearnkit.curvature.syrk import gram_update_, mirror_upper_

F64 = torch.float64


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 40),
    d=st.integers(1, 30),
    chunk=st.integers(8, 2000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 10_000),
)
def test_gram_cols_and_rows_match_fp64_products(
    m: int, d: int, chunk: int, dtype: torch.dtype, seed: int
) -> None:
    G = torch.randn(m, d, generator=torch.Generator().manual_seed(seed)).to(dtype)
    G64 = G.to(F64)
    A = gram_cols64(G, chunk_bytes=chunk)
    K = gram_rows64(G, chunk_bytes=chunk)
    torch.testing.assert_close(A, G64.T @ G64, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(K, G64 @ G64.T, rtol=1e-12, atol=1e-12)
    assert torch.equal(A, A.T) and torch.equal(K, K.T)  # both triangles filled
    torch.testing.assert_close(row_sq_norms64(G, chunk), (G64 * G64).sum(1), rtol=1e-12, atol=0)


def test_column_selection_and_downdate_into_existing_gram() -> None:
    g = torch.Generator().manual_seed(3)
    G = torch.randn(50, 20, generator=g)
    cols = torch.tensor([1, 4, 5, 9, 19])
    A = gram_cols64(G, cols=cols, chunk_bytes=200)
    Gs = G[:, cols].to(F64)
    torch.testing.assert_close(A, Gs.T @ Gs, rtol=1e-12, atol=1e-12)
    # remove the first 7 rows from a symmetric Gram in place (alpha = −1)
    gram_cols64(G[:7], out=A, alpha=-1.0, cols=cols)
    torch.testing.assert_close(A, Gs[7:].T @ Gs[7:], rtol=1e-10, atol=1e-10)


def test_update_writes_one_triangle_then_mirror_completes_it() -> None:
    X = torch.randn(6, 4, dtype=F64)
    C = torch.zeros(4, 4, dtype=F64)
    gram_update_(C, X)
    full = X.T @ X
    torch.testing.assert_close(torch.triu(C), torch.triu(full))
    assert torch.count_nonzero(torch.tril(C, -1)) == 0
    torch.testing.assert_close(mirror_upper_(C), full)


def test_rectangular_cross_gram_unchanged() -> None:
    G, H = torch.randn(5, 9), torch.randn(3, 9)
    torch.testing.assert_close(gram_rows64(G, H), G.to(F64) @ H.to(F64).T)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gram_on_cuda_matches_cpu() -> None:
    G = torch.randn(40, 30)
    torch.testing.assert_close(gram_cols64(G.cuda()).cpu(), gram_cols64(G), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gram_rows64(G.cuda()).cpu(), gram_rows64(G), rtol=1e-10, atol=1e-10)
