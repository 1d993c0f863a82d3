"""Block-diagonal dampened empirical-Fisher inverse over a flat parameter vector.

For a flat parameter vector of length d partitioned into blocks j (index sets I_j),

    F = blockdiag_j(λI + (1/N)·G[:, I_j]ᵀ G[:, I_j]),   F⁻¹v = concat_j F_j⁻¹ v[I_j],

where G (m, d) holds one gradient row per sample or group (SSSE, Peste et al. 2021, eq. 2–4;
block-diagonal structure as in their §4). Each block uses its own exact solver (see
:mod:`unlearnkit.curvature.solvers`); ``auto`` picks one of the registered candidates per
block by flops under a memory budget that is checked *before* anything large is allocated.

Rows keep stable ids 0..m−1 across ``downdate`` / ``replace_rows``, which return new objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unlearnkit.curvature.block_plan import (
    BlockLike,
    IndexBlock,
    as_index,
    check_partition,
    plan_blocks,
)
from unlearnkit.curvature.memory import DEFAULT_CHUNK_BYTES, format_bytes
from unlearnkit.curvature.solvers import SOLVERS, BlockInverse, DenseSolver, load_block_inverse
from unlearnkit.curvature.solvers.base import F64, check_hyper, decode_str, encode_str
from unlearnkit.errors import ConfigError, NumericalError


@dataclass(frozen=True)
class BlockEntry:
    """One block of the inverse: its positions, its solver's inverse and why it was chosen."""

    name: str
    index: Tensor  # int64, CPU
    sel: slice | Tensor  # a slice when the index is a contiguous range (views, no copies)
    inverse: BlockInverse
    reason: str


def _selector(index: Tensor) -> slice | Tensor:
    n = index.numel()
    if n and int(index[-1]) - int(index[0]) == n - 1 and bool((index.diff() == 1).all()):
        return slice(int(index[0]), int(index[0]) + n)
    return index


def _check_finite_rows(G: Tensor, chunk_bytes: int) -> None:
    step = max(1, chunk_bytes // (8 * max(1, G.shape[1])))
    for s in range(0, G.shape[0], step):
        bad = ~torch.isfinite(G[s : s + step]).all(dim=1)
        if bool(bad.any()):
            rows = (bad.nonzero().flatten() + s).tolist()[:10]
            raise NumericalError(f"gradients contain NaN or Inf in rows {rows}")


class BlockDiagonalInverse:
    """F⁻¹ for a block-diagonal dampened empirical Fisher over a flat parameter vector."""

    def __init__(self, entries: Sequence[BlockEntry], d: int) -> None:
        self.entries = list(entries)
        self.d = int(d)

    # ------------------------------------------------------------------ construction
    @classmethod
    def plan(
        cls,
        m: int,
        d: int,
        blocks: Sequence[BlockLike] | None,
        *,
        solver: str = "auto",
        dtype: torch.dtype = torch.float32,
        memory_budget_bytes: int | None = None,
    ) -> list[dict[str, object]]:
        """The per-block solver choice and memory estimate, without building anything."""
        plans = plan_blocks(m, d, blocks, solver, dtype, memory_budget_bytes)
        return [
            {
                "name": p.name,
                "d_b": p.index.numel(),
                "m": m,
                "method": p.method,
                "reason": p.reason,
                "bytes": p.est.peak,
            }
            for p in plans
        ]

    @classmethod
    def build(
        cls,
        G: Tensor,
        blocks: Sequence[BlockLike] | None,
        damping: float,
        normalizer: float,
        solver: str = "auto",
        memory_budget_bytes: int | None = None,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> BlockDiagonalInverse:
        """Build F⁻¹ from gradient rows G (m, d); ``blocks=None`` means one full block.

        The memory estimate is checked against ``memory_budget_bytes`` before any large
        allocation (MemoryBudgetError); NaN/Inf in G raise NumericalError. G is not modified.
        """
        if not isinstance(G, Tensor) or G.ndim != 2 or not G.is_floating_point():
            raise ConfigError("G must be a floating-point 2-D tensor (m rows, d parameters)")
        lam, n = check_hyper(damping, normalizer)
        m, d = G.shape
        plans = plan_blocks(m, d, blocks, solver, G.dtype, memory_budget_bytes)
        G = G.detach()
        _check_finite_rows(G, chunk_bytes)
        entries = []
        for p in plans:
            sel = _selector(p.index)
            solver = SOLVERS.get(p.method)(chunk_bytes)
            inv = solver.build_columns(G, sel, lam, n, name=p.name)
            entries.append(BlockEntry(p.name, p.index, sel, inv, p.reason))
        return cls(entries, d)

    @classmethod
    def from_grams(
        cls,
        grams: Sequence[Tensor] | Tensor,
        blocks: Sequence[BlockLike],
        n_rows: int,
        damping: float,
        normalizer: float,
    ) -> BlockDiagonalInverse:
        """Dense blocks from precomputed unnormalised Grams A_j = Σᵢ gᵢⱼgᵢⱼᵀ (one per block).

        E.g. the linear multi-attribute model: A_k = Xᵀdiag(r_k²)X for all k in one einsum.
        """
        lam, n = check_hyper(damping, normalizer)
        d = sum(as_index(b.index, str(b.name)).numel() for b in blocks)
        parts = check_partition(blocks, d)
        if len(grams) != len(parts):
            raise ConfigError(f"got {len(grams)} Gram matrices for {len(parts)} blocks")
        entries = []
        for (name, idx), A in zip(parts, grams, strict=True):
            if tuple(A.shape) != (idx.numel(), idx.numel()):
                raise ConfigError(
                    f"block {name!r}: Gram has shape {tuple(A.shape)}, expected "
                    f"({idx.numel()}, {idx.numel()})"
                )
            inv = DenseSolver().from_gram(A, n_rows, lam, n, name=name)
            entries.append(BlockEntry(name, idx, _selector(idx), inv, "dense: precomputed Gram"))
        return cls(entries, d)

    # ------------------------------------------------------------------ properties
    @property
    def damping(self) -> float:
        return self.entries[0].inverse.damping

    @property
    def normalizer(self) -> float:
        return self.entries[0].inverse.normalizer

    @property
    def rows(self) -> Tensor:
        """Stable ids of the rows currently in the Fisher."""
        return self.entries[0].inverse.rows

    @property
    def m(self) -> int:
        return self.entries[0].inverse.m

    @property
    def dtype(self) -> torch.dtype:
        return F64

    # ------------------------------------------------------------------ applying
    def solve(self, v: Tensor) -> Tensor:
        """F⁻¹v for v of shape (d,) or (d, r), in v's dtype (computed in fp64 per block)."""
        if not isinstance(v, Tensor) or v.ndim not in (1, 2) or v.shape[0] != self.d:
            shape = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ConfigError(f"expected a vector ({self.d},) or matrix ({self.d}, r), got {shape}")
        out = torch.empty_like(v)
        for e in self.entries:
            out[e.sel] = e.inverse.solve(v[e.sel])
        return out

    def __matmul__(self, v: Tensor) -> Tensor:
        return self.solve(v)

    def to_dense(self) -> Tensor:
        """F⁻¹ as a dense fp64 (d, d) matrix (small d only; for debugging and tests)."""
        out = torch.zeros(self.d, self.d, dtype=F64)
        for e in self.entries:
            idx = e.index
            out[idx.unsqueeze(1), idx.unsqueeze(0)] = e.inverse.to_dense().cpu()
        return out

    # ------------------------------------------------------------------ updating
    def _cols(self, values: Tensor | None, k: int, what: str) -> Tensor | None:
        if values is None:
            return None
        if not isinstance(values, Tensor) or values.ndim != 2 or tuple(values.shape) != (k, self.d):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ConfigError(f"{what} must have shape ({k}, {self.d}), got {shape}")
        return values

    def downdate(
        self, rows: Tensor, normalizer: float, row_values: Tensor | None = None
    ) -> BlockDiagonalInverse:
        """Exact inverse for the Fisher without ``rows`` and with normaliser N' (new object).

        ``row_values`` (k, d): the removed rows' gradients, needed by ``dense`` blocks.
        """
        r = torch.as_tensor(rows)
        vals = self._cols(row_values, r.numel(), "row_values")
        entries = [
            BlockEntry(
                e.name,
                e.index,
                e.sel,
                e.inverse.downdate(r, normalizer, None if vals is None else vals[:, e.sel]),
                e.reason,
            )
            for e in self.entries
        ]
        return BlockDiagonalInverse(entries, self.d)

    def replace_rows(
        self, rows: Tensor, new_values: Tensor, normalizer: float, old_values: Tensor | None = None
    ) -> BlockDiagonalInverse:
        """Exact inverse after rows change value (a group-averaged gradient losing a member).

        ``new_values`` (k, d); ``old_values`` (k, d) are needed by ``dense`` blocks.
        """
        r = torch.as_tensor(rows)
        new = self._cols(new_values, r.numel(), "new_values")
        assert new is not None
        old = self._cols(old_values, r.numel(), "old_values")
        entries = [
            BlockEntry(
                e.name,
                e.index,
                e.sel,
                e.inverse.replace_rows(
                    r, new[:, e.sel], normalizer, None if old is None else old[:, e.sel]
                ),
                e.reason,
            )
            for e in self.entries
        ]
        return BlockDiagonalInverse(entries, self.d)

    # ------------------------------------------------------------------ reporting
    def memory_bytes(self) -> int:
        return sum(e.inverse.memory_bytes() for e in self.entries)

    def describe(self) -> str:
        """One line per block: name, size, solver, why, memory."""
        lines = [
            f"block-diagonal Fisher inverse: d={self.d}, m={self.m}, λ={self.damping:g}, "
            f"N={self.normalizer:g}, {len(self.entries)} blocks, "
            f"{format_bytes(self.memory_bytes())}"
        ]
        for e in self.entries:
            lines.append(
                f"  {e.name}: d_b={e.index.numel()} {e.inverse.method} "
                f"[{e.reason}] {format_bytes(e.inverse.memory_bytes())}"
            )
        return "\n".join(lines)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Tensor]:
        """Flat dict of plain tensors (safetensors-compatible)."""
        state: dict[str, Tensor] = {
            "d": torch.tensor(self.d, dtype=torch.int64),
            "n_blocks": torch.tensor(len(self.entries), dtype=torch.int64),
        }
        for i, e in enumerate(self.entries):
            state[f"blocks.{i}.name"] = encode_str(e.name)
            state[f"blocks.{i}.index"] = e.index.clone()
            state[f"blocks.{i}.reason"] = encode_str(e.reason)
            for k, t in e.inverse.state_dict().items():
                state[f"blocks.{i}.inv.{k}"] = t
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> BlockDiagonalInverse:
        try:
            d, nb = int(state["d"]), int(state["n_blocks"])
            entries = []
            for i in range(nb):
                pre = f"blocks.{i}.inv."
                sub = {k[len(pre) :]: t for k, t in state.items() if k.startswith(pre)}
                idx = state[f"blocks.{i}.index"].to(torch.int64).cpu()
                entries.append(
                    BlockEntry(
                        decode_str(state[f"blocks.{i}.name"]),
                        idx,
                        _selector(idx),
                        load_block_inverse(sub),
                        decode_str(state[f"blocks.{i}.reason"]),
                    )
                )
        except KeyError as e:
            raise ConfigError(f"Fisher-inverse state is missing {e}") from None
        check_partition([IndexBlock(e.name, e.index) for e in entries], d)
        return cls(entries, d)

    def __repr__(self) -> str:
        return f"BlockDiagonalInverse(d={self.d}, m={self.m}, blocks={len(self.entries)})"
