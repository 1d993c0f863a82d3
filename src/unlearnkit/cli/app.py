"""The root typer application and the error handling shared by every command."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from unlearnkit.errors import UnlearnkitError

app = typer.Typer(
    name="unlearnkit",
    help="Machine unlearning for PyTorch: erase samples (SSSE, 18 methods) and prove it worked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def friendly_errors(fn: F) -> F:
    """Print UnlearnkitError messages (no traceback) and exit 2; set torch threads from env."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = os.environ.get("UNLEARNKIT_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        try:
            return fn(*args, **kwargs)
        except UnlearnkitError as e:
            err_console.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def main() -> int:
    app()
    return 0
