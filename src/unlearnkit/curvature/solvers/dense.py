"""Dense solver: form the Fisher with one streaming GEMM, then Cholesky (ssse-engine.md §4.2).

    A = GᵀG  (fp64, accumulated over row chunks),   F = λI + A/N = L·Lᵀ,   F⁻¹V = L⁻ᵀ(L⁻¹V).

Cost O(m·d_b² + d_b³/3), memory 2·d_b² fp64 (A and L). Best when m ≳ d_b (linear heads,
small layer blocks). The unnormalised A is kept so that downdates are exact without a pass
over the data (§4.4, "periodic refactor"): removing rows U gives A' = A − UᵀU and a fresh
Cholesky of λI + A'/N'. This object does not keep G, so the removed rows' gradients must be
passed to ``downdate`` / ``replace_rows``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unlearnkit.curvature.memory import FP64, MemoryEstimate, chunk_bytes_for
from unlearnkit.curvature.solvers.base import (
    F64,
    BlockInverse,
    Solver,
    as_row_ids,
    check_hyper,
    check_rows_matrix,
    chol_solve,
    cholesky_or_raise,
    gram_cols64,
    keep_mask,
    positions_of,
    row_sq_norms64,
)
from unlearnkit.curvature.solvers.registry import register_inverse, register_solver
from unlearnkit.errors import ConfigError, NumericalError, StateMismatchError

#: Relative tolerance when checking passed-in rows against the squared norms kept at build.
ROW_CHECK_RTOL = 1e-4


def _factor(A: Tensor, damping: float, normalizer: float, name: str) -> Tensor:
    F = A / normalizer
    F.diagonal().add_(damping)
    return cholesky_or_raise(F, name, "λI + GᵀG/N")


@register_inverse
class DenseInverse(BlockInverse):
    """F⁻¹ through the Cholesky factor of the dense block Fisher; keeps A = Σ gᵢgᵢᵀ (fp64).

    Also keeps each row's squared norm ‖gᵢ‖² (fp64, NaN when unknown) to check that the rows
    passed to ``downdate`` / ``replace_rows`` are the ones the Fisher was built from.
    """

    method = "dense"

    def __init__(self, *, A: Tensor, L: Tensor, sq_norms: Tensor, **common: object) -> None:
        super().__init__(**common)  # type: ignore[arg-type]
        self.A, self.L, self.sq_norms = A, L, sq_norms

    @property
    def device(self) -> torch.device:
        return self.A.device

    def _solve64(self, V: Tensor) -> Tensor:
        return chol_solve(V, self.L)

    def _with(
        self, A: Tensor, rows: Tensor, normalizer: float, sq_norms: Tensor | None = None
    ) -> DenseInverse:
        _, normalizer = check_hyper(self.damping, normalizer)
        L = _factor(A, self.damping, normalizer, self.name)
        return DenseInverse(
            A=A,
            L=L,
            sq_norms=self.sq_norms if sq_norms is None else sq_norms,
            name=self.name,
            d_b=self.d_b,
            damping=self.damping,
            normalizer=normalizer,
            rows=rows,
            n_built=self.n_built,
        )

    def _check_known(self, rows: Tensor, U: Tensor, what: str) -> None:
        """‖uᵢ‖² must match the stored ‖gᵢ‖² (rows of unknown norm are not checked)."""
        known = self.sq_norms[rows]
        got = (U * U).sum(dim=1).cpu()
        ok = torch.isnan(known) | ((got - known).abs() <= ROW_CHECK_RTOL * known + 1e-30)
        if not bool(ok.all()):
            bad = rows[~ok].tolist()[:10]
            raise StateMismatchError(
                f"block {self.name!r}: the {what} rows' gradients for rows {bad} do not match "
                "the gradients this Fisher was built from (different squared norms); pass the "
                "rows at the same parameters and in the same row order"
            )

    def _values(self, values: Tensor | None, k: int, what: str) -> Tensor:
        if values is None:
            raise ConfigError(
                f"block {self.name!r}: the dense solver does not keep the gradients; pass the "
                f"{what} rows' gradients ({k}, {self.d_b}) (or use solver='woodbury')"
            )
        check_rows_matrix(values, self.name, self.d_b)
        if values.shape[0] != k:
            raise ConfigError(
                f"block {self.name!r}: got {values.shape[0]} {what} rows' gradients for {k} rows"
            )
        return values.to(device=self.device, dtype=F64)

    def downdate(
        self, remove_rows: Tensor, normalizer: float, row_values: Tensor | None = None
    ) -> DenseInverse:
        """A' = A − UᵀU, then Cholesky of λI + A'/N' (exact, no data pass)."""
        rows = as_row_ids(remove_rows, self.name)
        pos = positions_of(rows, self.rows, self.n_built, self.name)
        U = self._values(row_values, rows.numel(), "removed")
        self._check_known(rows, U, "removed")
        A = self.A.clone().addmm_(U.T, U, alpha=-1.0)
        return self._with(A, self.rows[keep_mask(self.m, pos)], normalizer)

    def replace_rows(
        self, rows: Tensor, new_values: Tensor, normalizer: float, old_values: Tensor | None = None
    ) -> DenseInverse:
        """A' = A − UᵀU + WᵀW (U old rows, W new rows), then refactor."""
        r = as_row_ids(rows, self.name)
        positions_of(r, self.rows, self.n_built, self.name)
        U = self._values(old_values, r.numel(), "old")
        self._check_known(r, U, "old")
        W = self._values(new_values, r.numel(), "new")
        A = self.A.clone().addmm_(U.T, U, alpha=-1.0).addmm_(W.T, W)
        sq = self.sq_norms.clone()
        sq[r] = (W * W).sum(dim=1).cpu()
        return self._with(A, self.rows.clone(), normalizer, sq)

    def memory_bytes(self) -> int:
        return (self.A.numel() + self.L.numel() + self.sq_norms.numel() + self.rows.numel()) * 8

    def _tensors(self) -> dict[str, Tensor]:
        return {"A": self.A, "L": self.L, "sq_norms": self.sq_norms}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> DenseInverse:
        common = cls._common(state)
        return cls(
            A=state["A"].to(F64), L=state["L"].to(F64), sq_norms=state["sq_norms"].to(F64), **common
        )


@register_solver
class DenseSolver(Solver):
    """Streaming fp64 syrk A = GᵀG, then Cholesky of λI + A/N (torch.linalg.cholesky_ex)."""

    name = "dense"
    description = "Gram GᵀG + Cholesky; cheapest when m ≳ d_b"
    auto_candidate = True

    @classmethod
    def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
        """Keeps A = GᵀG and the Cholesky factor of λI + A/N (2·d_b² fp64) and the rows'
        squared norms (m fp64, to check rows passed to downdates). Build workspace: the
        shifted matrix (d_b² fp64) and one fp64 chunk of rows."""
        return MemoryEstimate(
            persistent=2 * d_b * d_b * FP64 + m * FP64,
            workspace=d_b * d_b * FP64 + min(m * d_b * FP64, chunk_bytes_for(d_b)),
        )

    @classmethod
    def build_flops(cls, m: int, d_b: int) -> float:
        """m·d_b² + d_b³/3 (syrk + Cholesky)."""
        return m * d_b * d_b + d_b**3 / 3

    def build_columns(
        self,
        G: Tensor,
        cols: slice | Tensor,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
    ) -> DenseInverse:
        """Streams row chunks of G[:, cols] straight into the fp64 Gram (no column copy)."""
        lam, n = check_hyper(damping, normalizer)
        A = gram_cols64(G.detach(), chunk_bytes=self.chunk_bytes, cols=cols)
        return self.from_gram(
            A,
            G.shape[0],
            lam,
            n,
            name=name,
            copy=False,
            row_sq_norms=row_sq_norms64(G.detach(), self.chunk_bytes, cols=cols),
        )

    def build(
        self, G: Tensor, damping: float, normalizer: float, *, name: str = "block"
    ) -> DenseInverse:
        lam, n = check_hyper(damping, normalizer)
        check_rows_matrix(G, name)
        A = gram_cols64(G.detach(), chunk_bytes=self.chunk_bytes)
        return self.from_gram(
            A,
            G.shape[0],
            lam,
            n,
            name=name,
            copy=False,
            row_sq_norms=row_sq_norms64(G.detach(), self.chunk_bytes),
        )

    def from_gram(
        self,
        A: Tensor,
        n_rows: int,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
        copy: bool = True,
        row_sq_norms: Tensor | None = None,
    ) -> DenseInverse:
        """From a precomputed unnormalised Gram A = Σ gᵢgᵢᵀ over ``n_rows`` rows.

        For the linear multi-attribute model A_k = Xᵀdiag(r_k²)X for all k is one batched
        einsum (ssse-engine.md §4.2); the rows are then the samples 0..n_rows−1.
        ``copy=False`` adopts an fp64 A without copying it (the caller must not modify it).
        ``row_sq_norms`` (n_rows,) = ‖gᵢ‖², used to check rows passed to later downdates.
        """
        lam, n = check_hyper(damping, normalizer)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ConfigError(f"block {name!r}: Gram must be square, got {tuple(A.shape)}")
        if not bool(torch.isfinite(A).all()):
            raise NumericalError(f"block {name!r}: the Gram matrix contains NaN or Inf")
        A = A.detach().to(F64)
        A = A.clone() if copy else A
        L = _factor(A, lam, n, name)
        sq = (
            torch.full((int(n_rows),), float("nan"), dtype=F64)
            if row_sq_norms is None
            else row_sq_norms.detach().to(device="cpu", dtype=F64).clone()
        )
        if sq.shape != (int(n_rows),):
            raise ConfigError(f"block {name!r}: row_sq_norms must have shape ({n_rows},)")
        return DenseInverse(
            A=A,
            L=L,
            sq_norms=sq,
            name=name,
            d_b=A.shape[0],
            damping=lam,
            normalizer=n,
            rows=torch.arange(int(n_rows)),
            n_built=int(n_rows),
        )
