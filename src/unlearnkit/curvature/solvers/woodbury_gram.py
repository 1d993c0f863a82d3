"""The patched Gram matrix K' of a Woodbury block (rows replaced without copying G or K).

``replace_rows`` (a group-averaged gradient losing a member) changes k rows Q: K' = K + E with
E nonzero only on the rows/columns Q. G and K stay shared (read-only) between an inverse and
its updates; the replaced rows live in a small patch (ids P, G'_P (p, d_b), K'_{P,:} (p, m)),
read by the solve, the Gram-row computations and the products with K' (O(m·p) extra). The
factor is reused through the bordered (Schur) form on the stale rows Q (rows whose value
differs from the one factorised), with T = active ∖ Q and shift N₀λ:

    A₀ = [[A_TT, A_TQ], [A_QT, A_QQ]],   Z = A_TT⁻¹A_TQ,   Σ = A_QQ − A_QT·Z  (k×k, SPD),
    A₀⁻¹b = [y_T − Z·x_Q ; x_Q],   y_T = A_TT⁻¹b_T,   x_Q = Σ⁻¹(b_Q − Zᵀb_T),

where A_TT⁻¹ is the principal-submatrix identity of :mod:`.woodbury_factor` (the old values of Q join the dropped
set S). Σ is the Schur complement of the SPD A₀, i.e. the block-Cholesky step that a
factorisation of A₀ itself takes for the k new rows (Golub & Van Loan, *Matrix Computations*,
§4.2), and SPD: unlike a 2k×2k Woodbury capacitance for the indefinite E (ill-conditioned
when a row barely changes), nothing cancels that a refactor would not cancel too. Cost O(m²·k +
k³) instead of O(m³/3); the shift change then goes through PCG as for downdates. Over a
sequence Q accumulates (Z is rebuilt for all of Q, S reuses its columns) until
:func:`~.woodbury_factor.downdate_plan` finds a refactor cheaper; a Σ that is not numerically PD falls back to
the refactor.
"""

from __future__ import annotations

import copy
from typing import Self

import torch
from torch import Tensor

from unlearnkit.curvature.solvers.base import gram_rows64
from unlearnkit.errors import ConfigError


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


def patch_rows(
    G: Tensor,
    patch: tuple[Tensor, Tensor, Tensor],
    n_built: int,
    r: Tensor,
    new: Tensor,
    chunk_bytes: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The patch (ids P, G'_P, K'_{P,:}) after setting the rows ``r`` of G' to ``new``:
    K'[r, :] = new·G'ᵀ (O(k·m·d_b)), with K'[r, r] made exactly symmetric."""
    patch_ids, patch_G, patch_K = patch
    dev = patch_K.device
    # patch ids: the old ones, then the newly replaced ones
    fresh_ids = r[~torch.isin(r, patch_ids)]
    pid = torch.cat([patch_ids, fresh_ids])
    ppos = torch.full((n_built,), -1, dtype=torch.int64)
    ppos[pid] = torch.arange(pid.numel())
    pG = torch.cat([patch_G, G.new_zeros(fresh_ids.numel(), G.shape[1])])
    pG[ppos[r].to(pG.device)] = new
    # K'[r, :] = new · G'ᵀ: base rows, then the patched columns from the patch rows
    Kr = gram_rows64(new, G, chunk_bytes)
    Brp = gram_rows64(new, pG, chunk_bytes)  # (k, p): K'[r, P]
    rpos = ppos[r].to(dev)
    Brr = Brp.index_select(1, rpos)
    Brp.index_copy_(1, rpos, (Brr + Brr.T) / 2)  # K'[r, r] exactly symmetric
    Kr.index_copy_(1, pid.to(dev), Brp)
    pK = torch.cat([patch_K, patch_K.new_zeros(fresh_ids.numel(), n_built)])
    pK.index_copy_(1, r.to(dev), Brp.T)  # K'[P, r] (rows r overwritten next)
    pK.index_copy_(0, rpos, Kr)
    return pid, pG, pK


class PatchedGram:
    """Mixin of :class:`~unlearnkit.curvature.solvers.woodbury.WoodburyInverse`: products with
    K' = K with the rows/columns P taken from the patch, restricted to the active rows."""

    name: str
    G: Tensor
    K: Tensor
    patch_ids: Tensor
    patch_G: Tensor
    patch_K: Tensor
    rows: Tensor
    n_built: int
    damping: float
    normalizer: float
    _D: Tensor | None
    _all: bool

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

    def _matvec(self, z: Tensor) -> Tensor:
        """(NλI + K'_AA)z for z on the active rows (K over the storage rows, no copy)."""
        shift = self.normalizer * self.damping
        if self._all:
            return self._kmul(z) + shift * z
        idx = self.rows.to(z.device)
        zf = z.new_zeros(self.n_built, z.shape[1]).index_copy_(0, idx, z)
        return self._kmul(zf).index_select(0, idx) + shift * z

    def _anorm(self) -> float:
        """trace(K'_AA) + NλI ≥ ‖NλI + K'_AA‖₂ (for PCG's backward-error check)."""
        diag = self._kdiag()
        tr = diag.sum() if self._all else diag.index_select(0, self.rows.to(diag.device)).sum()
        return float(tr) + self.normalizer * self.damping

    # ------------------------------------------------------------------ the patched G'
    def effective_rows(self) -> Tensor:
        """G' (the stored rows with the patch applied), as a new tensor (for tests/debugging)."""
        out = self.G.clone()
        if self.patch_ids.numel():
            out[self.patch_ids.to(out.device)] = self.patch_G
        return out

    def sharing(self, G: Tensor) -> Self:
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
