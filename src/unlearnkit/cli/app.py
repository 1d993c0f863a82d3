"""The root typer application, the consoles, and the conventions every command shares.

* One error path: every failure the user can cause is printed as one plain-text line
  ``error: ...`` on stderr (no markup, no emoji codes, no traceback) and exits with status 2.
  That covers errors raised on purpose (:class:`~unlearnkit.errors.UnlearnkitError`), usage
  errors found by the option parser (a missing option, ``--damping abc``; :class:`PlainErrors`)
  and what the environment answers to the user's paths (:func:`friendly_errors`: a read-only
  or missing folder, a full disk, a corrupted SQLite file). Anything else is a bug and keeps
  its traceback (exit 1). Nothing the user typed is ever interpreted as rich markup: the
  consoles have markup, emoji and highlighting off; styles are given explicitly.
* Plain lines are never wrapped (``soft_wrap``), so piped output keeps words and paths whole;
  tables use the terminal width, or a wide one when the output is not a terminal.
* ``--overwrite`` on every command that writes (refusal otherwise), ``--device`` where work
  runs on a device, ``--json`` for listings, ``unlearnkit --version``.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperGroup

from unlearnkit._version import __version__
from unlearnkit.errors import ConfigError, UnlearnkitError


def _parser_exceptions(name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``name`` of the option parser: typer >= 0.22 raises those of its
    own copy of click (``typer._click``), older typer those of ``click``; both are caught."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


_NO_ARGS_HELP = _parser_exceptions("NoArgsIsHelpError")
_USAGE = _parser_exceptions("UsageError")
_CLICK = _parser_exceptions("ClickException")
_ABORT = (*_parser_exceptions("Abort"), typer.Abort)


class PlainErrors(TyperGroup):
    """The root group: usage errors (an unknown or missing option, a value the parser rejects)
    become one ``error: ...`` line and exit 2, like every other error the user can cause.

    Click prints such errors as a usage block (``Usage: ...``, ``Try ...``, ``Error: ...``);
    here the message keeps click's wording and names the command's ``--help``. Help shown for
    a bare command (``no_args_is_help``) is printed as before.
    """

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode handle usage errors here (see the class)."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except _NO_ARGS_HELP as e:
            e.show()  # type: ignore[attr-defined]
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        except _USAGE as e:
            ctx = getattr(e, "ctx", None)
            where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(error_line(e.format_message() + where), err=True)  # type: ignore[attr-defined]
            sys.exit(2)
        except _CLICK as e:
            e.show()  # type: ignore[attr-defined]
            sys.exit(e.exit_code)  # type: ignore[attr-defined]
        except _ABORT:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        # non-standalone click returns the exit code of an Exit, or the command's value
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="unlearnkit",
    cls=PlainErrors,
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


#: errnos that the environment gives for the user's paths (permissions, missing or wrong
#: kind of path, full disk or quota, read-only file system): reported, not tracebacks
USER_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EACCES", "EPERM", "ENOENT", "EISDIR", "ENOTDIR", "ENOSPC", "EDQUOT", "EROFS",
        "EEXIST", "ENAMETOOLONG", "ELOOP", "ENOTEMPTY", "EXDEV", "EFBIG", "EMLINK", "ETXTBSY",
    )
    if hasattr(errno, name)
)  # fmt: skip

#: SQLite result codes (their prefix) that say the database file, not the SQL, is at fault
SQLITE_USER_CODES = (
    "SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_LOCKED",
    "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_IOERR",
)  # fmt: skip


def os_error_message(e: OSError) -> str | None:
    """The one-line message for an OSError the environment gave for a user's path, or None
    when ``e`` is not one of :data:`USER_ERRNOS` (then it is treated as a bug)."""
    if e.errno not in USER_ERRNOS:
        return None
    what = e.strerror or os.strerror(e.errno or 0)
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    hint = {
        errno.EACCES: "check its permissions or choose another path",
        errno.EPERM: "check its permissions or choose another path",
        errno.EROFS: "choose a writable location",
        errno.ENOSPC: "free some space or choose another location",
    }.get(e.errno or 0, "check the path")
    return f"{what}: {paths} ({hint})" if paths else f"{what} ({hint})"


def sqlite_error_message(e: sqlite3.Error) -> str | None:
    """The one-line message for a SQLite error caused by the database file (corrupted, not a
    database, read-only, locked, disk full), or None for other SQLite errors (bugs).

    Python >= 3.11 gives the result code (``sqlite_errorname``); on 3.10 only the exact class
    :class:`sqlite3.DatabaseError` (corrupted file / not a database) is recognised.
    """
    name = getattr(e, "sqlite_errorname", None)
    if name is not None:
        user = name.startswith(SQLITE_USER_CODES)
    else:
        user = type(e) is sqlite3.DatabaseError
    if not user:
        return None
    return (
        f"cannot use the SQLite database: {e}; the file is corrupted, not a database, locked "
        "or not writable (restore it, move it away, or choose another folder)"
    )


def friendly_errors(fn: F) -> F:
    """Run a command with the one error path (module docstring); torch threads from env.

    * :class:`~unlearnkit.errors.UnlearnkitError` (raised on purpose): its message.
    * :class:`OSError` with one of :data:`USER_ERRNOS` (a read-only or missing folder, a path
      that is a directory, a full disk): the environment's answer to a path the user gave, so
      it is reported, not a bug. Other OSErrors keep their traceback.
    * :class:`sqlite3.Error` for a corrupted, locked or read-only database file (a
      ``results.db`` the user pointed at); SQL errors keep their traceback.

    Each prints one line ``error: ...`` and exits 2.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _threads_from_env()
            return fn(*args, **kwargs)
        except UnlearnkitError as e:
            message: str | None = str(e)
        except OSError as e:
            message = os_error_message(e)
            if message is None:
                raise
        except sqlite3.Error as e:
            message = sqlite_error_message(e)
            if message is None:
                raise
        typer.echo(error_line(message), err=True)
        raise typer.Exit(2)

    return wrapper  # type: ignore[return-value]


def _threads_from_env() -> None:
    """``UNLEARNKIT_THREADS=N``: torch's intra-op threads (an integer in 1..4096)."""
    threads = os.environ.get("UNLEARNKIT_THREADS", "").strip()
    if not threads:
        return
    if not (threads.isascii() and threads.isdigit() and 1 <= int(threads) <= 4096):
        raise ConfigError(f"UNLEARNKIT_THREADS must be an integer in 1..4096, got {threads!r}")
    import torch

    torch.set_num_threads(int(threads))


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
