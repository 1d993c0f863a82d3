"""SSSE: single-step sample erasure (Peste, Alistarh & Lampert 2021), exact and fast.

Modules, in dependency order: :mod:`.config` (:class:`ErasureConfig`, the one set of
defaults), :mod:`.rows` (curvature rows of a dataset, streamed when it has ``batches``),
:mod:`.eps` (ε rules), :mod:`.request` (:class:`ErasureRequest`: ε = "auto" by default and the
utility budget), :mod:`.leave_out` (exact leave-S-out of the rows), :mod:`.lock` (the state
folder's lock), :mod:`.persistence` (the state folder), :mod:`.base` (what states share),
:mod:`.state` (:class:`ErasureState`, exact rows), :mod:`.kronecker` / :mod:`.kronecker_io`
(:class:`KroneckerState`, K-FAC / EK-FAC sums) and :mod:`.structure` (``structure="auto"``,
:func:`prepare_state`, :func:`load_state` for either kind).
"""

from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.eps import DEFAULT_GRID, EPS_RULES, EpsChoice
from unlearnkit.ssse.kronecker import KroneckerState
from unlearnkit.ssse.request import DEFAULT_UTILITY_BUDGET, ErasureRequest
from unlearnkit.ssse.state import ErasureState
from unlearnkit.ssse.structure import choose_structure, load_state, prepare_state

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_UTILITY_BUDGET",
    "EPS_RULES",
    "EpsChoice",
    "ErasureConfig",
    "ErasureRequest",
    "ErasureState",
    "KroneckerState",
    "choose_structure",
    "load_state",
    "prepare_state",
]
