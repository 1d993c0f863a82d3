"""The restricted CIFAR unpickler: a file can never make the loader allocate more than it holds.

Each crafted pickle below is a few hundred bytes that, unrestricted, would make numpy build
(or try to allocate) arrays of tens of megabytes up to tens of gibibytes. The loader must refuse
each with DataError while tracemalloc (which numpy reports its buffers to) sees under 1 MiB.
"""

from __future__ import annotations

import pickle
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct

from unlearnkit.data import load_dataset
from unlearnkit.data.safe_pickle import load_restricted_pickle
from unlearnkit.errors import DataError

LIMIT = 1 << 20  # 1 MiB: far above the few kB a refusal needs, far below any fake batch


class Reduce:
    """Pickles as ``fn(*args)`` (then ``BUILD state`` when a state is given)."""

    def __init__(self, fn, args, state=None):
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def array_pickle(shape, dtype, raw: bytes) -> Reduce:
    """numpy's own pickle of an array (``_reconstruct`` + ``__setstate__``) with any content."""
    return Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, shape, np.dtype(dtype), False, raw))


def batch(data, labels) -> dict:
    return {b"batch_label": b"x", b"data": data, b"labels": labels}


def write(path: Path, obj, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def refused(path: Path, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=match):
            load_restricted_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < LIMIT, f"{peak} bytes allocated while refusing {path.name}"


def test_direct_ndarray_call_fake_batch_is_refused(tmp_path):
    # ndarray((60000, 3072), uint8): 184 MB of uninitialised "images" from a ~160-byte file
    fake = Reduce(np.ndarray, ((60000, 3072), "u1"))
    path = write(tmp_path / "fake", batch(fake, Reduce(np.ndarray, ((60000,), "u1"))))
    assert path.stat().st_size < 200
    refused(path, "numpy.ndarray")


def test_direct_ndarray_call_huge_shape_is_refused(tmp_path):
    # 10**7 x 3072 bytes = 28.6 GiB
    path = write(tmp_path / "huge", batch(Reduce(np.ndarray, ((10**7, 3072), "u1")), []))
    assert path.stat().st_size < 200
    refused(path, "numpy.ndarray")


def test_reconstruct_with_a_shape_is_refused(tmp_path):
    # numpy writes _reconstruct(ndarray, (0,), b'b'); any other shape allocates from the file
    rec = Reduce(_reconstruct, (np.ndarray, (10**7, 3072), b"B"))
    path = write(tmp_path / "rec", batch(rec, []))
    refused(path, r"_reconstruct")


@pytest.mark.parametrize(
    ("shape", "raw", "match"),
    [
        ((60000, 3072), b"", r"\(60000, 3072\) uint8 needs 184320000 bytes, the file gives 0"),
        ((10**7, 3072), b"\0" * 16, r"needs 30720000000 bytes, the file gives 16"),
        ((2**62, 2**62), b"", r"shape"),
        ((-1, 3072), b"", r"shape"),
    ],
    ids=["fake-batch", "huge", "overflow", "negative"],
)
def test_array_state_must_hold_its_bytes(tmp_path, shape, raw, match):
    refused(write(tmp_path / "state", batch(array_pickle(shape, "u1", raw), [])), match)


def test_object_and_structured_dtypes_are_refused(tmp_path):
    obj = Reduce(_reconstruct, (np.ndarray, (0,), b"b"), (1, (2,), np.dtype("O"), False, [1, 2]))
    refused(write(tmp_path / "obj", batch(obj, [])), "dtype")
    rec = array_pickle((1,), [("a", "u1"), ("b", "u1")], b"\0\0")
    refused(write(tmp_path / "rec", batch(rec, [])), "dtype")
    sub = array_pickle((1,), ("u1", (10**6,)), b"")
    refused(write(tmp_path / "sub", batch(sub, [])), "dtype")


def test_reused_bytes_do_not_multiply(tmp_path):
    # one 64 kB string referenced 1000 times (memo): 64 MB of arrays from a 70 kB file
    raw = b"\7" * 65536
    arrays = [array_pickle((16, 4096), "u1", raw) for _ in range(1000)]
    path = write(tmp_path / "memo", batch(arrays, []))
    assert path.stat().st_size < 200_000
    refused(path, "more array bytes than the file holds")


@pytest.mark.parametrize(
    ("raw", "match"),
    [  # hand-written opcodes: CPython allocates the declared size before reading it
        (b"\x80\x04\x8e" + struct.pack("<Q", 2**33) + b"abc.", "bytes8"),  # BINBYTES8, 8 GiB
        (b"\x80\x04\x96" + struct.pack("<Q", 2**33) + b"abc.", "bytearray8"),  # BYTEARRAY8
        (b"\x80\x02K\x01r" + struct.pack("<I", 2**24) + b".", "memo index 16777216"),  # PUT
        (b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"K\x01.", "frame"),
    ],
    ids=["binbytes8", "bytearray8", "long_binput", "frame"],
)
def test_declared_sizes_must_be_present(tmp_path, raw, match):
    path = tmp_path / "ops"
    path.write_bytes(raw)
    refused(path, match)


def test_real_arrays_still_load_and_are_plain_writable_ndarrays(tmp_path):
    data = np.arange(3 * 3072, dtype=np.int64).reshape(3, 3072).astype(np.uint8)
    floats = np.linspace(-1.0, 1.0, 7).reshape(7, 1)
    for protocol in (2, 4, 5):
        path = write(tmp_path / f"p{protocol}", {b"data": data, b"f": [floats], b"n": 3}, protocol)
        obj = load_restricted_pickle(path)
        assert type(obj[b"data"]) is np.ndarray and obj[b"data"].flags.writeable
        assert np.array_equal(obj[b"data"], data) and obj[b"data"].dtype == np.uint8
        assert np.array_equal(obj[b"f"][0], floats) and obj[b"n"] == 3


def test_python2_cpickle_layout_of_the_official_files_loads(tmp_path):
    # what Python 2's cPickle + numpy 1.x wrote in 2009: str opcodes, numpy.core, int flags
    raw = (
        b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02"
        b"cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02K\x03\x86q\x05"
        b"cnumpy\ndtype\nq\x06U\x02u1K\x00K\x01\x87Rq\x07(K\x03U\x01|NNNJ\xff\xff\xff\xff"
        b"J\xff\xff\xff\xffK\x00tb\x89U\x06abcdeftbU\x06labelsq\x08]q\t(K\x03K\x07eu."
    )
    path = tmp_path / "py2"
    path.write_bytes(raw)
    obj = load_restricted_pickle(path)
    assert obj[b"labels"] == [3, 7]
    assert obj[b"data"].tolist() == [[97, 98, 99], [100, 101, 102]]  # b"abcdef", row-major


# ---------------------------------------------------------------- CIFAR batch semantics


def write_cifar_test_batch(root: Path, obj) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(exist_ok=True)
    names = [b"c%d" % i for i in range(10)]
    write(folder / "batches.meta", {b"label_names": names})
    write(folder / "test_batch", obj)


def test_cifar_loader_refuses_the_fake_batch_with_a_clear_message(tmp_path):
    fake = Reduce(np.ndarray, ((60000, 3072), "u1"))
    write_cifar_test_batch(tmp_path, batch(fake, Reduce(np.ndarray, ((60000,), "u1"))))
    with pytest.raises(DataError, match=r"test_batch.*numpy.ndarray"):
        load_dataset("cifar10", root=tmp_path, split="test")


def test_cifar_batch_over_10000_images_is_refused(tmp_path):
    data = np.zeros((10001, 3072), np.uint8)
    write_cifar_test_batch(tmp_path, batch(data, [0] * 10001))
    with pytest.raises(DataError, match="10001 images; a CIFAR-10 batch holds at most 10000"):
        load_dataset("cifar10", root=tmp_path, split="test")
