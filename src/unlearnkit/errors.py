"""One exception hierarchy for the whole package.

Every error says what is wrong and what to do. The CLI prints ``UnlearnkitError`` messages
without a traceback and exits non-zero. Any operation that raises leaves the model and the
stored state it was given unchanged.
"""

from __future__ import annotations


class UnlearnkitError(Exception):
    """Base class of every error raised on purpose by unlearnkit."""


class ConfigError(UnlearnkitError, ValueError):
    """A configuration, argument or experiment file is malformed."""


class DataError(UnlearnkitError, ValueError):
    """A dataset is missing, malformed, or does not match what was asked for."""


class UnknownIdsError(UnlearnkitError, KeyError):
    """Sample ids that are not part of the data a state or split was built from."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class AlreadyErasedError(UnlearnkitError, ValueError):
    """Sample ids that an erasure state has already erased."""


class StateMismatchError(UnlearnkitError, ValueError):
    """A stored state or artifact does not belong to the model or data it is used with."""


class StateBusyError(UnlearnkitError, RuntimeError):
    """Another process holds the erasure state's lock (an ``erase`` or ``prepare`` on it is
    running); nothing was read or written, run the command again when it has finished."""


class NumericalError(UnlearnkitError, FloatingPointError):
    """NaN/Inf values, or a matrix that is not positive definite."""


class MemoryBudgetError(UnlearnkitError, MemoryError):
    """An operation would need more memory than the budget allows."""


class UnsupportedError(UnlearnkitError, TypeError):
    """A method or solver was given a model or data it cannot handle."""


class OverwriteError(UnlearnkitError, FileExistsError):
    """An output exists (or would replace an input or a state's files) and overwriting was
    not asked for."""


class DeviceError(ConfigError):
    """A device was asked for that this machine does not have (``cuda`` without a GPU)."""


class UtilityBudgetError(UnlearnkitError, ValueError):
    """A step would cost more accuracy (retained or held-out) than the stated utility budget;
    nothing was changed. ``utility`` holds the accuracies measured before and after."""

    def __init__(self, message: str, utility: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.utility = dict(utility or {})
