"""A restricted unpickler for the one pickle format we must read: CIFAR-10's python batches.

Risk: ``pickle.load`` on a file someone hands you can run arbitrary code, because a pickle may
name any importable callable, and even the callables an array needs let a tiny file drive huge
allocations (``numpy.ndarray((10**7, 3072), 'u1')`` is 28.6 GiB from a 163-byte file).
CIFAR-10 is distributed only as pickles (``cifar-10-batches-py``), so
:func:`load_restricted_pickle` reads them in two passes over the bytes held in memory:

1. :func:`pickletools.genops` walks every opcode first, which checks that each length the file
   declares (bytes, strings, frames) is actually present, and that memo indices are numbered
   consecutively; CPython's unpickler would otherwise allocate a declared 8 GiB ``BINBYTES8``
   or a memo table of ``LONG_BINPUT 2**31`` entries before noticing the file is short.
2. :class:`RestrictedUnpickler` resolves only :data:`ALLOWED_GLOBALS`, each mapped to a guarded
   stand-in, never to numpy itself: ``numpy.ndarray`` cannot be called; ``_reconstruct`` only
   as numpy writes it (``_reconstruct(ndarray, (0,), b'b')``, then ``__setstate__``);
   ``__setstate__`` and ``_frombuffer`` build an array only from bytes in the file, requiring
   ``prod(shape) * itemsize == len(data)``; ``dtype`` only for plain numbers (kinds ``b i u f
   c``: no objects, records or sub-arrays); ``_codecs.encode`` only with ``latin1`` (how
   Python 3 stores bytes in a protocol-2 pickle); ``bytes`` only as ``bytes()``.

All arrays together may hold at most as many bytes as the file, and so may all encoded
strings: a buffer the memo reuses 1000 times cannot become 1000 arrays. The file itself is
refused above ``max_bytes``. Dicts, lists, strings and numbers are built by opcodes and need no
global; the size of what they build is linear in the file's (a 46 MB batch peaks at about
4x its size: the file, its decoded text, the encoded bytes and the array). Anything else raises
:class:`~unlearnkit.errors.DataError`. This narrows the attack surface to CPython's unpickler;
it is not a sandbox, so still prefer the official files (check their published SHA-256).
"""

from __future__ import annotations

import io
import math
import pickle
import pickletools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import DataError

DEFAULT_MAX_BYTES = 64 << 20
"""Largest pickle read (64 MiB); an official CIFAR-10 batch is 31 MB, 46 MB re-pickled by
Python 3 at protocol 2 (bytes >= 128 take two bytes in UTF-8)."""
MAX_DEPTH = 64
_NUMBER_KINDS = "biufc"
_ENDIANS = ("<", ">", "|", "=")

ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("numpy.core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "frombuffer",
    ("numpy", "ndarray"): "ndarray",
    ("numpy", "dtype"): "dtype",
    ("_codecs", "encode"): "encode",
    ("__builtin__", "bytes"): "empty_bytes",  # protocol <= 2 writes b"" as bytes()
    ("builtins", "bytes"): "empty_bytes",
}
"""Each global a pickle may name -> the :class:`_Guards` method that stands in for it."""


class _Refused(pickle.UnpicklingError):
    """A guard's refusal (its message is shown as is)."""


def _text(value: Any) -> Any:
    """Python 2 ``str`` arrives as ``bytes`` (``encoding="bytes"``): short codes as text."""
    return value.decode("latin1") if isinstance(value, bytes) and len(value) <= 4 else value


class _Dtype:
    """Stand-in for ``numpy.dtype(code, align, copy)``; ``__setstate__`` may set the byte order."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise _Refused(f"unexpected dtype state {state!r:.80}")
        _, endian, subarray, names, fields = state[:5]
        endian = _text(endian)
        if endian not in _ENDIANS or (subarray, names, fields) != (None, None, None):
            raise _Refused("dtype with sub-arrays or fields is not allowed (only plain numbers)")
        if endian in "<>" and self.dtype.itemsize > 1:
            self.dtype = self.dtype.newbyteorder(endian)


class _Array:
    """Stand-in for ``_reconstruct(ndarray, (0,), b'b')``; ``__setstate__`` fills ``array``."""

    def __init__(self, guards: _Guards) -> None:
        self.guards = guards
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("unexpected ndarray state")
        shape, dtype, fortran, raw = state[-4:]
        self.array = self.guards.build(raw, dtype, shape, "F" if fortran else "C")


class _Guards:
    """The stand-ins one load resolves globals to, sharing the load's byte budgets."""

    def __init__(self, budget: int) -> None:
        self.array_budget = budget
        self.encode_budget = budget

    def ndarray(self, *args: Any, **kwargs: Any) -> Any:
        raise _Refused(
            "the file calls numpy.ndarray(...) directly, which would allocate an array of a "
            "shape the file chooses, filled with no data from it (numpy itself never writes "
            "this)"
        )

    def reconstruct(self, subtype: Any, shape: Any, code: Any) -> _Array:
        if subtype != self.ndarray or shape != (0,) or code not in (b"b", "b"):
            raise _Refused(
                f"_reconstruct{(shape, code)!r:.60} is not how numpy pickles an array "
                "(it writes _reconstruct(ndarray, (0,), b'b') and then the data)"
            )
        return _Array(self)

    def dtype(self, code: Any, align: Any = False, copy: Any = True) -> _Dtype:
        code = _text(code)
        try:
            dt = np.dtype(code) if isinstance(code, str) and len(code) <= 4 else None
        except TypeError:
            dt = None
        if dt is None or dt.kind not in _NUMBER_KINDS or dt.fields or dt.subdtype:
            raise _Refused(
                f"dtype {code!r:.40} is not allowed (only plain numbers: bool, int, uint, "
                "float, complex; no objects, records or sub-arrays)"
            )
        return _Dtype(dt)

    def frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
        if order not in ("C", "F"):
            raise _Refused(f"array order {order!r:.20} is not 'C' or 'F'")
        return self.build(buf, dtype, shape, order)

    def encode(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise _Refused(f"_codecs.encode is allowed only with 'latin1', not {encoding!r:.20}")
        self.encode_budget -= len(text)
        if self.encode_budget < 0:
            raise _Refused("the file encodes more bytes than it holds (a reused string?)")
        return text.encode("latin1")

    def empty_bytes(self, *args: Any) -> bytes:
        if args:
            raise _Refused("bytes(...) with arguments is not allowed (only bytes())")
        return b""

    def build(self, raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
        """The array of ``shape`` and ``dtype`` whose bytes are exactly ``raw`` (a copy)."""
        if not isinstance(dtype, _Dtype):
            raise _Refused("an array's dtype must be a pickled numpy.dtype")
        dt = dtype.dtype
        if not (
            isinstance(shape, tuple)
            and len(shape) <= 32
            and all(type(s) is int and 0 <= s < 2**63 for s in shape)
        ):
            raise _Refused(f"array shape {shape!r:.60} is not a tuple of sizes >= 0")
        if not isinstance(raw, bytes | bytearray):
            raise _Refused(f"array data must be bytes, got {type(raw).__name__}")
        need = math.prod(shape) * dt.itemsize
        if need != len(raw):
            raise _Refused(
                f"array of shape {shape} {dt} needs {need} bytes, the file gives {len(raw)}: "
                "the array is truncated or crafted"
            )
        self.array_budget -= need
        if self.array_budget < 0:
            raise _Refused("the file's arrays hold more array bytes than the file holds")
        flat = np.frombuffer(raw, dtype=dt).copy()
        return flat.reshape(shape, order=order)  # type: ignore[call-overload]


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves :data:`ALLOWED_GLOBALS` to guarded stand-ins only.

    ``budget``: how many bytes all arrays (and, separately, all encoded strings) may hold;
    :func:`load_restricted_pickle` passes the file's size.
    """

    def __init__(self, file: io.BufferedIOBase | io.BytesIO, *, budget: int, **kw: Any) -> None:
        super().__init__(file, **kw)
        self._guards = _Guards(budget)

    def find_class(self, module: str, name: str) -> Any:
        guard = ALLOWED_GLOBALS.get((module, name))
        if guard is None:
            raise pickle.UnpicklingError(
                f"global {module}.{name} is not allowed (only numpy array reconstruction is)"
            )
        fn: Callable[..., Any] = getattr(self._guards, guard)
        return fn


def check_opcodes(data: bytes) -> None:
    """Walk ``data``'s opcodes without building anything (see the module docstring, pass 1).

    Raises ``ValueError`` when a declared length runs past the end, a frame is longer than
    what is left, or a memo index skips ahead of the entries stored so far.
    """
    stored = 0
    for op, arg, pos in pickletools.genops(io.BytesIO(data)):
        if op.name == "FRAME" and arg > len(data) - (pos or 0):
            raise ValueError(f"frame of {arg} bytes at offset {pos} runs past the end")
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not isinstance(arg, int) or not 0 <= arg <= stored:
                raise ValueError(f"memo index {arg} at offset {pos} skips ahead ({stored} stored)")
            stored = max(stored, arg + 1)
        elif op.name == "MEMOIZE":
            stored += 1


def _plain(obj: Any, seen: dict[int, Any], depth: int = 0) -> Any:
    """``obj`` with every stand-in replaced by what it built (lists and dicts in place)."""
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("an array without its data (no __setstate__)")
        return obj.array
    if isinstance(obj, _Dtype):
        return obj.dtype
    if not isinstance(obj, list | dict | tuple | set | frozenset) or id(obj) in seen:
        return seen.get(id(obj), obj)
    if depth > MAX_DEPTH:
        raise _Refused(f"containers nested deeper than {MAX_DEPTH}")
    if isinstance(obj, list):
        seen[id(obj)] = obj
        obj[:] = [_plain(v, seen, depth + 1) for v in obj]
    elif isinstance(obj, dict):
        seen[id(obj)] = obj
        items = [(_plain(k, seen, depth + 1), _plain(v, seen, depth + 1)) for k, v in obj.items()]
        obj.clear()
        obj.update(items)  # an array as a key raises TypeError (unhashable)
    else:
        seen[id(obj)] = new = type(obj)(_plain(v, seen, depth + 1) for v in obj)
        return new
    return obj


def load_restricted_pickle(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Unpickle ``path`` (Python 2 byte strings kept as ``bytes``) with the restricted unpickler.

    Any failure (too large, unreadable, truncated, forbidden global, an array whose size the
    file does not back) raises DataError naming the file.
    """
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DataError(
                f"{path} is {size} bytes, more than the {max_bytes} a CIFAR-style pickle may "
                "have; it is not a CIFAR-10 batch"
            )
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err}") from None
    try:
        check_opcodes(data)
        obj = RestrictedUnpickler(io.BytesIO(data), budget=len(data), encoding="bytes").load()
        return _plain(obj, {})
    except Exception as err:  # pickle raises many types on corrupt input
        raise DataError(
            f"{path} is not a readable CIFAR-style pickle ({type(err).__name__}: {err}); "
            "re-extract it from the official archive"
        ) from None
