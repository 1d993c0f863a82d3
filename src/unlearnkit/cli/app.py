"""The root typer application, the consoles, and the conventions every command shares.

* Errors raised on purpose (:class:`~unlearnkit.errors.UnlearnkitError`) are printed as one
  plain-text line ``error: ...`` on stderr (no markup, no emoji codes, no traceback) and exit
  with status 2. Nothing the user typed is ever interpreted as rich markup: the consoles have
  markup, emoji and highlighting off; styles are given explicitly.
* Plain lines are never wrapped (``soft_wrap``), so piped output keeps words and paths whole;
  tables use the terminal width, or a wide one when the output is not a terminal.
* ``--overwrite`` on every command that writes (refusal otherwise), ``--device`` where work
  runs on a device, ``--json`` for listings, ``unlearnkit --version``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from unlearnkit._version import __version__
from unlearnkit.errors import UnlearnkitError

app = typer.Typer(
    name="unlearnkit",
    help="Machine unlearning for PyTorch: erase samples (SSSE, 18 methods) and prove it worked.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
_PLAIN = {"markup": False, "emoji": False, "highlight": False, "soft_wrap": True}
console = Console(**_PLAIN)
err_console = Console(stderr=True, **_PLAIN)

#: table width when the output is not a terminal (pipes, files, CI logs)
PIPE_WIDTH = 200

F = TypeVar("F", bound=Callable[..., Any])

Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="replace existing outputs (refused otherwise)")
]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto")]


def show(renderable: Any) -> None:
    """Print a table (or any renderable) at the terminal's width, or wide when piped."""
    width = None if console.is_terminal or "COLUMNS" in os.environ else PIPE_WIDTH
    console.print(renderable, width=width)


def error_line(message: object) -> str:
    """``error: <message>`` on one line (newlines in the message become spaces)."""
    text = " ".join(str(message).splitlines())
    return f"error: {text}"


def friendly_errors(fn: F) -> F:
    """Print UnlearnkitError messages as one plain line and exit 2; torch threads from env."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = os.environ.get("UNLEARNKIT_THREADS")
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        try:
            return fn(*args, **kwargs)
        except UnlearnkitError as e:
            typer.echo(error_line(e), err=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unlearnkit {__version__}")
        raise typer.Exit(0)


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Machine unlearning for PyTorch: erase samples (SSSE, 18 methods) and prove it worked."""


def main() -> int:
    app()
    return 0
