"""The solver registries and the questions asked of them (by name, never by a list).

A solver is one module in :mod:`unlearnkit.curvature.solvers`: a
:class:`~unlearnkit.curvature.solvers.base.Solver` subclass decorated with
:func:`register_solver`, stating its own facts (``name``, ``description``, memory
``estimate``, ``build_flops``, ``auto_candidate``), and a
:class:`~unlearnkit.curvature.solvers.base.BlockInverse` subclass decorated with
:func:`register_inverse` (to load saved states). The package imports every module in it, so
``auto``, the block planner, the configuration and the CLI find a new solver without a list
to update.
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import Tensor

from unlearnkit.curvature.memory import MemoryEstimate
from unlearnkit.curvature.solvers.base import BlockInverse, Solver, decode_str
from unlearnkit.errors import ConfigError
from unlearnkit.registry import Registry

#: Solver classes by name: ``SOLVERS.get("woodbury")().build(G, λ, N)``.
SOLVERS: Registry[type[Solver]] = Registry("Fisher-inverse solver")
#: BlockInverse classes by their ``method`` (used to load state dicts).
INVERSES: Registry[type[BlockInverse]] = Registry("block inverse")

S = TypeVar("S", bound=type[Solver])
B = TypeVar("B", bound=type[BlockInverse])


def register_solver(cls: S) -> S:
    """Class decorator: register a solver in :data:`SOLVERS` under its ``name``; it must state
    a ``description`` (duplicate names raise ConfigError)."""
    for fact in ("name", "description"):
        if not isinstance(getattr(cls, fact, None), str):
            raise ConfigError(f"solver {cls.__name__} must define a string {fact!r}")
    return SOLVERS.register(cls.name)(cls)


def register_inverse(cls: B) -> B:
    """Class decorator: register a block inverse in :data:`INVERSES` under its ``method``."""
    if not isinstance(getattr(cls, "method", None), str):
        raise ConfigError(f"block inverse {cls.__name__} must define a string 'method'")
    return INVERSES.register(cls.method)(cls)


def auto_candidates() -> list[type[Solver]]:
    """The registered solvers ``auto`` may pick, in name order."""
    return [cls for _, cls in SOLVERS.items() if cls.auto_candidate]


def estimate(method: str, m: int, d_b: int, dtype: torch.dtype = torch.float32) -> MemoryEstimate:
    """Persistent and workspace bytes of solver ``method`` for one block of m rows and d_b
    columns of ``dtype`` gradients (unknown names raise ConfigError listing the solvers)."""
    if m < 0 or d_b < 0:
        raise ConfigError(f"block sizes must be non-negative, got m={m}, d_b={d_b}")
    return SOLVERS.get(method).estimate(m, d_b, torch.empty((), dtype=dtype).element_size())


def estimate_bytes(method: str, m: int, d_b: int, dtype: torch.dtype = torch.float32) -> int:
    """Peak bytes (persistent + build workspace) of ``method`` for one (m, d_b) block."""
    return estimate(method, m, d_b, dtype).peak


def build_flops(method: str, m: int, d_b: int) -> float:
    """Multiply-adds to build one (m, d_b) block with solver ``method``."""
    return SOLVERS.get(method).build_flops(m, d_b)


def solver_help() -> str:
    """``name: description`` for every registered solver, one per line (for help texts)."""
    return "\n".join(f"{name}: {cls.description}" for name, cls in SOLVERS.items())


def load_block_inverse(state: dict[str, Tensor]) -> BlockInverse:
    """Rebuild any block inverse from its ``state_dict`` (dispatch on its ``method``)."""
    if "method" not in state:
        raise ConfigError("block inverse state has no 'method' entry")
    return INVERSES.get(decode_str(state["method"])).from_state_dict(state)
