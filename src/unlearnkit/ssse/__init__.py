"""SSSE: single-step sample erasure (Peste, Alistarh & Lampert 2021), exact and fast.

Modules, in dependency order: :mod:`.config` (:class:`ErasureConfig`, the one set of
defaults), :mod:`.rows` (curvature rows of a dataset, streamed when it has ``batches``),
:mod:`.eps` (ε rules), :mod:`.request` (:class:`ErasureRequest`: ε = "auto" by default and the
utility budget), :mod:`.leave_out` (exact leave-S-out of the rows), :mod:`.lock` (the state
folder's lock), :mod:`.persistence` (the state folder) and :mod:`.state` (:class:`ErasureState`).
"""

from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.eps import DEFAULT_GRID, EPS_RULES, EpsChoice
from unlearnkit.ssse.request import DEFAULT_UTILITY_BUDGET, ErasureRequest
from unlearnkit.ssse.state import ErasureState

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_UTILITY_BUDGET",
    "EPS_RULES",
    "EpsChoice",
    "ErasureConfig",
    "ErasureRequest",
    "ErasureState",
]
