"""Interface shared by the exact solvers of the dampened empirical-Fisher inverse.

For one block of d_b parameters and m gradient rows G (m, d_b) (per-sample or
group-averaged gradients), the solvers represent

    F = λ·I + (1/N)·GᵀG,

λ > 0 the damping and N > 0 the normaliser. SSSE (Peste et al. 2021, eq. 2–3) uses N = n,
the number of training samples, also with grouped gradients (then m = n / group size).
Every solver is exact: they differ only in cost (ssse-engine.md §4.2).

Each :class:`Solver` states its own facts (name, description, memory estimate, build flops,
whether ``auto`` may pick it); :mod:`.registry` collects them.

Rows keep stable ids: a freshly built inverse has rows 0..m−1; ``downdate`` and
``replace_rows`` refer to those ids, and every update returns a NEW object and leaves the
original unchanged. Factors are kept in fp64 (ssse-engine.md §3: accumulate Grams in fp64).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES, MemoryEstimate
from unlearnkit.curvature.syrk import finish_gram_, gram_update_
from unlearnkit.errors import AlreadyErasedError, ConfigError, NumericalError, UnknownIdsError

F64 = torch.float64


# --------------------------------------------------------------------------- validation


def check_hyper(damping: float, normalizer: float) -> tuple[float, float]:
    """Validate λ > 0 and N > 0 (both finite); return them as Python floats."""
    lam, n = float(damping), float(normalizer)
    if not (math.isfinite(lam) and lam > 0):
        raise ConfigError(f"damping must be a finite number > 0, got {damping!r}")
    if not (math.isfinite(n) and n > 0):
        raise ConfigError(f"normalizer must be a finite number > 0, got {normalizer!r}")
    return lam, n


def check_rows_matrix(G: Tensor, name: str, d_b: int | None = None) -> None:
    """G must be a finite floating (m, d_b) matrix; NaN/Inf -> NumericalError naming the block."""
    if not isinstance(G, Tensor) or G.ndim != 2:
        raise ConfigError(f"block {name!r}: gradients must be a 2-D tensor (m, d_b)")
    if not G.is_floating_point():
        raise ConfigError(f"block {name!r}: gradients must be floating point, got {G.dtype}")
    if d_b is not None and G.shape[1] != d_b:
        raise ConfigError(f"block {name!r}: rows have {G.shape[1]} columns, expected {d_b}")
    if not bool(torch.isfinite(G).all()):
        raise NumericalError(f"block {name!r}: gradients contain NaN or Inf")


def as_row_ids(rows: Tensor | list[int], name: str) -> Tensor:
    """Rows to remove/replace as a 1-D int64 tensor without duplicates."""
    r = torch.as_tensor(rows)
    if r.ndim != 1 or (r.numel() and r.is_floating_point()):
        raise ConfigError(f"block {name!r}: rows must be a 1-D integer tensor")
    r = r.to(torch.int64).cpu()
    if torch.unique(r).numel() != r.numel():
        raise ConfigError(f"block {name!r}: rows contain duplicates")
    return r


def positions_of(rows: Tensor, active: Tensor, n_built: int, name: str) -> Tensor:
    """Positions of ``rows`` (stable ids) inside ``active``; unknown/removed ids raise."""
    lookup = torch.full((max(n_built, 1),), -1, dtype=torch.int64)
    lookup[active] = torch.arange(active.numel())
    bad = (rows < 0) | (rows >= n_built)
    if bool(bad.any()):
        raise UnknownIdsError(
            f"block {name!r}: rows {rows[bad].tolist()[:10]} do not exist "
            f"(the block was built from {n_built} rows)"
        )
    pos = lookup[rows]
    gone = pos < 0
    if bool(gone.any()):
        raise AlreadyErasedError(
            f"block {name!r}: rows {rows[gone].tolist()[:10]} were already removed"
        )
    return pos


def keep_mask(n: int, drop_positions: Tensor) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[drop_positions] = False
    return mask


# --------------------------------------------------------------------------- fp64 kernels


def _lines_per_chunk(elements_per_line: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (8 * max(1, elements_per_line)))


def gram_cols64(
    G: Tensor,
    out: Tensor | None = None,
    alpha: float = 1.0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    cols: Tensor | slice | None = None,
) -> Tensor:
    """A (+)= α·G[:, cols]ᵀG[:, cols] accumulated in fp64, streaming over row chunks.

    A symmetric rank-k update (BLAS ``dsyrk`` on CPU: half a GEMM's flops, see
    :mod:`unlearnkit.curvature.syrk`). Only one fp64 chunk of rows is materialised at a time,
    also when ``cols`` selects a block. ``out`` must be symmetric on entry.
    """
    sel = slice(None) if cols is None else cols
    d = G[:0, sel].shape[1]
    A = torch.zeros(d, d, dtype=F64, device=G.device) if out is None else out
    step = _lines_per_chunk(d, chunk_bytes)
    for s in range(0, G.shape[0], step):
        gram_update_(A, G[s : s + step][:, sel], alpha)
    return finish_gram_(A)


def row_sq_norms64(
    G: Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES, cols: Tensor | slice | None = None
) -> Tensor:
    """‖G[i, cols]‖² for every row, accumulated in fp64 (``vector_norm(dtype=fp64)``)."""
    sel = slice(None) if cols is None else cols
    out = torch.empty(G.shape[0], dtype=F64, device=G.device)
    step = _lines_per_chunk(G[:0, sel].shape[1], chunk_bytes)
    for s in range(0, G.shape[0], step):
        out[s : s + step] = torch.linalg.vector_norm(G[s : s + step][:, sel], dim=1, dtype=F64)
    return out.square_()


def gram_rows64(
    G: Tensor, H: Tensor | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Tensor:
    """K = G·Hᵀ (H defaults to G) accumulated in fp64, streaming over column chunks.

    With H = G this is a symmetric rank-k update (BLAS ``dsyrk`` on CPU, half the flops).
    """
    if H is None:
        K = torch.zeros(G.shape[0], G.shape[0], dtype=F64, device=G.device)
        step = _lines_per_chunk(G.shape[0], chunk_bytes)
        for s in range(0, G.shape[1], step):
            gram_update_(K, G[:, s : s + step], rows=True)
        return finish_gram_(K)
    K = torch.zeros(G.shape[0], H.shape[0], dtype=F64, device=G.device)
    step = _lines_per_chunk(G.shape[0] + H.shape[0], chunk_bytes)
    for s in range(0, G.shape[1], step):
        K.addmm_(G[:, s : s + step].to(F64), H[:, s : s + step].to(F64).T)
    return K


def matmul64(G: Tensor, V: Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """G·V in fp64 (V already fp64, shape (d_b, r)), streaming over row chunks of G."""
    out = torch.empty(G.shape[0], V.shape[1], dtype=F64, device=V.device)
    step = _lines_per_chunk(G.shape[1], chunk_bytes)
    for s in range(0, G.shape[0], step):
        torch.mm(G[s : s + step].to(F64), V, out=out[s : s + step])
    return out


def rmatmul64(G: Tensor, Z: Tensor, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> Tensor:
    """Gᵀ·Z in fp64 (Z fp64, shape (m, r)), streaming over row chunks of G."""
    out = torch.zeros(G.shape[1], Z.shape[1], dtype=F64, device=Z.device)
    step = _lines_per_chunk(G.shape[1], chunk_bytes)
    for s in range(0, G.shape[0], step):
        out.addmm_(G[s : s + step].to(F64).T, Z[s : s + step])
    return out


def chol_solve(B: Tensor, L: Tensor) -> Tensor:
    """X = (L·Lᵀ)⁻¹B by two triangular solves.

    Same result as ``torch.cholesky_solve(B, L)``, which measured ~100× slower on CPU for a
    single right-hand side in torch 2.13 (20 ms vs 0.2 ms at n = 1024).
    """
    y = torch.linalg.solve_triangular(L, B, upper=False)
    return torch.linalg.solve_triangular(L.mT, y, upper=True)


def cholesky_or_raise(M: Tensor, name: str, what: str) -> Tensor:
    """Lower Cholesky factor of the fp64 matrix M; not PD or non-finite -> NumericalError."""
    if not bool(torch.isfinite(M).all()):
        raise NumericalError(f"block {name!r}: {what} contains NaN or Inf")
    L, info = torch.linalg.cholesky_ex(M)
    if int(info) != 0:
        raise NumericalError(
            f"block {name!r}: {what} is not positive definite (leading minor {int(info)} of "
            f"{M.shape[0]} fails); increase the damping or check the gradients"
        )
    return L


# --------------------------------------------------------------------------- interfaces


class BlockInverse(ABC):
    """F⁻¹ for one block; immutable (updates return new objects).

    Attributes:
        name: the block's name, used in error messages.
        d_b: block size (columns of G).
        damping: λ.
        normalizer: N.
        rows: stable ids of the rows currently in the Fisher (int64, CPU).
        n_built: number of rows the block was first built from (ids are < n_built).
    """

    method: ClassVar[str]

    def __init__(
        self, *, name: str, d_b: int, damping: float, normalizer: float, rows: Tensor, n_built: int
    ) -> None:
        self.name = name
        self.d_b = int(d_b)
        self.damping, self.normalizer = check_hyper(damping, normalizer)
        self.rows = rows
        self.n_built = int(n_built)

    @property
    def m(self) -> int:
        """Number of rows currently in the Fisher."""
        return int(self.rows.numel())

    # -- applying
    def solve(self, V: Tensor) -> Tensor:
        """F⁻¹V for V of shape (d_b,) or (d_b, r); computed in fp64, returned in V's dtype."""
        if not isinstance(V, Tensor) or V.ndim not in (1, 2) or V.shape[0] != self.d_b:
            shape = tuple(V.shape) if isinstance(V, Tensor) else type(V).__name__
            raise ConfigError(
                f"block {self.name!r}: expected a vector ({self.d_b},) or a "
                f"matrix ({self.d_b}, r), got {shape}"
            )
        if not V.is_floating_point():
            raise ConfigError(f"block {self.name!r}: V must be floating point, got {V.dtype}")
        V2 = (V.unsqueeze(1) if V.ndim == 1 else V).to(device=self.device, dtype=F64)
        out = self._solve64(V2).to(device=V.device, dtype=V.dtype)
        return out.squeeze(1) if V.ndim == 1 else out

    @property
    @abstractmethod
    def device(self) -> torch.device: ...

    @abstractmethod
    def _solve64(self, V: Tensor) -> Tensor:
        """F⁻¹V for fp64 V of shape (d_b, r) on this block's device."""

    def to_dense(self) -> Tensor:
        """F⁻¹ as a dense fp64 (d_b, d_b) matrix (for small blocks and debugging)."""
        return self._solve64(torch.eye(self.d_b, dtype=F64, device=self.device))

    # -- updating
    @abstractmethod
    def downdate(
        self, remove_rows: Tensor, normalizer: float, row_values: Tensor | None = None
    ) -> BlockInverse:
        """Exact inverse of λI + (1/N')·Σ_{i kept} gᵢgᵢᵀ with N' = ``normalizer``.

        ``row_values`` (k, d_b) are the removed rows' gradients; needed only by solvers
        that do not keep G (``dense``).
        """

    @abstractmethod
    def replace_rows(
        self, rows: Tensor, new_values: Tensor, normalizer: float, old_values: Tensor | None = None
    ) -> BlockInverse:
        """Exact inverse after rows ``rows`` change to ``new_values`` (k, d_b): an indefinite
        update −gᵢgᵢᵀ + gᵢ'gᵢ'ᵀ (a group-averaged gradient losing a member, §4.4).
        ``old_values`` are needed only by solvers that do not keep G (``dense``)."""

    def sharing(self, G: Tensor) -> BlockInverse:
        """The same inverse holding ``G`` (e.g. a view of the caller's rows matrix) instead of
        its own copy of the rows, to keep one copy in memory; ConfigError when G differs from
        the rows it keeps. This default (an inverse that keeps no rows) returns itself."""
        return self

    # -- accounting and persistence
    @abstractmethod
    def memory_bytes(self) -> int:
        """Bytes held by this object's tensors."""

    @abstractmethod
    def _tensors(self) -> dict[str, Tensor]:
        """Solver-specific tensors for ``state_dict``."""

    def state_dict(self) -> dict[str, Tensor]:
        """Plain tensors (safetensors-compatible); scalars are 0-d tensors."""
        state = {
            "method": encode_str(self.method),
            "name": encode_str(self.name),
            "d_b": torch.tensor(self.d_b, dtype=torch.int64),
            "damping": torch.tensor(self.damping, dtype=F64),
            "normalizer": torch.tensor(self.normalizer, dtype=F64),
            "rows": self.rows.clone(),
            "n_built": torch.tensor(self.n_built, dtype=torch.int64),
        }
        state.update(self._tensors())
        return state

    @classmethod
    @abstractmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> BlockInverse:
        """Inverse of ``state_dict``."""

    @staticmethod
    def _common(state: dict[str, Tensor]) -> dict[str, object]:
        try:
            return {
                "name": decode_str(state["name"]),
                "d_b": int(state["d_b"]),
                "damping": float(state["damping"]),
                "normalizer": float(state["normalizer"]),
                "rows": state["rows"].to(torch.int64).cpu(),
                "n_built": int(state["n_built"]),
            }
        except KeyError as e:
            raise ConfigError(f"block inverse state is missing {e}") from None

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, d_b={self.d_b}, m={self.m}, "
            f"damping={self.damping:g}, normalizer={self.normalizer:g})"
        )


class Solver(ABC):
    """Builds a :class:`BlockInverse` from gradient rows G (m, d_b).

    Class facts every registered solver states (read by ``auto``, the block planner, the
    configuration's validation and the help texts):

    * ``name``: its key in the registry (``ErasureConfig(solver=name)``);
    * ``description``: one line for listings and help;
    * ``auto_candidate``: whether ``auto`` may pick it per block (cheapest build flops among
      the candidates whose memory fits the budget);
    * :meth:`estimate`: bytes kept and build workspace for one (m, d_b) block;
    * :meth:`build_flops`: multiply-adds to build one (m, d_b) block.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    auto_candidate: ClassVar[bool] = False

    def __init__(self, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> None:
        self.chunk_bytes = int(chunk_bytes)

    @classmethod
    @abstractmethod
    def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
        """Bytes kept after building (``persistent``) and needed on top while building
        (``workspace``) for m rows of ``itemsize``-byte gradients and d_b columns."""

    @classmethod
    @abstractmethod
    def build_flops(cls, m: int, d_b: int) -> float:
        """Multiply-adds to build one block of m rows and d_b columns."""

    @abstractmethod
    def build(
        self, G: Tensor, damping: float, normalizer: float, *, name: str = "block"
    ) -> BlockInverse:
        """Exact representation of (λI + GᵀG/N)⁻¹; G is not modified."""

    def build_columns(
        self,
        G: Tensor,
        cols: slice | Tensor,
        damping: float,
        normalizer: float,
        *,
        name: str = "block",
    ) -> BlockInverse:
        """The block of columns ``cols`` of G (m, d); G is not modified. This default selects
        the columns (a view for a slice, a copy for an index) and calls :meth:`build`; solvers
        that can stream over G's columns override it to avoid the copy."""
        return self.build(select_columns(G, cols), damping, normalizer, name=name)


def select_columns(G: Tensor, cols: slice | Tensor) -> Tensor:
    """G[:, cols]: a view for a slice, a private copy (``index_select``) for an index tensor."""
    return G[:, cols] if isinstance(cols, slice) else G.index_select(1, cols.to(G.device))


def encode_str(s: str) -> Tensor:
    """A string as a uint8 tensor (safetensors stores tensors only)."""
    return torch.tensor(list(s.encode()), dtype=torch.uint8)


def decode_str(t: Tensor) -> str:
    return bytes(t.to(torch.uint8).tolist()).decode()
