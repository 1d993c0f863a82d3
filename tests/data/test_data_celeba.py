"""CelebA: fixtures with the official text layouts, features or images, refused inputs."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unlearnkit.data import load_dataset, train_val_test_split
from unlearnkit.errors import DataError

ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive"]
FILES = ["000001.jpg", "000002.jpg", "000010.jpg", "000011.jpg", "000100.jpg", "202599.jpg"]
VALUES = [[-1, 1, 1], [-1, -1, -1], [1, -1, 1], [-1, 1, -1], [1, 1, 1], [-1, -1, 1]]
PARTS = [0, 0, 0, 1, 2, 2]


def write_celeba(root: Path, layout: str = "flat") -> np.ndarray:
    """The official layout: count line, names line (trailing space), padded +-1 columns."""
    lines = [str(len(FILES)), " ".join(ATTRS) + " "]
    lines += [f + "".join(f"{v:>3d}" for v in row) for f, row in zip(FILES, VALUES, strict=True)]
    anno = root / "Anno" if layout == "official" else root
    evl = root / "Eval" if layout == "official" else root
    anno.mkdir(parents=True, exist_ok=True)
    evl.mkdir(parents=True, exist_ok=True)
    (anno / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (evl / "list_eval_partition.txt").write_text(
        "".join(f"{f} {p}\n" for f, p in zip(FILES, PARTS, strict=True))
    )
    feats = np.arange(len(FILES) * 4, dtype=np.float32).reshape(len(FILES), 4)
    np.save(root / "features.npy", feats)
    return feats


def write_images(root: Path) -> list[tuple[int, int, int]]:
    folder = root / "img_align_celeba"
    folder.mkdir()
    colours = [(20 * i + 10, 200 - 30 * i, 128) for i in range(len(FILES))]
    for f, colour in zip(FILES, colours, strict=True):
        Image.new("RGB", (6, 8), colour).save(folder / f, quality=95)  # width 6, height 8
    return colours


def test_features_ids_labels(tmp_path):
    feats = write_celeba(tmp_path)
    ds = load_dataset("celeba", root=tmp_path)
    assert ds.task == "multilabel" and ds.classes == tuple(ATTRS)
    assert ds.ids.tolist() == [1, 2, 10, 11, 100, 202599]
    assert torch.equal(ds.x, torch.from_numpy(feats))
    assert ds.y.tolist() == [[float(v == 1) for v in row] for row in VALUES]
    assert ds.meta["official_val_ids"].tolist() == [11]
    assert ds.meta["official_test_ids"].tolist() == [100, 202599]
    s = train_val_test_split(ds, 0.3, 0.3)  # official val and test: fractions unused
    assert s.official and s.train.ids.tolist() == [1, 2, 10] and s.val.ids.tolist() == [11]


def test_split_and_subsample(tmp_path):
    write_celeba(tmp_path)
    train = load_dataset("celeba", root=tmp_path, split="train")
    assert train.ids.tolist() == [1, 2, 10]
    assert load_dataset("celeba", root=tmp_path, split="test").ids.tolist() == [100, 202599]
    a = load_dataset("celeba", root=tmp_path, subsample=0.5, seed=3)
    b = load_dataset("celeba", root=tmp_path, subsample=0.5, seed=3)
    assert len(a) == 3 and torch.equal(a.ids, b.ids)
    ids = np.array([1, 2, 10, 11, 100, 202599])
    expected = np.sort(ids[np.random.default_rng(3).choice(6, size=3, replace=False)])
    assert a.ids.tolist() == expected.tolist()
    sub_train = load_dataset("celeba", root=tmp_path, split="train", subsample=0.7)
    assert len(sub_train) == 2 and set(sub_train.ids.tolist()) <= {1, 2, 10}


def test_official_subfolders_and_images(tmp_path):
    write_celeba(tmp_path, layout="official")
    (tmp_path / "features.npy").unlink()
    (tmp_path / "Img").mkdir()
    colours = write_images(tmp_path / "Img")
    ds = load_dataset("celeba", root=tmp_path, split="val")
    assert ds.meta["source"] == "images"
    assert ds.x.shape == (1, 3, 8, 6) and ds.ids.tolist() == [11]
    np.testing.assert_allclose(ds.x[0, :, 0, 0].numpy() * 255, colours[3], atol=3)
    small = load_dataset("celeba", root=tmp_path, split="test", resize=(4, 3))
    assert small.x.shape == (2, 3, 4, 3)


def test_source_choice(tmp_path):
    feats = write_celeba(tmp_path)
    write_images(tmp_path)
    assert torch.equal(load_dataset("celeba", root=tmp_path).x, torch.from_numpy(feats))
    assert load_dataset("celeba", root=tmp_path, source="images").x.shape == (6, 3, 8, 6)


def rewrite(root: Path, name: str, edit) -> None:
    path = root / name
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("list_attr_celeba.txt", lambda ls: ls[:2] + [ls[2] + " 1"] + ls[3:], r":3: 5 columns"),
        ("list_attr_celeba.txt", lambda ls: ["7"] + ls[1:], "announces 7 images but 6"),
        ("list_attr_celeba.txt", lambda ls: ["n/a"] + ls[1:], "expected the number of images"),
        ("list_attr_celeba.txt", lambda ls: ls[:3] + [ls[3].replace("-1", " 0", 1)] + ls[4:],
         ":4: attribute values must be 1 or -1"),
        ("list_attr_celeba.txt", lambda ls: ls[:2] + ["face1.jpg" + ls[2][10:]] + ls[3:],
         "not an image file name"),
        ("list_eval_partition.txt", lambda ls: ls[:-1], "no partition for 1 image"),
        ("list_eval_partition.txt", lambda ls: ls[:1] + ["000002.jpg 3"] + ls[2:], ":2: expected"),
    ],
)  # fmt: skip
def test_malformed_text_files(tmp_path, name, edit, message):
    write_celeba(tmp_path)
    rewrite(tmp_path, name, edit)
    with pytest.raises(DataError, match=message):
        load_dataset("celeba", root=tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        load_dataset("celeba", root=tmp_path / "nope")
    write_celeba(tmp_path)
    (tmp_path / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt"):
        load_dataset("celeba", root=tmp_path)
    write_celeba(tmp_path)
    (tmp_path / "features.npy").unlink()
    with pytest.raises(DataError, match="neither .*features.npy nor the image folder"):
        load_dataset("celeba", root=tmp_path)
    with pytest.raises(DataError, match="missing .*features.npy"):
        load_dataset("celeba", root=tmp_path, source="features")
    write_images(tmp_path)
    (tmp_path / "img_align_celeba" / "000010.jpg").unlink()
    with pytest.raises(DataError, match="missing image .*000010.jpg"):
        load_dataset("celeba", root=tmp_path, source="images")


def test_bad_features(tmp_path):
    write_celeba(tmp_path)
    np.save(tmp_path / "features.npy", np.zeros((5, 4), np.float32))
    with pytest.raises(DataError, match=r"expected \(6, p\)"):
        load_dataset("celeba", root=tmp_path)
    np.save(tmp_path / "features.npy", np.array([{"a": 1}] * 6, dtype=object))
    with pytest.raises(DataError, match="not a readable .npy"):
        load_dataset("celeba", root=tmp_path)
    bad = np.zeros((6, 4), np.float32)
    bad[2, 1] = np.nan
    np.save(tmp_path / "features.npy", bad)
    with pytest.raises(DataError, match="NaN"):
        load_dataset("celeba", root=tmp_path)


def png_bomb(width: int, height: int, rows: int | None = None) -> bytes:
    """An RGB PNG of ``width x height`` black pixels: ``rows`` rows of data (all by default)
    compress ~1000:1, so the file is tiny and only decoding it costs ``3 * width * height``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(height if rows is None else rows)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("width", "height", "rows"),
    [(4000, 4000, None), (60000, 60000, 1)],  # 48 MB to decode; 10.8 GB, past PIL's own limit
    ids=["bomb-48MB", "bomb-10GB"],
)
def test_image_bomb_is_refused_from_its_header(tmp_path, width, height, rows):
    write_celeba(tmp_path)
    (tmp_path / "features.npy").unlink()
    write_images(tmp_path)
    bomb = png_bomb(width, height, rows)
    assert len(bomb) < 100_000
    (tmp_path / "img_align_celeba" / "000011.jpg").write_bytes(bomb)  # the only val image
    start = time.perf_counter()
    with pytest.raises(DataError, match=rf"000011.jpg declares ({width}x{height}|too many) pixels"):
        load_dataset("celeba", root=tmp_path, split="val")
    assert time.perf_counter() - start < 2.0


def test_images_of_other_sizes_or_formats_are_refused_before_decoding(tmp_path):
    write_celeba(tmp_path)
    (tmp_path / "features.npy").unlink()
    write_images(tmp_path)
    folder = tmp_path / "img_align_celeba"
    Image.new("RGB", (5, 8)).save(folder / "000100.jpg", format="JPEG")
    with pytest.raises(DataError, match=r"differ in size.*resize"):
        load_dataset("celeba", root=tmp_path, split="test")
    assert load_dataset("celeba", root=tmp_path, split="test", resize=(4, 3)).x.shape[0] == 2
    Image.new("RGB", (6, 8)).save(folder / "000100.jpg", format="BMP")
    with pytest.raises(DataError, match="000100.jpg.*not a JPEG or PNG"):
        load_dataset("celeba", root=tmp_path, split="test")
