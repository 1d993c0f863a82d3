"""Unlearning methods behind one interface (see :mod:`unlearnkit.methods.base`).

Importing this package imports every module in it (found with :mod:`pkgutil`), and each method
module registers its class in :data:`METHODS` with ``@METHODS.register(key)``: adding a method
is adding one file here (plus its test), with no list to update.
"""

import importlib
import pkgutil

from unlearnkit.methods.base import (
    METHODS,
    MethodConfig,
    MulticlassUnlearner,
    UnlearnData,
    Unlearner,
    UnlearnResult,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "METHODS",
    "MethodConfig",
    "MulticlassUnlearner",
    "UnlearnData",
    "Unlearner",
    "UnlearnResult",
]
