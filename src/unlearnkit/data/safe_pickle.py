"""A restricted unpickler for the one pickle format we must read: CIFAR-10's python batches.

Risk: ``pickle.load`` on a file someone hands you can run arbitrary code, because a pickle may
name any importable callable. CIFAR-10 is distributed only as pickles (``cifar-10-batches-py``),
so we read them with :class:`RestrictedUnpickler`, which refuses every global except the ones
numpy needs to rebuild an ``ndarray`` (``_reconstruct``/``_frombuffer``, ``ndarray``, ``dtype``)
and ``_codecs.encode`` (how Python 3 stores bytes in a protocol-2 pickle).
Dicts, lists, strings, bytes, ints and floats are built by pickle opcodes and need no global.
A file that names anything else is refused with :class:`~unlearnkit.errors.DataError`.
This narrows the attack surface to numpy's array reconstruction; it is not a sandbox, so still
prefer files from the official source (check their SHA-256 against the published one).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from unlearnkit.errors import DataError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1");
        # a codec only transforms data and codecs are looked up in the encodings package only.
        ("_codecs", "encode"),
    }
)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed (only numpy array reconstruction is)"
            )
        return super().find_class(module, name)


def load_restricted_pickle(path: Path) -> Any:
    """Unpickle ``path`` (Python 2 byte strings kept as ``bytes``) with the restricted unpickler.

    Any failure (unreadable, truncated, forbidden global) raises DataError naming the file.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # pickle raises many types on corrupt input
        raise DataError(
            f"{path} is not a readable CIFAR-style pickle ({type(err).__name__}: {err}); "
            "re-extract it from the official archive"
        ) from None
