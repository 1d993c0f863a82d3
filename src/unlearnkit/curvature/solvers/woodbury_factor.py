"""The kept Cholesky factor of a Woodbury block and the exact preconditioner it gives.

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

Replaced rows (``replace_rows``) are bordered onto the same factor in Schur form; see
:mod:`.woodbury_gram` for the patched Gram K' and :mod:`.woodbury` for the inverse itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from unlearnkit.curvature.solvers.base import F64, chol_solve, cholesky_or_raise
from unlearnkit.curvature.solvers.pcg import pcg, pcg_iterations
from unlearnkit.errors import ConfigError

#: Cost of one BLAS-2 multiply-add (triangular solve or matrix-vector product with one
#: right-hand side, memory-bound) in BLAS-3 multiply-adds (Cholesky, GEMM), measured on the
#: 2-core benchmark CPU at m = 3 500: ~3 GFLOP/s vs ~30-50 GFLOP/s. Used only to choose
#: between two exact paths.
BLAS2_WEIGHT = 10.0


def shifted_factor(
    K: Tensor, rows: Tensor | None, damping: float, normalizer: float, name: str
) -> Tensor:
    """Cholesky factor of NλI + K_RR (``rows`` None: K is K_RR already, shifted in place)."""
    if rows is None:
        S = K
    else:
        idx = rows.to(K.device)
        S = K.index_select(0, idx).index_select(1, idx)
    S.diagonal().add_(normalizer * damping)
    return cholesky_or_raise(S, name, "NλI + GGᵀ")


def downdate_plan(
    m_basis: int,
    n_dropped: int,
    m_active: int,
    m_storage: int,
    kappa: float,
    n_new: int | None = None,
    n_stale: int = 0,
) -> tuple[str, float, float]:
    """("incremental" | "refactor", cost of each) for a downdate, in multiply-adds.

    incremental: for the ``n_new`` rows dropped since the previous downdate on the same factor
    (default: all ``n_dropped``), X = L⁻¹E and W = L⁻ᵀX (two triangular solves, m_B² per
    column each) and XᵀX; the Cholesky of [M⁻¹]_SS (|S|³/3); then per PCG iteration two
    triangular solves with L, a product with K and with W (BLAS-2). refactor: copying K_RR and
    its Cholesky, m_A³/3. ``n_stale`` = q replaced rows bordered onto the factor (Schur form):
    Z = A_TT⁻¹A_TQ (two triangular solves with q columns, 2·m_B²·q, and 2·m_B·|S|·q), the
    Cholesky of Σ (q³/3), and 2·m_A·q more per PCG iteration.
    """
    s, b, q = n_dropped, m_basis, n_stale
    new = s if n_new is None else n_new
    iters = pcg_iterations(kappa) + 1  # + the final residual check
    incremental = (
        2.0 * b * b * new
        + new * new * b
        + s**3 / 3
        + BLAS2_WEIGHT * iters * (2.0 * b * b + m_storage * m_storage + 2.0 * b * s)
    )
    if q:
        incremental += (
            2.0 * b * b * q + 2.0 * b * s * q + q**3 / 3 + BLAS2_WEIGHT * iters * 2.0 * m_active * q
        )
    refactor = m_active**3 / 3 + BLAS2_WEIGHT * (2.0 * m_active * m_active)
    return ("incremental" if incremental < refactor else "refactor"), incremental, refactor


class KeptFactor:
    """Mixin of :class:`~unlearnkit.curvature.solvers.woodbury.WoodburyInverse`: the pieces
    derived from the kept factor L of N₀λI + K_BB (basis rows B) for the current active rows,
    and the solve with N λI + K'_AA through them (directly, or by PCG for a new shift)."""

    K: Tensor
    L: Tensor
    basis: Tensor
    base_normalizer: float
    stale: Tensor
    rows: Tensor
    n_built: int
    m: int
    name: str
    damping: float
    normalizer: float
    _direct: Tensor | None
    _S: Tensor
    _W: Tensor | None
    _C: Tensor | None
    _Lc: Tensor | None
    _Z: Tensor | None
    _Ls: Tensor | None
    # provided by PatchedGram (products with the patched Gram K')
    _kprime_rows: Callable[[Tensor], Tensor]
    _kprime_sub: Callable[[Tensor], Tensor]
    _matvec: Callable[[Tensor], Tensor]
    _anorm: Callable[[], float]

    # ------------------------------------------------------------------ derived factors
    def _derive(
        self,
        previous: KeptFactor | None = None,
        saved: tuple[Tensor, Tensor, Tensor] | None = None,
    ) -> None:
        """Positions of the clean active rows T in the basis and, when rows were dropped since
        the factorisation, the pieces of P = (N₀λI + K_TT)⁻¹: W = [M⁻¹]_{:,S} = L⁻ᵀL⁻¹E_S and
        the Cholesky factor of C = [M⁻¹]_SS (columns of ``previous`` reused); with stale rows Q,
        Z = P·A_TQ and the Cholesky factor of Σ = A_QQ − A_QT·Z."""
        dev = self.K.device
        m_b = self.basis.numel()
        is_stale = torch.zeros(self.n_built, dtype=torch.bool)
        is_stale[self.stale] = True
        if self.stale.numel() and bool((~torch.isin(self.stale, self.rows)).any()):
            raise ConfigError(f"block {self.name!r}: replaced rows outside the active rows")
        tmask = ~is_stale[self.rows]
        clean = self.rows[tmask]
        lookup = torch.full((self.n_built,), -1, dtype=torch.int64)
        lookup[self.basis] = torch.arange(m_b)
        act = lookup[clean]
        if bool((act < 0).any()):
            raise ConfigError(f"block {self.name!r}: active rows outside the factor's basis")
        dropped = torch.ones(m_b, dtype=torch.bool)
        dropped[act] = False
        self._same = clean.numel() == m_b  # clean rows == basis (in order: both increasing)
        self._all = self.m == self.n_built  # active rows == storage rows 0..m−1
        self._act = act.to(dev)
        self._tpos = torch.nonzero(tmask).reshape(-1).to(dev)
        self._qpos = torch.nonzero(~tmask).reshape(-1).to(dev)
        self._qids = self.rows[~tmask]
        self._exact = (
            self._same and not self._qids.numel() and self.base_normalizer == self.normalizer
        )
        self._S = torch.nonzero(dropped).reshape(-1).to(dev)
        self._W = self._C = self._Lc = None
        self._Z = self._Ls = None
        self._derive_dropped(previous, saved, dropped)
        if self._qids.numel():
            A_qall = self._kprime_rows(self._qids)  # K'[Q, :]
            A_tq = A_qall.index_select(1, clean.to(dev)).T.contiguous()
            Z = self._precond_clean(A_tq)
            sigma = A_qall.index_select(1, self._qids.to(dev)) - A_tq.T @ Z
            sigma = (sigma + sigma.T) / 2
            sigma.diagonal().add_(self.base_normalizer * self.damping)
            self._Z = Z
            self._Ls = cholesky_or_raise(sigma, self.name, "the Schur complement of K'")

    def _derive_dropped(
        self,
        previous: KeptFactor | None,
        saved: tuple[Tensor, Tensor, Tensor] | None,
        dropped: Tensor,
    ) -> None:
        dev = self.K.device
        m_b = self.basis.numel()
        if not self._S.numel():
            return
        if saved is not None:
            S, W, C = (t.to(dev) for t in saved)
            k = self._S.numel()
            if (
                S.dtype != torch.int64
                or S.shape != (k,)
                or W.shape != (m_b, k)
                or C.shape != (k, k)
                or not torch.equal(S.sort().values, self._S)
            ):
                raise ConfigError(
                    f"block {self.name!r}: saved downdate factors do not match "
                    "the rows removed from the basis"
                )
            self._S, self._W, self._C = S, W.to(F64), C.to(F64)
            self._Lc = cholesky_or_raise(self._C, self.name, "[(N₀λI + K)⁻¹]_SS")
            return
        old = torch.empty(0, dtype=torch.int64, device=dev)
        if (
            previous is not None
            and previous._W is not None
            and previous.L is self.L
            and previous.basis is self.basis
            and bool(dropped[previous._S.cpu()].all())
        ):
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
            C = torch.cat([torch.cat([previous._C, cross.T], dim=1), torch.cat([cross, C], dim=1)])
            W = torch.cat([previous._W, W], dim=1)
        self._S = torch.cat([old, new])
        self._W, self._C = W, C
        self._Lc = cholesky_or_raise(C, self.name, "[(N₀λI + K)⁻¹]_SS")

    def _precond_clean(self, b: Tensor) -> Tensor:
        """(N₀λI + K_TT)⁻¹b for b on the clean rows T (the principal-submatrix identity)."""
        if self._same:
            return chol_solve(b, self.L)
        bb = b.new_zeros(self.basis.numel(), b.shape[1])
        bb[self._act] = b
        y = chol_solve(bb, self.L)
        y -= self._W @ chol_solve(y[self._S], self._Lc)  # type: ignore[operator,arg-type]
        return y[self._act]

    def _precond(self, b: Tensor) -> Tensor:
        """(N₀λI + K'_AA)⁻¹b for b on the active rows (exact; bordered on the stale rows)."""
        if self._Z is None:
            return self._precond_clean(b)
        assert self._Ls is not None
        bt, bq = b.index_select(0, self._tpos), b.index_select(0, self._qpos)
        xq = chol_solve(bq - self._Z.T @ bt, self._Ls)
        xt = self._precond_clean(bt) - self._Z @ xq
        return torch.empty_like(b).index_copy_(0, self._tpos, xt).index_copy_(0, self._qpos, xq)

    def _inner_solve(self, b: Tensor) -> Tensor:
        """(NλI + K'_AA)⁻¹b: the factor directly, or PCG preconditioned by it."""
        if self._exact:
            return chol_solve(b, self.L)
        if self._direct is None:
            res = pcg(self._matvec, self._precond, b, anorm=self._anorm())
            if res.converged:
                return res.x
            self._direct = shifted_factor(
                self._kprime_sub(self.rows), None, self.damping, self.normalizer, self.name
            )
        return chol_solve(b, self._direct)
