"""Parameter blocks: a partition of the flat parameter vector into index sets.

A block-diagonal curvature keeps one block ``F_j = lambda I + (1/N) G_j^T G_j`` per block,
where ``G_j`` holds the block's columns of the rows matrix (spec ssse-engine.md §4.1). The flat
vector follows :class:`~unlearnkit.curvature.gradients.ParamLayout` (``named_parameters``
order, trainable parameters only, each tensor flattened row-major).

Strategies (registry :data:`BLOCK_STRATEGIES`, used through :func:`make_blocks`):

* ``full``: one block, the whole vector (the non-block-diagonal curvature).
* ``per_layer``: ``by="tensor"`` (default) one block per parameter tensor; ``by="module"``
  one block per module, its weight and bias together.
* ``chunks``: fixed-size chunks of ``size`` entries within each parameter tensor
  (``by="tensor"``) or each module (``by="module"``), the last chunk of each smaller: SSSE's
  blocks of 70 000 for ResNet20 (after WoodFisher).
* ``per_output_head``: one block per output unit k of the final ``nn.Linear``: row k of its
  weight plus bias entry k (when trainable). For SSSE's no-bias 40-attribute linear model these
  are the paper's 40 blocks. The final layer is ``head=`` (a module name) or, by default, the
  last module in registration order that owns trainable parameters; it must be an
  ``nn.Linear``. Parameters outside the head are partitioned by ``rest="per_layer"`` (default)
  or ``rest="full"`` (one block).

Every strategy returns blocks that partition ``range(d)`` exactly (:func:`check_partition`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.registry import Registry

GroupBy = Literal["tensor", "module"]


@dataclass(frozen=True)
class Block:
    """A named set of flat parameter indices: a ``slice`` when contiguous, else a LongTensor."""

    name: str
    index: slice | Tensor

    @property
    def size(self) -> int:
        if isinstance(self.index, slice):
            return self.index.stop - self.index.start
        return int(self.index.numel())

    def indices(self) -> Tensor:
        """The flat indices as an int64 tensor."""
        if isinstance(self.index, slice):
            return torch.arange(self.index.start, self.index.stop, dtype=torch.int64)
        return self.index

    def take(self, mat: Tensor) -> Tensor:
        """The block's columns ``mat[..., index]`` (a view when the index is a slice)."""
        if isinstance(self.index, slice):
            return mat[..., self.index]
        return mat.index_select(-1, self.index.to(mat.device))


BlockStrategy = Callable[..., list[Block]]
BLOCK_STRATEGIES: Registry[BlockStrategy] = Registry("block strategy")


def make_blocks(strategy: str, model: nn.Module, **kwargs: object) -> list[Block]:
    """Blocks of ``model``'s flat parameter vector by the named strategy; checked to partition."""
    blocks = BLOCK_STRATEGIES.get(strategy)(model, **kwargs)
    check_partition(blocks, ParamLayout.from_model(model).d)
    return blocks


def check_partition(blocks: Iterable[Block], d: int) -> None:
    """Raise ConfigError unless ``blocks`` cover every index of ``range(d)`` exactly once."""
    count = torch.zeros(d, dtype=torch.int64)
    for b in blocks:
        idx = b.indices()
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= d):
            raise ConfigError(f"block {b.name!r} has indices outside [0, {d})")
        count.index_add_(0, idx, torch.ones_like(idx))
    if not bool((count == 1).all()):
        missing = int((count == 0).sum())
        dup = int((count > 1).sum())
        raise ConfigError(
            f"blocks do not partition the {d} parameters: {missing} missing, {dup} repeated"
        )


# --------------------------------------------------------------------------------------------


def _units(layout: ParamLayout, by: GroupBy) -> list[tuple[str, int, int]]:
    """(name, start, stop) per tensor, or per module (consecutive tensors sharing a prefix)."""
    spans = [
        (name, off, off + k)
        for name, off, k in zip(layout.names, layout.offsets, layout.numels, strict=True)
    ]
    if by == "tensor":
        return spans
    if by != "module":
        raise ConfigError(f"by must be 'tensor' or 'module', got {by!r}")
    merged: list[tuple[str, int, int]] = []
    for name, start, stop in spans:
        mod = name.rpartition(".")[0] or "<root>"
        if merged and merged[-1][0] == mod and merged[-1][2] == start:
            merged[-1] = (mod, merged[-1][1], stop)
        else:
            merged.append((mod, start, stop))
    return merged


@BLOCK_STRATEGIES.register("full")
def full_blocks(model: nn.Module) -> list[Block]:
    """One block holding every trainable parameter."""
    return [Block("full", slice(0, ParamLayout.from_model(model).d))]


@BLOCK_STRATEGIES.register("per_layer")
def per_layer_blocks(model: nn.Module, by: GroupBy = "tensor") -> list[Block]:
    """One block per parameter tensor (``by="tensor"``) or per module (``by="module"``)."""
    return [Block(n, slice(a, b)) for n, a, b in _units(ParamLayout.from_model(model), by)]


@BLOCK_STRATEGIES.register("chunks")
def chunk_blocks(model: nn.Module, size: int, by: GroupBy = "tensor") -> list[Block]:
    """Consecutive chunks of ``size`` entries within each tensor/module; the last one smaller."""
    if int(size) < 1:
        raise ConfigError(f"chunk size must be >= 1, got {size}")
    size = int(size)
    out: list[Block] = []
    for name, a, b in _units(ParamLayout.from_model(model), by):
        for j, s in enumerate(range(a, b, size)):
            out.append(Block(f"{name}#{j}", slice(s, min(s + size, b))))
    return out


def _head_module(model: nn.Module, layout: ParamLayout, head: str | None) -> tuple[str, nn.Module]:
    if head is not None:
        mods = dict(model.named_modules())
        if head not in mods:
            raise ConfigError(f"no module named {head!r} in the model")
        return head, mods[head]
    last: tuple[str, nn.Module] | None = None
    names = set(layout.names)
    for mname, mod in model.named_modules():
        own = [f"{mname}.{p}" if mname else p for p, _ in mod.named_parameters(recurse=False)]
        if any(n in names for n in own):
            last = (mname, mod)
    assert last is not None  # ParamLayout guarantees trainable parameters
    return last


@BLOCK_STRATEGIES.register("per_output_head")
def per_output_head_blocks(
    model: nn.Module, head: str | None = None, rest: Literal["per_layer", "full"] = "per_layer"
) -> list[Block]:
    """One block per output unit k of the final Linear: ``W[k, :]`` and ``b[k]``; then the rest."""
    layout = ParamLayout.from_model(model)
    mname, mod = _head_module(model, layout, head)
    if not isinstance(mod, nn.Linear):
        raise UnsupportedError(
            f"per_output_head needs the last layer to be nn.Linear; {mname or '<root>'!r} is "
            f"{type(mod).__name__}"
        )
    prefix = f"{mname}." if mname else ""
    wname, bname = prefix + "weight", prefix + "bias"
    if wname not in layout.names:
        raise UnsupportedError(f"per_output_head: {wname!r} is not trainable")
    w = layout.slice_of(wname)
    n_out, n_in = mod.weight.shape
    has_bias = bname in layout.names
    blocks: list[Block] = []
    for k in range(n_out):
        row = slice(w.start + k * n_in, w.start + (k + 1) * n_in)
        if has_bias:
            idx = torch.cat(
                [
                    torch.arange(row.start, row.stop),
                    torch.tensor([layout.slice_of(bname).start + k]),
                ]
            )
            blocks.append(Block(f"{mname or 'head'}[{k}]", idx))
        else:
            blocks.append(Block(f"{mname or 'head'}[{k}]", row))
    head_names = {wname, bname}
    others = [(n, a, b) for n, a, b in _units(layout, "tensor") if n not in head_names]
    if rest == "per_layer":
        blocks.extend(Block(n, slice(a, b)) for n, a, b in others)
    elif rest == "full":
        if others:
            idx = torch.cat([torch.arange(a, b) for _, a, b in others])
            blocks.append(Block("rest", idx))
    else:
        raise ConfigError(f"rest must be 'per_layer' or 'full', got {rest!r}")
    return blocks
