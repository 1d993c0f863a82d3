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

``replace_rows`` (a group-averaged gradient losing a member) changes k rows Q: K' = K + E with
E nonzero only on the rows/columns Q. G and K stay shared (read-only) between an inverse and
its updates; the replaced rows live in a small patch (ids P, G'_P (p, d_b), K'_{P,:} (p, m)),
read by the solve, the Gram-row computations and the products with K' (O(m·p) extra). The
factor is reused through the bordered (Schur) form on the stale rows Q (rows whose value
differs from the one factorised), with T = active ∖ Q and shift N₀λ:

    A₀ = [[A_TT, A_TQ], [A_QT, A_QQ]],   Z = A_TT⁻¹A_TQ,   Σ = A_QQ − A_QT·Z  (k×k, SPD),
    A₀⁻¹b = [y_T − Z·x_Q ; x_Q],   y_T = A_TT⁻¹b_T,   x_Q = Σ⁻¹(b_Q − Zᵀb_T),

where A_TT⁻¹ is the principal-submatrix identity above (the old values of Q join the dropped
set S). Σ is the Schur complement of the SPD A₀, i.e. the block-Cholesky step that a
factorisation of A₀ itself takes for the k new rows (Golub & Van Loan, *Matrix Computations*,
§4.2), and SPD: unlike a 2k×2k Woodbury capacitance for the indefinite E (ill-conditioned
when a row barely changes), nothing cancels that a refactor would not cancel too. Cost O(m²·k +
k³) instead of O(m³/3); the shift change then goes through PCG as for downdates. Over a
sequence Q accumulates (Z is rebuilt for all of Q, S reuses its columns) until
:func:`downdate_plan` finds a refactor cheaper; a Σ that is not numerically PD falls back to
the refactor.
"""

from __future__ import annotations

import copy

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


def _factor(K: Tensor, rows: Tensor | None, damping: float, normalizer: float, name: str) -> Tensor:
    """Cholesky factor of NλI + K_RR (``rows`` None: K is K_RR already, shifted in place)."""
    if rows is None:
        S = K
    else:
        idx = rows.to(K.device)
        S = K.index_select(0, idx).index_select(1, idx)
    S.diagonal().add_(normalizer * damping)
    return cholesky_or_raise(S, name, "NλI + GGᵀ")


def kprime_rows(K: Tensor, patch_ids: Tensor, patch_K: Tensor, ids: Tensor) -> Tensor:
    """K'[ids, :] for K' = K with the rows and columns ``patch_ids`` taken from ``patch_K``
    (K'[P, :], fp64): a new (len(ids), m) matrix."""
    dev = K.device
    out = K.index_select(0, ids.to(dev))
    if not patch_ids.numel():
        return out
    ppos = torch.full((K.shape[0],), -1, dtype=torch.int64)
    ppos[patch_ids] = torch.arange(patch_ids.numel())
    pos = ppos[ids]
    hit = torch.nonzero(pos >= 0).reshape(-1)
    if hit.numel():
        out[hit.to(dev)] = patch_K.index_select(0, pos[hit].to(dev))
    out.index_copy_(1, patch_ids.to(dev), patch_K.index_select(1, ids.to(dev)).T)
    return out


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


@INVERSES.register("woodbury")
class WoodburyInverse(BlockInverse):
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

    # ------------------------------------------------------------------ the patched K'
    def _kprime_rows(self, ids: Tensor) -> Tensor:
        """K'[ids, :] (fp64, all storage columns)."""
        return kprime_rows(self.K, self.patch_ids, self.patch_K, ids)

    def _kprime_sub(self, rows: Tensor) -> Tensor:
        """K'_RR as a new fp64 matrix."""
        return self._kprime_rows(rows).index_select(1, rows.to(self.K.device))

    def _kmul(self, zf: Tensor) -> Tensor:
        """K'·zf over all storage rows: K·zf + E·zf with E = e_P D + Dᵀe_Pᵀ − e_P D_{:,P} e_Pᵀ,
        D = K'_{P,:} − K_{P,:} (exact: each entry of E counted once)."""
        out = self.K @ zf
        if not self.patch_ids.numel():
            return out
        p = self.patch_ids.to(zf.device)
        if self._D is None:  # K'_{P,:} − K_{P,:}, once per object (p×m, like the patch)
            self._D = self.patch_K - self.K.index_select(0, p)
        D = self._D
        zp = zf.index_select(0, p)
        out.index_add_(0, p, D @ zf - D.index_select(1, p) @ zp)
        out += D.T @ zp
        return out

    def _kdiag(self) -> Tensor:
        diag = self.K.diagonal().clone()
        if self.patch_ids.numel():
            p = self.patch_ids.to(diag.device)
            diag[p] = self.patch_K.gather(1, p[:, None]).reshape(-1)
        return diag

    # ------------------------------------------------------------------ derived factors
    def _derive(
        self,
        previous: WoodburyInverse | None = None,
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
        previous: WoodburyInverse | None,
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

    def _matvec(self, z: Tensor) -> Tensor:
        """(NλI + K'_AA)z for z on the active rows (K over the storage rows, no copy)."""
        shift = self.normalizer * self.damping
        if self._all:
            return self._kmul(z) + shift * z
        idx = self.rows.to(z.device)
        zf = z.new_zeros(self.n_built, z.shape[1]).index_copy_(0, idx, z)
        return self._kmul(zf).index_select(0, idx) + shift * z

    def _inner_solve(self, b: Tensor) -> Tensor:
        """(NλI + K'_AA)⁻¹b: the factor directly, or PCG preconditioned by it."""
        if self._exact:
            return chol_solve(b, self.L)
        if self._direct is None:
            res = pcg(self._matvec, self._precond, b, anorm=self._anorm())
            if res.converged:
                return res.x
            self._direct = _factor(
                self._kprime_sub(self.rows), None, self.damping, self.normalizer, self.name
            )
        return chol_solve(b, self._direct)

    def _anorm(self) -> float:
        """trace(K'_AA) + NλI ≥ ‖NλI + K'_AA‖₂ (for PCG's backward-error check)."""
        diag = self._kdiag()
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
            L = _factor(sub, None, self.damping, normalizer, self.name)
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
        dev = self.K.device
        new = new_values.detach().to(device=self.G.device, dtype=self.G.dtype)
        # patch ids: the old ones, then the newly replaced ones
        fresh_ids = r[~torch.isin(r, self.patch_ids)]
        pid = torch.cat([self.patch_ids, fresh_ids])
        ppos = torch.full((self.n_built,), -1, dtype=torch.int64)
        ppos[pid] = torch.arange(pid.numel())
        pG = torch.cat([self.patch_G, self.G.new_zeros(fresh_ids.numel(), self.d_b)])
        pG[ppos[r].to(pG.device)] = new
        # K'[r, :] = new · G'ᵀ: base rows, then the patched columns from the patch rows
        Kr = gram_rows64(new, self.G, self.chunk_bytes)
        Brp = gram_rows64(new, pG, self.chunk_bytes)  # (k, p): K'[r, P]
        rpos = ppos[r].to(dev)
        Brr = Brp.index_select(1, rpos)
        Brp.index_copy_(1, rpos, (Brr + Brr.T) / 2)  # K'[r, r] exactly symmetric
        Kr.index_copy_(1, pid.to(dev), Brp)
        pK = torch.cat([self.patch_K, self.patch_K.new_zeros(fresh_ids.numel(), self.n_built)])
        pK.index_copy_(1, r.to(dev), Brp.T)  # K'[P, r] (rows r overwritten next)
        pK.index_copy_(0, rpos, Kr)
        patch = (pid, pG, pK)
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

    def effective_rows(self) -> Tensor:
        """G' (the stored rows with the patch applied), as a new tensor (for tests/debugging)."""
        out = self.G.clone()
        if self.patch_ids.numel():
            out[self.patch_ids.to(out.device)] = self.patch_G
        return out

    def sharing(self, G: Tensor) -> WoodburyInverse:
        """The same inverse holding ``G`` (e.g. a view of the caller's rows matrix) instead of
        its own copy, to keep one copy of the rows in memory; G must equal the stored rows
        outside the patch and the patch's rows on it (the stored G's patched rows are never
        read, so the patch stays)."""
        ok = (
            tuple(G.shape) == tuple(self.G.shape)
            and G.dtype == self.G.dtype
            and G.device == self.G.device
        )
        if ok:
            p = self.patch_ids.to(G.device)
            keep = torch.ones(G.shape[0], dtype=torch.bool, device=G.device)
            keep[p] = False
            ok = torch.equal(G[keep], self.G[keep]) and torch.equal(G[p], self.patch_G)
        if not ok:
            raise ConfigError(f"block {self.name!r}: the rows to share differ from the stored G")
        out = copy.copy(self)  # the derived factors are shared (read-only), not recomputed
        out.G = G
        return out

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


@SOLVERS.register("woodbury")
class WoodburySolver(Solver):
    """Gram K = GGᵀ in fp64 (G may stay fp32), Cholesky of NλI + K, Woodbury solve."""

    name = "woodbury"

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
        L = _factor(K, rows, lam, n, name)
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
