"""Exact solvers for the dampened empirical-Fisher inverse of one block, F = λI + GᵀG/N.

``SOLVERS`` maps names to solver classes: ``dense``, ``woodbury``, ``sherman_morrison``
(the SSSE paper's eq. 3) and ``auto`` (per-block choice by flops and memory).

>>> import torch
>>> G = torch.randn(5, 3, dtype=torch.float64)
>>> inv = SOLVERS.get("woodbury")().build(G, damping=0.1, normalizer=5)
>>> F = 0.1 * torch.eye(3, dtype=torch.float64) + G.T @ G / 5
>>> v = torch.ones(3, dtype=torch.float64)
>>> bool(torch.allclose(inv.solve(v), torch.linalg.solve(F, v)))
True
"""

from unlearnkit.curvature.solvers.auto import AutoSolver, Choice, build_flops
from unlearnkit.curvature.solvers.base import (
    INVERSES,
    SOLVERS,
    BlockInverse,
    Solver,
    load_block_inverse,
)
from unlearnkit.curvature.solvers.dense import DenseInverse, DenseSolver
from unlearnkit.curvature.solvers.sherman_morrison import (
    ShermanMorrisonInverse,
    ShermanMorrisonSolver,
)
from unlearnkit.curvature.solvers.woodbury import WoodburyInverse, WoodburySolver

__all__ = [
    "INVERSES",
    "SOLVERS",
    "AutoSolver",
    "BlockInverse",
    "Choice",
    "DenseInverse",
    "DenseSolver",
    "ShermanMorrisonInverse",
    "ShermanMorrisonSolver",
    "Solver",
    "WoodburyInverse",
    "WoodburySolver",
    "build_flops",
    "load_block_inverse",
]
