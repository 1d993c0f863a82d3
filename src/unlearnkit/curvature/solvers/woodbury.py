"""Woodbury solver through the m×m Gram matrix (ssse-engine.md §4.2 and §4.4).

With K = GGᵀ (fp64), the active rows A and the Woodbury identity,

    (λI + G_AᵀG_A/N)⁻¹ v = (v − G_Aᵀz)/λ,   where (NλI + K_AA)·z = G_A·v.

Cost O(m²·d_b + m³/3), memory m·d_b (G, input dtype) + 2·m² fp64 (K and a factor).
Best when m < d_b (CNN blocks; with a low-rank G the cost is the same for any partition).

Downdates are exact and need no data pass: the retained rows R give the principal submatrix
K_RR, and the new normaliser N' is just the new diagonal shift N'λ. Two exact ways to solve
with N'λI + K_RR; each downdate takes the cheaper (:func:`downdate_plan`):

* **refactor**: a Cholesky factor of N'λI + K_RR, O(|R|³/3) per request;
* **incremental**: keep the factor L of M = N₀λI + K_BB from the last factorisation (basis
  rows B ⊇ R, normaliser N₀). For S = B∖R the principal submatrix of an inverse is

      (M_RR)⁻¹ = [M⁻¹]_RR − [M⁻¹]_RS·([M⁻¹]_SS)⁻¹·[M⁻¹]_SR,

  with X = L⁻¹E_S, [M⁻¹]_SS = XᵀX and [M⁻¹]_{:,S} = L⁻ᵀX: an exact P = (N₀λI + K_RR)⁻¹ in
  O(|B|²·|S|). It differs from the wanted (N'λI + K_RR)⁻¹ only by the shift, so conjugate
  gradients preconditioned by P converge in a few O(m²) iterations (κ(PA) ≤ N₀/N', see
  :mod:`.pcg`): e.g. 6 iterations for 100 of 3 500 rows, to a relative residual of 1e-15.
  In a sequence of downdates on the same factor only the newly dropped rows cost triangular
  solves (the columns W = [M⁻¹]_{:,S} and C = [M⁻¹]_SS are extended, and saved with the
  state). A solve whose PCG breaks down falls back to a fresh factor (exact either way).

``replace_rows`` (a group-averaged gradient losing a member) copies G and K, recomputes the
changed rows/columns of K (O(k·m·d_b)) and refactors. G and K are shared (read-only) between
an inverse and its downdates.
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
from unlearnkit.curvature.solvers.pcg import pcg, pcg_iterations
from unlearnkit.errors import ConfigError, NumericalError

#: Cost of one BLAS-2 multiply-add (triangular solve or matrix-vector product with one
#: right-hand side, memory-bound) in BLAS-3 multiply-adds (Cholesky, GEMM), measured on the
#: 2-core benchmark CPU at m = 3 500: ~3 GFLOP/s vs ~30-50 GFLOP/s. Used only to choose
#: between two exact paths.
BLAS2_WEIGHT = 10.0


def _factor(K: Tensor, rows: Tensor, damping: float, normalizer: float, name: str) -> Tensor:
    idx = rows.to(K.device)
    S = K.index_select(0, idx).index_select(1, idx)
    S.diagonal().add_(normalizer * damping)
    return cholesky_or_raise(S, name, "NλI + GGᵀ")


def downdate_plan(m_basis: int, n_dropped: int, m_active: int, m_storage: int,
                  kappa: float, n_new: int | None = None) -> tuple[str, float, float]:
    """("incremental" | "refactor", cost of each) for a downdate, in multiply-adds.

    incremental: for the ``n_new`` rows dropped since the previous downdate on the same factor
    (default: all ``n_dropped``), X = L⁻¹E and W = L⁻ᵀX (two triangular solves, m_B² per
    column each) and XᵀX; the Cholesky of [M⁻¹]_SS (|S|³/3); then per PCG iteration two
    triangular solves with L, a product with K and with W (BLAS-2). refactor: copying K_RR and
    its Cholesky, m_A³/3.
    """
    s, b = n_dropped, m_basis
    new = s if n_new is None else n_new
    iters = pcg_iterations(kappa) + 1  # + the final residual check
    incremental = (2.0 * b * b * new + new * new * b + s**3 / 3
                   + BLAS2_WEIGHT * iters * (2.0 * b * b + m_storage * m_storage + 2.0 * b * s))
    refactor = m_active**3 / 3 + BLAS2_WEIGHT * (2.0 * m_active * m_active)
    return ("incremental" if incremental < refactor else "refactor"), incremental, refactor


@INVERSES.register("woodbury")
class WoodburyInverse(BlockInverse):
    """Keeps G (storage rows = row ids), K = GGᵀ (fp64, storage rows) and the Cholesky factor L
    of N₀λI + K_BB for the basis rows B ⊇ the active rows (N₀ = ``base_normalizer``)."""

    method = "woodbury"

    def __init__(self, *, G: Tensor, K: Tensor, L: Tensor, basis: Tensor | None = None,
                 base_normalizer: float | None = None,
                 chunk_bytes: int = DEFAULT_CHUNK_BYTES,
                 previous: WoodburyInverse | None = None,
                 dropped: tuple[Tensor, Tensor, Tensor] | None = None,
                 **common: object) -> None:
        """``previous``: an inverse on the same factor whose dropped rows are a subset of this
        one's; its [M⁻¹]_{:,S} columns are reused (only the newly dropped rows cost solves).
        ``dropped``: (S, W, C) as saved by ``state_dict`` (basis positions of the dropped rows,
        [M⁻¹]_{:,S}, [M⁻¹]_SS), so that a loaded inverse solves bit for bit as the saved one."""
        super().__init__(**common)  # type: ignore[arg-type]
        self.G, self.K, self.L = G, K, L
        self.basis = self.rows if basis is None else basis
        self.base_normalizer = (self.normalizer if base_normalizer is None
                                else check_hyper(self.damping, base_normalizer)[1])
        self.chunk_bytes = chunk_bytes
        self._direct: Tensor | None = None
        self._derive(previous, dropped)

    # ------------------------------------------------------------------ derived factors
    def _derive(self, previous: WoodburyInverse | None = None,
                saved: tuple[Tensor, Tensor, Tensor] | None = None) -> None:
        """Positions of the active rows in the basis and, when rows were dropped since the
        factorisation, the pieces of P = (N₀λI + K_RR)⁻¹: W = [M⁻¹]_{:,S} = L⁻ᵀL⁻¹E_S and the
        Cholesky factor of C = [M⁻¹]_SS (columns of ``previous`` reused)."""
        dev = self.K.device
        m_b = self.basis.numel()
        lookup = torch.full((self.n_built,), -1, dtype=torch.int64)
        lookup[self.basis] = torch.arange(m_b)
        act = lookup[self.rows]
        if bool((act < 0).any()):
            raise ConfigError(f"block {self.name!r}: active rows outside the factor's basis")
        dropped = torch.ones(m_b, dtype=torch.bool)
        dropped[act] = False
        self._same = self.m == m_b  # active rows == basis (in order: both increasing)
        self._all = self.m == self.n_built  # active rows == storage rows 0..m−1
        self._act = act.to(dev)
        self._exact = self._same and self.base_normalizer == self.normalizer
        self._S = torch.nonzero(dropped).reshape(-1).to(dev)
        self._W = self._C = self._Lc = None
        if not self._S.numel():
            return
        if saved is not None:
            S, W, C = (t.to(dev) for t in saved)
            k = self._S.numel()
            if (S.dtype != torch.int64 or S.shape != (k,) or W.shape != (m_b, k)
                    or C.shape != (k, k) or not torch.equal(S.sort().values, self._S)):
                raise ConfigError(f"block {self.name!r}: saved downdate factors do not match "
                                  "the rows removed from the basis")
            self._S, self._W, self._C = S, W.to(F64), C.to(F64)
            self._Lc = cholesky_or_raise(self._C, self.name, "[(N₀λI + K)⁻¹]_SS")
            return
        old = torch.empty(0, dtype=torch.int64, device=dev)
        if (previous is not None and previous._W is not None and previous.L is self.L
                and previous.basis is self.basis and bool(dropped[previous._S.cpu()].all())):
            old = previous._S
            dropped[old.cpu()] = False
        new = torch.nonzero(dropped).reshape(-1).to(dev)  # dropped since ``previous``
        E = torch.zeros(m_b, new.numel(), dtype=F64, device=dev)
        E[new, torch.arange(new.numel(), device=dev)] = 1.0
        X = torch.linalg.solve_triangular(self.L, E, upper=False)
        W = torch.linalg.solve_triangular(self.L.mT, X, upper=True)
        C = X.T @ X  # [M⁻¹]_{new,new} as a Gram: symmetric positive semi-definite
        if old.numel():
            assert previous is not None and previous._W is not None and previous._C is not None
            cross = previous._W.index_select(0, new)  # [M⁻¹]_{new,old}
            C = torch.cat([torch.cat([previous._C, cross.T], dim=1),
                           torch.cat([cross, C], dim=1)])
            W = torch.cat([previous._W, W], dim=1)
        self._S = torch.cat([old, new])
        self._W, self._C = W, C
        self._Lc = cholesky_or_raise(C, self.name, "[(N₀λI + K)⁻¹]_SS")

    def _precond(self, b: Tensor) -> Tensor:
        """(N₀λI + K_RR)⁻¹b for b on the active rows (exact; the principal-submatrix identity)."""
        if self._same:
            return chol_solve(b, self.L)
        bb = b.new_zeros(self.basis.numel(), b.shape[1])
        bb[self._act] = b
        y = chol_solve(bb, self.L)
        y -= self._W @ chol_solve(y[self._S], self._Lc)  # type: ignore[operator,arg-type]
        return y[self._act]

    def _matvec(self, z: Tensor) -> Tensor:
        """(NλI + K_AA)z for z on the active rows (K over the storage rows, no copy)."""
        shift = self.normalizer * self.damping
        if self._all:
            return self.K @ z + shift * z
        idx = self.rows.to(z.device)
        zf = z.new_zeros(self.n_built, z.shape[1]).index_copy_(0, idx, z)
        return (self.K @ zf).index_select(0, idx) + shift * z

    def _inner_solve(self, b: Tensor) -> Tensor:
        """(NλI + K_AA)⁻¹b: the factor directly, or PCG preconditioned by it."""
        if self._exact:
            return chol_solve(b, self.L)
        if self._direct is None:
            res = pcg(self._matvec, self._precond, b, anorm=self._anorm())
            if res.converged:
                return res.x
            self._direct = _factor(self.K, self.rows, self.damping, self.normalizer, self.name)
        return chol_solve(b, self._direct)

    def _anorm(self) -> float:
        """trace(K_AA) + NλI ≥ ‖NλI + K_AA‖₂ (for PCG's backward-error check)."""
        diag = self.K.diagonal()
        tr = diag.sum() if self._all else diag.index_select(0, self.rows.to(diag.device)).sum()
        return float(tr) + self.normalizer * self.damping

    # ------------------------------------------------------------------ applying
    @property
    def device(self) -> torch.device:
        return self.K.device

    def _solve64(self, V: Tensor) -> Tensor:
        if self.m == 0:
            return V / self.damping
        gv = matmul64(self.G, V, self.chunk_bytes)  # all storage rows: no copy of G
        if self._all:
            return (V - rmatmul64(self.G, self._inner_solve(gv), self.chunk_bytes)) / self.damping
        idx = self.rows.to(gv.device)
        z = self._inner_solve(gv.index_select(0, idx))
        zf = torch.zeros_like(gv).index_copy_(0, idx, z)
        return (V - rmatmul64(self.G, zf, self.chunk_bytes)) / self.damping

    # ------------------------------------------------------------------ updating
    def _refactored(self, G: Tensor, K: Tensor, rows: Tensor, normalizer: float
                    ) -> WoodburyInverse:
        L = _factor(K, rows, self.damping, normalizer, self.name)
        return WoodburyInverse(G=G, K=K, L=L, chunk_bytes=self.chunk_bytes, name=self.name,
                               d_b=self.d_b, damping=self.damping, normalizer=normalizer,
                               rows=rows, n_built=self.n_built)

    def downdate(self, remove_rows: Tensor, normalizer: float,
                 row_values: Tensor | None = None, *, how: str | None = None
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
        n0 = self.base_normalizer
        kappa = max(n0, normalizer) / min(n0, normalizer)
        if how is None:
            n_dropped = self.basis.numel() - kept.numel()
            how, _, _ = downdate_plan(self.basis.numel(), n_dropped, kept.numel(),
                                      self.n_built, kappa, n_dropped - self._S.numel())
        if how == "incremental" and kept.numel():
            try:
                return WoodburyInverse(G=self.G, K=self.K, L=self.L, basis=self.basis,
                                       base_normalizer=n0, chunk_bytes=self.chunk_bytes,
                                       name=self.name, d_b=self.d_b, damping=self.damping,
                                       normalizer=normalizer, rows=kept,
                                       n_built=self.n_built, previous=self)
            except NumericalError:
                pass  # XᵀX numerically singular: refactor instead (exact too)
        return self._refactored(self.G, self.K, kept, normalizer)

    def replace_rows(self, rows: Tensor, new_values: Tensor, normalizer: float,
                     old_values: Tensor | None = None) -> WoodburyInverse:
        """G'[rows] = new rows; K'[rows, :] = G'[rows]·G'ᵀ (and its transpose); refactor."""
        _, normalizer = check_hyper(self.damping, normalizer)
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
        return self._refactored(G, K, self.rows.clone(), normalizer)

    def sharing(self, G: Tensor) -> WoodburyInverse:
        """The same inverse holding ``G`` (e.g. a view of the caller's rows matrix) instead of
        its own copy, to keep one copy of the rows in memory; G must equal the stored rows."""
        if tuple(G.shape) != tuple(self.G.shape) or G.dtype != self.G.dtype \
                or not torch.equal(G, self.G):
            raise ConfigError(f"block {self.name!r}: the rows to share differ from the stored G")
        return WoodburyInverse(G=G, K=self.K, L=self.L, basis=self.basis,
                               base_normalizer=self.base_normalizer,
                               chunk_bytes=self.chunk_bytes, name=self.name, d_b=self.d_b,
                               damping=self.damping, normalizer=self.normalizer,
                               rows=self.rows, n_built=self.n_built)

    # ------------------------------------------------------------------ accounting
    def memory_bytes(self) -> int:
        extra = sum(t.numel() * 8 for t in (self._W, self._C, self._Lc) if t is not None)
        basis = 0 if self.basis is self.rows else self.basis.numel() * 8
        return (self.G.numel() * self.G.element_size() + (self.K.numel() + self.L.numel()) * 8
                + self.rows.numel() * 8 + basis + extra)

    def _tensors(self) -> dict[str, Tensor]:
        out = {"G": self.G, "K": self.K, "L": self.L, "basis": self.basis.clone(),
               "base_normalizer": torch.tensor(self.base_normalizer, dtype=F64)}
        if self._W is not None and self._C is not None:
            out.update(dropped=self._S.clone(), W=self._W, C=self._C)
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> WoodburyInverse:
        """Also reads states saved before the incremental downdates (no basis: L is the
        factor of the active rows at the current normaliser)."""
        common = cls._common(state)
        basis = state.get("basis")
        n0 = state.get("base_normalizer")
        saved = None
        if "dropped" in state:
            saved = (state["dropped"].to(torch.int64), state["W"], state["C"])
        return cls(G=state["G"], K=state["K"].to(F64), L=state["L"].to(F64),
                   basis=None if basis is None else basis.to(torch.int64).cpu(),
                   base_normalizer=None if n0 is None else float(n0), dropped=saved,
                   **common)


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
