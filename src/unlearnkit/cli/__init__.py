"""The ``unlearnkit`` command line (typer). Each sub-module adds one group of commands.

Errors raised on purpose (:class:`~unlearnkit.errors.UnlearnkitError`) are printed without a
traceback and exit with status 2.
"""

from __future__ import annotations

import sys

from unlearnkit.cli import bench as _bench  # noqa: F401
from unlearnkit.cli import data as _data  # noqa: F401  (registers `data list`)
from unlearnkit.cli import demo as _demo  # noqa: F401  (demo)
from unlearnkit.cli import evaluate as _evaluate  # noqa: F401
from unlearnkit.cli import methods as _methods  # noqa: F401
from unlearnkit.cli import ssse as _ssse  # noqa: F401  (prepare, erase, reproduce)
from unlearnkit.cli import train as _train  # noqa: F401  (train)
from unlearnkit.cli.app import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
