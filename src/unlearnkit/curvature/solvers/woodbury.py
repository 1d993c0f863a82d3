"""Woodbury solver through the m×m Gram matrix (ssse-engine.md §4.2 and §4.4).

With K = GGᵀ (fp64) and the Woodbury identity,

    (λI + GᵀG/N)⁻¹ v = (v − Gᵀz)/λ,   where (NλI + K)·z = G·v.

Cost O(m²·d_b + m³/3), memory m·d_b (G, input dtype) + 2·m² fp64 (K and its factor).
Best when m < d_b (CNN blocks; with a low-rank G the cost is the same for any partition).

Downdates are exact and need no data pass: the retained rows R give the principal
submatrix K_RR, and the new normaliser is just the new diagonal shift N'λ; then refactor.
G and K are shared (read-only) between an inverse and its downdates; ``replace_rows``
copies them and recomputes the changed rows/columns of K (O(k·m·d_b)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES
from unlearnkit.curvature.solvers.base import (
    F64,
    INVERSES,
    SOLVERS,
    BlockInverse,
    Solver,
    as_row_ids,
    check_hyper,
    check_rows_matrix,
    chol_solve,
    cholesky_or_raise,
    gram_rows64,
    keep_mask,
    matmul64,
    positions_of,
    rmatmul64,
)
from unlearnkit.errors import ConfigError


def _factor(K: Tensor, rows: Tensor, damping: float, normalizer: float, name: str) -> Tensor:
    idx = rows.to(K.device)
    S = K.index_select(0, idx).index_select(1, idx)
    S.diagonal().add_(normalizer * damping)
    return cholesky_or_raise(S, name, "NλI + GGᵀ")


@INVERSES.register("woodbury")
class WoodburyInverse(BlockInverse):
    """Keeps G (storage rows = row ids), K = GGᵀ (fp64) and the factor of (NλI + K_RR)."""

    method = "woodbury"

    def __init__(self, *, G: Tensor, K: Tensor, L: Tensor,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES, **common: object) -> None:
        super().__init__(**common)  # type: ignore[arg-type]
        self.G, self.K, self.L = G, K, L
        self.chunk_bytes = chunk_bytes

    @property
    def device(self) -> torch.device:
        return self.K.device

    def _active_G(self) -> Tensor:
        if self.m == self.G.shape[0]:
            return self.G
        return self.G.index_select(0, self.rows.to(self.G.device))

    def _solve64(self, V: Tensor) -> Tensor:
        if self.m == 0:
            return V / self.damping
        G = self._active_G()
        z = chol_solve(matmul64(G, V, self.chunk_bytes), self.L)
        return (V - rmatmul64(G, z, self.chunk_bytes)) / self.damping

    def _with(self, G: Tensor, K: Tensor, rows: Tensor, normalizer: float) -> WoodburyInverse:
        _, normalizer = check_hyper(self.damping, normalizer)
        L = _factor(K, rows, self.damping, normalizer, self.name)
        return WoodburyInverse(G=G, K=K, L=L, chunk_bytes=self.chunk_bytes, name=self.name,
                               d_b=self.d_b, damping=self.damping, normalizer=normalizer,
                               rows=rows, n_built=self.n_built)

    def downdate(self, remove_rows: Tensor, normalizer: float,
                 row_values: Tensor | None = None) -> WoodburyInverse:
        """Drop the rows from K (principal submatrix), refactor with shift N'λ."""
        rows = as_row_ids(remove_rows, self.name)
        pos = positions_of(rows, self.rows, self.n_built, self.name)
        return self._with(self.G, self.K, self.rows[keep_mask(self.m, pos)], normalizer)

    def replace_rows(self, rows: Tensor, new_values: Tensor, normalizer: float,
                     old_values: Tensor | None = None) -> WoodburyInverse:
        """G'[rows] = new rows; K'[rows, :] = G'[rows]·G'ᵀ (and its transpose); refactor."""
        r = as_row_ids(rows, self.name)
        positions_of(r, self.rows, self.n_built, self.name)
        check_rows_matrix(new_values, self.name, self.d_b)
        if new_values.shape[0] != r.numel():
            raise ConfigError(f"block {self.name!r}: got {new_values.shape[0]} new rows for "
                              f"{r.numel()} row ids")
        idx = r.to(self.G.device)
        G = self.G.clone()
        G[idx] = new_values.detach().to(device=G.device, dtype=G.dtype)
        C = gram_rows64(G.index_select(0, idx), G, self.chunk_bytes)  # (k, m_storage)
        K = self.K.clone()
        K[idx, :] = C
        K[:, idx] = C.T
        return self._with(G, K, self.rows.clone(), normalizer)

    def memory_bytes(self) -> int:
        return (self.G.numel() * self.G.element_size() + (self.K.numel() + self.L.numel()) * 8
                + self.rows.numel() * 8)

    def _tensors(self) -> dict[str, Tensor]:
        return {"G": self.G, "K": self.K, "L": self.L}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> WoodburyInverse:
        common = cls._common(state)
        return cls(G=state["G"], K=state["K"].to(F64), L=state["L"].to(F64), **common)


@SOLVERS.register("woodbury")
class WoodburySolver(Solver):
    """Gram K = GGᵀ in fp64 (G may stay fp32), Cholesky of NλI + K, Woodbury solve."""

    name = "woodbury"

    def build(self, G: Tensor, damping: float, normalizer: float, *,
              name: str = "block", copy: bool = True) -> WoodburyInverse:
        """``copy=False`` keeps a reference to G (the caller promises not to modify it)."""
        lam, n = check_hyper(damping, normalizer)
        check_rows_matrix(G, name)
        G = G.detach().clone(memory_format=torch.contiguous_format) if copy else G.detach()
        G = G.contiguous()
        K = gram_rows64(G, chunk_bytes=self.chunk_bytes)
        rows = torch.arange(G.shape[0])
        L = _factor(K, rows, lam, n, name)
        return WoodburyInverse(G=G, K=K, L=L, chunk_bytes=self.chunk_bytes, name=name,
                               d_b=G.shape[1], damping=lam, normalizer=n, rows=rows,
                               n_built=G.shape[0])
