"""Sequential Sherman–Morrison: the SSSE paper's recursion (Peste et al. 2021, eq. 3).

    F₀⁻¹ = I/λ,   F_i⁻¹ = F_{i−1}⁻¹ − (F_{i−1}⁻¹gᵢ)(F_{i−1}⁻¹gᵢ)ᵀ / (N + gᵢᵀF_{i−1}⁻¹gᵢ),

i = 1..m; F_m⁻¹ = (λI + GᵀG/N)⁻¹ exactly (the paper's denominator n + gᵀF⁻¹g is N = n).
Each step is one GEMV and one rank-1 update (BLAS-2) on the dense d_b×d_b inverse, in
sequence: O(m·d_b²) work and memory-bandwidth bound, so it is 1–2 orders of magnitude slower
than ``dense``/``woodbury`` (ssse-engine.md §3). It is the paper-faithful reference.

Downdates. With an unchanged normaliser, removing g is the same formula with the sign flipped:
F'⁻¹ = F⁻¹ + (F⁻¹g)(F⁻¹g)ᵀ / (N − gᵀF⁻¹g). Numerical caveat: N − gᵀF⁻¹g is a difference of
nearly equal numbers when g dominates F (few rows, small λ), so rounding errors grow by up to
cond(F); a non-positive denominator raises NumericalError. When the normaliser changes (N → N'),
every term's weight changes and no rank-1 update applies, so the inverse is rebuilt from the
kept rows — this is why this object keeps G.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unlearnkit.curvature.memory import FP64, MemoryEstimate
from unlearnkit.curvature.solvers.base import (
    F64,
    BlockInverse,
    Solver,
    as_row_ids,
    check_hyper,
    check_rows_matrix,
    keep_mask,
    positions_of,
)
from unlearnkit.curvature.solvers.registry import register_inverse, register_solver
from unlearnkit.errors import ConfigError, NumericalError


def sm_add(Finv: Tensor, rows: Tensor, normalizer: float) -> None:
    """In place: add rows gᵢ to F⁻¹ (fp64) by eq. 3, one rank-1 update per row."""
    u = torch.empty(Finv.shape[0], dtype=F64, device=Finv.device)
    for row in rows:
        g = row.to(F64)
        torch.mv(Finv, g, out=u)
        # scale u by 1/sqrt(N + gᵀu) so the update is Finv −= w·wᵀ without a host sync
        u.div_(torch.dot(g, u).add_(normalizer).sqrt_())
        Finv.addr_(u, u, alpha=-1.0)


def sm_remove(Finv: Tensor, rows: Tensor, normalizer: float, name: str) -> None:
    """In place: remove rows gᵢ: F⁻¹ += (F⁻¹g)(F⁻¹g)ᵀ / (N − gᵀF⁻¹g)."""
    for row in rows:
        g = row.to(F64)
        u = Finv @ g
        denom = normalizer - float(torch.dot(g, u))
        if not denom > 0:
            raise NumericalError(
                f"block {name!r}: Sherman–Morrison downdate lost positive definiteness "
                f"(N − gᵀF⁻¹g = {denom:.3g}); rebuild the inverse or use solver='woodbury'"
            )
        Finv.addr_(u, u, alpha=1.0 / denom)


def _check_finite(Finv: Tensor, name: str) -> Tensor:
    if not bool(torch.isfinite(Finv).all()):
        raise NumericalError(f"block {name!r}: Sherman–Morrison recursion produced NaN/Inf")
    return Finv


def _recursion(G: Tensor, d_b: int, damping: float, normalizer: float, name: str) -> Tensor:
    Finv = torch.eye(d_b, dtype=F64, device=G.device).div_(damping)
    sm_add(Finv, G, normalizer)
    return _check_finite(Finv, name)


@register_inverse
class ShermanMorrisonInverse(BlockInverse):
    """Dense fp64 F⁻¹ from the recursion, plus G (rows = ids) for exact rebuilds."""

    method = "sherman_morrison"

    def __init__(self, *, Finv: Tensor, G: Tensor, **common: object) -> None:
        super().__init__(**common)  # type: ignore[arg-type]
        self.Finv, self.G = Finv, G

    @property
    def device(self) -> torch.device:
        return self.Finv.device

    def _solve64(self, V: Tensor) -> Tensor:
        return self.Finv @ V

    def _new(
        self, Finv: Tensor, G: Tensor, rows: Tensor, normalizer: float
    ) -> ShermanMorrisonInverse:
        return ShermanMorrisonInverse(
            Finv=Finv,
            G=G,
            name=self.name,
            d_b=self.d_b,
            damping=self.damping,
            normalizer=normalizer,
            rows=rows,
            n_built=self.n_built,
        )

    def _rebuild(self, G: Tensor, rows: Tensor, normalizer: float) -> ShermanMorrisonInverse:
        kept = G.index_select(0, rows.to(G.device))
        return self._new(
            _recursion(kept, self.d_b, self.damping, normalizer, self.name), G, rows, normalizer
        )

    def downdate(
        self, remove_rows: Tensor, normalizer: float, row_values: Tensor | None = None
    ) -> ShermanMorrisonInverse:
        """Minus-sign recursion when N is unchanged, otherwise a rebuild from the kept rows."""
        _, normalizer = check_hyper(self.damping, normalizer)
        rows = as_row_ids(remove_rows, self.name)
        pos = positions_of(rows, self.rows, self.n_built, self.name)
        kept = self.rows[keep_mask(self.m, pos)]
        if normalizer != self.normalizer:
            return self._rebuild(self.G, kept, normalizer)
        Finv = self.Finv.clone()
        sm_remove(Finv, self.G.index_select(0, rows.to(self.G.device)), normalizer, self.name)
        return self._new(_check_finite(Finv, self.name), self.G, kept, normalizer)

    def replace_rows(
        self, rows: Tensor, new_values: Tensor, normalizer: float, old_values: Tensor | None = None
    ) -> ShermanMorrisonInverse:
        """Add the new rows then remove the old ones (same N), otherwise rebuild."""
        _, normalizer = check_hyper(self.damping, normalizer)
        r = as_row_ids(rows, self.name)
        positions_of(r, self.rows, self.n_built, self.name)
        check_rows_matrix(new_values, self.name, self.d_b)
        if new_values.shape[0] != r.numel():
            raise ConfigError(
                f"block {self.name!r}: got {new_values.shape[0]} new rows for {r.numel()} row ids"
            )
        idx = r.to(self.G.device)
        G = self.G.clone()
        G[idx] = new_values.detach().to(device=G.device, dtype=G.dtype)
        if normalizer != self.normalizer:
            return self._rebuild(G, self.rows.clone(), normalizer)
        Finv = self.Finv.clone()
        sm_add(Finv, G.index_select(0, idx), normalizer)
        sm_remove(Finv, self.G.index_select(0, idx), normalizer, self.name)
        return self._new(_check_finite(Finv, self.name), G, self.rows.clone(), normalizer)

    def memory_bytes(self) -> int:
        return (
            self.Finv.numel() * 8 + self.G.numel() * self.G.element_size() + self.rows.numel() * 8
        )

    def _tensors(self) -> dict[str, Tensor]:
        return {"Finv": self.Finv, "G": self.G}

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> ShermanMorrisonInverse:
        common = cls._common(state)
        return cls(Finv=state["Finv"].to(F64), G=state["G"], **common)


@register_solver
class ShermanMorrisonSolver(Solver):
    """The paper's eq. 3 recursion; the reference implementation (slow by design, so ``auto``
    never picks it: its BLAS-2 steps run in sequence, 1–2 orders of magnitude slower than
    ``dense``/``woodbury`` for the same flops)."""

    name = "sherman_morrison"
    description = "the SSSE paper's eq. 3 recursion (reference; slow)"
    auto_candidate = False

    @classmethod
    def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
        """Keeps the dense inverse (d_b² fp64) and G (m·d_b, its dtype; for exact rebuilds).
        Workspace: three fp64 vectors."""
        return MemoryEstimate(
            persistent=d_b * d_b * FP64 + m * d_b * itemsize, workspace=3 * d_b * FP64
        )

    @classmethod
    def build_flops(cls, m: int, d_b: int) -> float:
        """2·m·d_b² (one GEMV and one rank-1 update per row)."""
        return 2.0 * m * d_b * d_b

    def build(
        self, G: Tensor, damping: float, normalizer: float, *, name: str = "block"
    ) -> ShermanMorrisonInverse:
        lam, n = check_hyper(damping, normalizer)
        check_rows_matrix(G, name)
        G = G.detach().clone()
        Finv = _recursion(G, G.shape[1], lam, n, name)
        return ShermanMorrisonInverse(
            Finv=Finv,
            G=G,
            name=name,
            d_b=G.shape[1],
            damping=lam,
            normalizer=n,
            rows=torch.arange(G.shape[0]),
            n_built=G.shape[0],
        )
