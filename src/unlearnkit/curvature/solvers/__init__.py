"""Exact solvers for the dampened empirical-Fisher inverse of one block, F = λI + GᵀG/N.

``SOLVERS`` maps names to solver classes: ``dense``, ``woodbury``, ``sherman_morrison``
(the SSSE paper's eq. 3) and ``auto`` (per-block choice by flops and memory).

Importing this package imports every module in it (found with :mod:`pkgutil`); a solver
module registers itself with ``@register_solver`` (and its inverse with
``@register_inverse``), stating its own facts (:class:`~.base.Solver`). Adding a solver is
adding one file here (plus its test): ``auto``, the block planner, ``ErasureConfig(solver=...)``
and the help texts read the registry.

>>> import torch
>>> G = torch.randn(5, 3, dtype=torch.float64)
>>> inv = SOLVERS.get("woodbury")().build(G, damping=0.1, normalizer=5)
>>> F = 0.1 * torch.eye(3, dtype=torch.float64) + G.T @ G / 5
>>> v = torch.ones(3, dtype=torch.float64)
>>> bool(torch.allclose(inv.solve(v), torch.linalg.solve(F, v)))
True
"""

import importlib
import pkgutil

from unlearnkit.curvature.solvers.auto import AutoSolver, Choice
from unlearnkit.curvature.solvers.base import BlockInverse, Solver
from unlearnkit.curvature.solvers.dense import DenseInverse, DenseSolver
from unlearnkit.curvature.solvers.registry import (
    INVERSES,
    SOLVERS,
    auto_candidates,
    build_flops,
    estimate,
    estimate_bytes,
    load_block_inverse,
    register_inverse,
    register_solver,
    solver_help,
)
from unlearnkit.curvature.solvers.sherman_morrison import (
    ShermanMorrisonInverse,
    ShermanMorrisonSolver,
)
from unlearnkit.curvature.solvers.woodbury import WoodburyInverse, WoodburySolver

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")


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
    "auto_candidates",
    "build_flops",
    "estimate",
    "estimate_bytes",
    "load_block_inverse",
    "register_inverse",
    "register_solver",
    "solver_help",
]
