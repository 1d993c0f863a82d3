"""SSSE: single-step sample erasure (Peste, Alistarh & Lampert 2021), exact and fast.

See :mod:`unlearnkit.ssse.state` for the erasure state and :mod:`unlearnkit.ssse.config`
for its configuration.
"""

from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.request import DEFAULT_UTILITY_BUDGET, ErasureRequest
from unlearnkit.ssse.state import ErasureState

__all__ = ["DEFAULT_UTILITY_BUDGET", "ErasureConfig", "ErasureRequest", "ErasureState"]
