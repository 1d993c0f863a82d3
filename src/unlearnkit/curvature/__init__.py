"""Curvature of a model's loss as rows R with F = λI + (1/N)·RᵀR, block-diagonal inverses and
exact downdates.

Modules, in dependency order: :mod:`.layout` (the flat θ), :mod:`.matrix` (the rows container),
:mod:`.programs` (what to differentiate), :mod:`.backends` (torch.func / hooks),
:mod:`.gradients` (the chunked engine), :mod:`.rows` (empirical / true Fisher / GGN),
:mod:`.blocks` (parameter partitions), :mod:`.solvers` and :mod:`.block_inverse`.
"""

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse, BlockEntry, IndexBlock
from unlearnkit.curvature.blocks import make_blocks
from unlearnkit.curvature.gradients import (
    collect_rows,
    grouped_gradients,
    make_groups,
    per_sample_gradients,
)
from unlearnkit.curvature.layout import ParamLayout, flat_params, with_params
from unlearnkit.curvature.matrix import PAD_ID, GradientMatrix
from unlearnkit.curvature.programs import Loss, RowProgram, empirical_program
from unlearnkit.curvature.rows import ROW_KINDS, curvature_rows

__all__ = [
    "PAD_ID",
    "ROW_KINDS",
    "BlockDiagonalInverse",
    "BlockEntry",
    "GradientMatrix",
    "IndexBlock",
    "Loss",
    "ParamLayout",
    "RowProgram",
    "collect_rows",
    "curvature_rows",
    "empirical_program",
    "flat_params",
    "grouped_gradients",
    "make_blocks",
    "make_groups",
    "per_sample_gradients",
    "with_params",
]
