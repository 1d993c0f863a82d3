"""Woodbury solver through the m×m Gram matrix (docs/ssse.md).


With K = GGᵀ (fp64), the active rows A and the Woodbury identity,

    (λI + G_AᵀG_A/N)⁻¹ v = (v − G_Aᵀz)/λ,   where (NλI + K_AA)·z = G_A·v.

Cost O(m²·d_b + m³/3), memory m·d_b (G, input dtype) + 2·m² fp64 (K and a factor).
Best when m < d_b (CNN blocks; with a low-rank G the cost is the same for any partition).


Downdates (rows dropped, new normaliser) and row replacements are exact and need no data pass:
:mod:`.woodbury_factor` keeps the factor and solves through it, :mod:`.woodbury_gram` holds the
replaced rows in a patch of K'.
"""

from __future__ import annotations

import torch
from torch import Tensor

from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES, FP64, MemoryEstimate, chunk_bytes_for
from unlearnkit.curvature.solvers.base import (
    F64,
    BlockInverse,
    Solver,
    as_row_ids,
    check_hyper,
    check_rows_matrix,
    gram_rows64,
    keep_mask,
    matmul64,
    positions_of,
    rmatmul64,
    select_columns,
)
from unlearnkit.curvature.solvers.registry import register_inverse, register_solver
from unlearnkit.curvature.solvers.woodbury_factor import KeptFactor, downdate_plan, shifted_factor
from unlearnkit.curvature.solvers.woodbury_gram import PatchedGram, kprime_rows, patch_rows
from unlearnkit.errors import ConfigError, NumericalError


@register_inverse
class WoodburyInverse(PatchedGram, KeptFactor, BlockInverse):
    """Keeps G (storage rows = row ids), K = GGᵀ (fp64, storage rows), a patch of replaced rows
    (ids, G'_P, K'_{P,:}) and the Cholesky factor L of N₀λI + K_BB for the basis rows B at the
    values they had then (N₀ = ``base_normalizer``); ``stale``: active rows whose value changed
    since (bordered onto the factor, see the module docstring)."""

    method = "woodbury"

    def __init__(
        self,
        *,
        G: Tensor,
        K: Tensor,
        L: Tensor,
        basis: Tensor | None = None,
        base_normalizer: float | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
        previous: WoodburyInverse | None = None,
        dropped: tuple[Tensor, Tensor, Tensor] | None = None,
        patch: tuple[Tensor, Tensor, Tensor] | None = None,
        stale: Tensor | None = None,
        **common: object,
    ) -> None:
        """``previous``: an inverse on the same factor whose dropped rows are a subset of this
        one's; its [M⁻¹]_{:,S} columns are reused (only the newly dropped rows cost solves).
        ``dropped``: (S, W, C) as saved by ``state_dict`` (basis positions of the dropped rows,
        [M⁻¹]_{:,S}, [M⁻¹]_SS), so that a loaded inverse solves bit for bit as the saved one.
        ``patch``: (ids, rows (p, d_b) in G's dtype, K' rows (p, m_storage) fp64) of the
        replaced rows; ``stale``: ids of the active rows not at their factorised value."""
        super().__init__(**common)  # type: ignore[arg-type]
        self.G, self.K, self.L = G, K, L
        self.basis = self.rows if basis is None else basis
        self.base_normalizer = (
            self.normalizer
            if base_normalizer is None
            else check_hyper(self.damping, base_normalizer)[1]
        )
        self.chunk_bytes = chunk_bytes
        dev = K.device
        if patch is None:
            patch = (
                torch.empty(0, dtype=torch.int64),
                G.new_empty(0, G.shape[1]),
                K.new_empty(0, K.shape[1]),
            )
        pid, pG, pK = patch
        if (
            pid.ndim != 1
            or pG.shape != (pid.numel(), G.shape[1])
            or pK.shape != (pid.numel(), K.shape[1])
        ):
            raise ConfigError(f"block {self.name!r}: replaced-row patch has inconsistent shapes")
        self.patch_ids = pid.to(torch.int64).cpu()
        self.patch_G = pG.to(device=G.device, dtype=G.dtype)
        self.patch_K = pK.to(device=dev, dtype=F64)
        self.stale = (
            torch.empty(0, dtype=torch.int64) if stale is None else stale.to(torch.int64).cpu()
        )
        self._direct: Tensor | None = None
        self._D: Tensor | None = None
        self._derive(previous, dropped)

    # ------------------------------------------------------------------ applying
    @property
    def device(self) -> torch.device:
        return self.K.device

    def _solve64(self, V: Tensor) -> Tensor:
        if self.m == 0:
            return V / self.damping
        gv = matmul64(self.G, V, self.chunk_bytes)  # all storage rows: no copy of G
        p = self.patch_ids.to(gv.device)
        if p.numel():
            gv.index_copy_(0, p, matmul64(self.patch_G, V, self.chunk_bytes))
        if self._all:
            zf = self._inner_solve(gv)
        else:
            idx = self.rows.to(gv.device)
            z = self._inner_solve(gv.index_select(0, idx))
            zf = torch.zeros_like(gv).index_copy_(0, idx, z)
        if p.numel():
            zp = zf.index_select(0, p)
            zf.index_fill_(0, p, 0.0)
            back = rmatmul64(self.G, zf, self.chunk_bytes) + rmatmul64(
                self.patch_G, zp, self.chunk_bytes
            )
        else:
            back = rmatmul64(self.G, zf, self.chunk_bytes)
        return (V - back) / self.damping

    # ------------------------------------------------------------------ updating
    def _with(
        self,
        *,
        rows: Tensor,
        normalizer: float,
        fresh: bool,
        patch: tuple[Tensor, Tensor, Tensor] | None = None,
        stale: Tensor | None = None,
    ) -> WoodburyInverse:
        """A new inverse on the same G/K: ``fresh`` refactors N λI + K'_RR, otherwise the
        kept factor is reused (raises NumericalError when a piece is not PD)."""
        patch = (self.patch_ids, self.patch_G, self.patch_K) if patch is None else patch
        common = dict(
            G=self.G,
            K=self.K,
            chunk_bytes=self.chunk_bytes,
            name=self.name,
            d_b=self.d_b,
            damping=self.damping,
            normalizer=normalizer,
            rows=rows,
            n_built=self.n_built,
            patch=patch,
        )
        if fresh:
            idx = rows.to(self.K.device)
            sub = kprime_rows(self.K, patch[0], patch[2], rows).index_select(1, idx)
            L = shifted_factor(sub, None, self.damping, normalizer, self.name)
            return WoodburyInverse(L=L, **common)  # type: ignore[arg-type]
        return WoodburyInverse(
            L=self.L,
            basis=self.basis,
            base_normalizer=self.base_normalizer,
            previous=self,
            stale=stale,
            **common,
        )  # type: ignore[arg-type]

    def _plan(self, rows: Tensor, stale: Tensor, normalizer: float, how: str | None) -> str:
        if how is not None:
            return how
        n0 = self.base_normalizer
        kappa = max(n0, normalizer) / min(n0, normalizer)
        n_clean = rows.numel() - stale.numel()
        n_dropped = self.basis.numel() - n_clean
        how, _, _ = downdate_plan(
            self.basis.numel(),
            n_dropped,
            rows.numel(),
            self.n_built,
            kappa,
            n_dropped - self._S.numel(),
            stale.numel(),
        )
        return how

    def downdate(
        self,
        remove_rows: Tensor,
        normalizer: float,
        row_values: Tensor | None = None,
        *,
        how: str | None = None,
    ) -> WoodburyInverse:
        """Drop the rows from K (principal submatrix) with the new shift N'λ: incremental on the
        kept factor or a refactor, whichever :func:`downdate_plan` finds cheaper (``how``:
        "incremental" or "refactor" forces one; both are exact)."""
        if how not in (None, "incremental", "refactor"):
            raise ConfigError(f"how must be 'incremental' or 'refactor', got {how!r}")
        _, normalizer = check_hyper(self.damping, normalizer)
        rows = as_row_ids(remove_rows, self.name)
        pos = positions_of(rows, self.rows, self.n_built, self.name)
        kept = self.rows[keep_mask(self.m, pos)]
        stale = self.stale[~torch.isin(self.stale, rows)]
        how = self._plan(kept, stale, normalizer, how)
        if how == "incremental" and kept.numel():
            try:
                return self._with(rows=kept, normalizer=normalizer, fresh=False, stale=stale)
            except NumericalError:
                pass  # XᵀX or Σ numerically singular: refactor instead (exact too)
        return self._with(rows=kept, normalizer=normalizer, fresh=True)

    def replace_rows(
        self,
        rows: Tensor,
        new_values: Tensor,
        normalizer: float,
        old_values: Tensor | None = None,
        *,
        how: str | None = None,
    ) -> WoodburyInverse:
        """G'[rows] = new rows, kept in the patch (G itself is not copied); K'[rows, :] =
        G'[rows]·G'ᵀ (O(k·m·d_b)); then the kept factor bordered on the replaced rows (Schur
        form + PCG for the shift) or a refactor, whichever :func:`downdate_plan` finds cheaper
        (``how`` forces one; both exact)."""
        if how not in (None, "incremental", "refactor"):
            raise ConfigError(f"how must be 'incremental' or 'refactor', got {how!r}")
        _, normalizer = check_hyper(self.damping, normalizer)
        r = as_row_ids(rows, self.name)
        positions_of(r, self.rows, self.n_built, self.name)
        check_rows_matrix(new_values, self.name, self.d_b)
        if new_values.shape[0] != r.numel():
            raise ConfigError(
                f"block {self.name!r}: got {new_values.shape[0]} new rows for {r.numel()} row ids"
            )
        new = new_values.detach().to(device=self.G.device, dtype=self.G.dtype)
        patch = patch_rows(
            self.G,
            (self.patch_ids, self.patch_G, self.patch_K),
            self.n_built,
            r,
            new,
            self.chunk_bytes,
        )
        stale = torch.cat([self.stale, r[~torch.isin(r, self.stale)]])
        how = self._plan(self.rows, stale, normalizer, how)
        if how == "incremental":
            try:
                return self._with(
                    rows=self.rows, normalizer=normalizer, fresh=False, patch=patch, stale=stale
                )
            except NumericalError:
                pass  # Σ or XᵀX numerically singular: refactor instead (exact too)
        return self._with(rows=self.rows.clone(), normalizer=normalizer, fresh=True, patch=patch)

    # ------------------------------------------------------------------ accounting
    def memory_bytes(self) -> int:
        extra = sum(
            t.numel() * 8 for t in (self._W, self._C, self._Lc, self._Z, self._Ls) if t is not None
        )
        basis = 0 if self.basis is self.rows else self.basis.numel() * 8
        patch = (
            self.patch_G.numel() * self.patch_G.element_size()
            + self.patch_K.numel() * 8
            + (self.patch_ids.numel() + self.stale.numel()) * 8
        )
        return (
            self.G.numel() * self.G.element_size()
            + (self.K.numel() + self.L.numel()) * 8
            + self.rows.numel() * 8
            + basis
            + extra
            + patch
        )

    def _tensors(self) -> dict[str, Tensor]:
        out = {
            "G": self.G,
            "K": self.K,
            "L": self.L,
            "basis": self.basis.clone(),
            "base_normalizer": torch.tensor(self.base_normalizer, dtype=F64),
        }
        if self._W is not None and self._C is not None:
            out.update(dropped=self._S.clone(), W=self._W, C=self._C)
        if self.patch_ids.numel():
            out.update(patch_ids=self.patch_ids.clone(), patch_G=self.patch_G, patch_K=self.patch_K)
        if self.stale.numel():
            out.update(stale=self.stale.clone())
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> WoodburyInverse:
        """Also reads states saved before the incremental downdates (no basis: L is the
        factor of the active rows at the current normaliser) and before the row patch (G and
        K hold the replaced rows themselves)."""
        common = cls._common(state)
        basis = state.get("basis")
        n0 = state.get("base_normalizer")
        saved = None
        if "dropped" in state:
            saved = (state["dropped"].to(torch.int64), state["W"], state["C"])
        patch = None
        if "patch_ids" in state:
            patch = (state["patch_ids"].to(torch.int64).cpu(), state["patch_G"], state["patch_K"])
        stale = state.get("stale")
        return cls(
            G=state["G"],
            K=state["K"].to(F64),
            L=state["L"].to(F64),
            basis=None if basis is None else basis.to(torch.int64).cpu(),
            base_normalizer=None if n0 is None else float(n0),
            dropped=saved,
            patch=patch,
            stale=stale,
            **common,
        )


@register_solver
class WoodburySolver(Solver):
    """Gram K = GGᵀ in fp64 (G may stay fp32), Cholesky of NλI + K, Woodbury solve."""

    name = "woodbury"
    description = "m×m Gram GGᵀ + Cholesky; cheapest when m < d_b, keeps G"
    auto_candidate = True

    @classmethod
    def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
        """Keeps G (m·d_b, its dtype), K = GGᵀ and the Cholesky factor of NλI + K (2·m² fp64).
        Build workspace: the shifted matrix (m² fp64) and one fp64 column chunk."""
        return MemoryEstimate(
            persistent=m * d_b * itemsize + 2 * m * m * FP64,
            workspace=m * m * FP64 + min(m * d_b * FP64, chunk_bytes_for(m)),
        )

    @classmethod
    def build_flops(cls, m: int, d_b: int) -> float:
        """m²·d_b + m³/3 (Gram + Cholesky)."""
        return m * m * d_b + m**3 / 3

    def build_columns(
        self,
        G: Tensor,
        cols: slice | Tensor,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
    ) -> WoodburyInverse:
        """Keeps G[:, cols]: a copy of a slice's view; an index's selection is already one."""
        owned = not isinstance(cols, slice)
        block = select_columns(G, cols)
        return self.build(block, damping, normalizer, name=name, copy=not owned)

    def build(
        self,
        G: Tensor,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
        copy: bool = True,
    ) -> WoodburyInverse:
        """``copy=False`` keeps a reference to G (the caller promises not to modify it)."""
        lam, n = check_hyper(damping, normalizer)
        check_rows_matrix(G, name)
        G = G.detach().clone(memory_format=torch.contiguous_format) if copy else G.detach()
        G = G.contiguous()
        K = gram_rows64(G, chunk_bytes=self.chunk_bytes)
        rows = torch.arange(G.shape[0])
        L = shifted_factor(K, rows, lam, n, name)
        return WoodburyInverse(
            G=G,
            K=K,
            L=L,
            chunk_bytes=self.chunk_bytes,
            name=name,
            d_b=G.shape[1],
            damping=lam,
            normalizer=n,
            rows=rows,
            n_built=G.shape[0],
        )
