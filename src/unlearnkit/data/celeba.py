"""CelebA (Liu et al., ICCV 2015) from the official annotation files in a folder the user names.

Expected files in ROOT (or in the official sub-folders ``ROOT/Anno``, ``ROOT/Eval``, ``ROOT/Img``)::

    list_attr_celeba.txt     line 1: the number of images N
                             line 2: the 40 attribute names, separated by spaces
                             then N lines: ``000001.jpg  -1  1  1 -1 ...`` (one +-1 per attribute)
    list_eval_partition.txt  N lines: ``000001.jpg 0`` (0 = train, 1 = val, 2 = test)
    and one input source:
    features.npy             float array (N, p), row i = the i-th image of list_attr_celeba.txt
                             (e.g. VGG-Face features, as in the SSSE paper); loaded without pickle
    img_align_celeba/*.jpg   the aligned 178x218 images (JPEG or PNG, read with Pillow; sizes are
                             checked from the headers before decoding, at most 1024 pixels a
                             side; ``resize`` optional)

``y[i, a] = 1`` where the attribute value is 1 and 0 where it is -1; ``classes`` are the
attribute names. Ids are the numbers in the file names (``000001.jpg`` -> 1), so they match the
official release. ``split`` picks an official partition; ``split="all"`` records partitions 1
and 2 as the official val/test splits. ``subsample`` keeps ``round(subsample * n)`` samples of
the chosen split, drawn without replacement by ``numpy.random.default_rng(seed)`` over the ids in
increasing order (the SSSE paper trains on a random 10 % of the train split).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from unlearnkit.data.arrays import as_ids, build_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.registry import DatasetParams, register_dataset
from unlearnkit.errors import DataError

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
FEATURES_FILE = "features.npy"
IMAGE_DIR = "img_align_celeba"
IMAGE_FORMATS = ("JPEG", "PNG")
ALIGNED_SIZE = (178, 218)  # (width, height) of the aligned images
MAX_SIDE = 1024  # pixels; larger images are refused from their header, before decoding
PARTITIONS = {"train": 0, "val": 1, "test": 2}
_NAME = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


class CelebaParams(DatasetParams):
    root: Path
    split: Literal["train", "val", "test", "all"] = "all"
    source: Literal["auto", "features", "images"] = Field(
        "auto", description="auto: features.npy when present, else the images"
    )
    resize: tuple[int, int] | None = Field(None, description="(height, width) for images")
    subsample: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


def _find(root: Path, name: str, subdirs: tuple[str, ...]) -> Path | None:
    for folder in (root, *(root / s for s in subdirs)):
        if (folder / name).exists():
            return folder / name
    return None


def _require(root: Path, name: str, subdirs: tuple[str, ...], what: str) -> Path:
    path = _find(root, name, subdirs)
    if path is None:
        raise DataError(f"CelebA: missing {root / name} ({what})")
    return path


def image_id(filename: str, path: Path, line: int) -> int:
    """The id of a CelebA file name: ``000001.jpg`` -> 1."""
    match = _NAME.match(filename)
    if match is None:
        raise DataError(f"{path}:{line}: {filename!r} is not an image file name like 000001.jpg")
    return int(match.group(1))


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read {path} as text ({err})") from None


def read_attributes(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(file names, attribute names, {0,1} float32 matrix) from ``list_attr_celeba.txt``."""
    lines = [ln for ln in _lines(path) if ln.strip()]
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and an attribute-name line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the number of images, got {lines[0]!r}") from None
    names = lines[1].split()
    rows = lines[2:]
    if len(rows) != count:
        raise DataError(f"{path}: line 1 announces {count} images but {len(rows)} rows follow")
    files, values = [], []
    for i, row in enumerate(rows, start=3):
        tokens = row.split()
        if len(tokens) != len(names) + 1:
            raise DataError(
                f"{path}:{i}: {len(tokens)} columns, expected {len(names) + 1} "
                f"(a file name and {len(names)} attribute values)"
            )
        if any(t not in ("1", "-1") for t in tokens[1:]):
            raise DataError(f"{path}:{i}: attribute values must be 1 or -1")
        files.append(tokens[0])
        values.append([t == "1" for t in tokens[1:]])
    return files, names, np.asarray(values, dtype=np.float32).reshape(count, len(names))


def read_partition(path: Path, files: list[str]) -> np.ndarray:
    """Partition code (0 train, 1 val, 2 test) of each of ``files``."""
    table: dict[str, int] = {}
    for i, row in enumerate(_lines(path), start=1):
        tokens = row.split()
        if not tokens:
            continue
        if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
            raise DataError(f"{path}:{i}: expected 'FILENAME PARTITION' with PARTITION 0, 1 or 2")
        table[tokens[0]] = int(tokens[1])
    missing = [f for f in files if f not in table]
    if missing:
        raise DataError(f"{path}: no partition for {len(missing)} image(s), first {missing[0]!r}")
    return np.asarray([table[f] for f in files], dtype=np.int64)


def _features(path: Path, rows: np.ndarray, n_files: int) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable .npy array ({err})") from None
    if arr.ndim != 2 or arr.shape[0] != n_files:
        raise DataError(
            f"{path}: shape {arr.shape}, expected ({n_files}, p): one row per image of {ATTR_FILE}"
        )
    feats = np.asarray(arr[rows], dtype=np.float32)
    if not np.isfinite(feats).all():
        raise DataError(f"{path}: features contain NaN or Inf")
    return feats


def _image_sizes(folder: Path, files: list[str]) -> list[tuple[int, int]]:
    """(width, height) of each image, from its header only: nothing is decoded.

    Refuses a file that is not JPEG or PNG (Pillow would otherwise run any of its decoders,
    EPS through Ghostscript included) and one whose header declares more than
    :data:`MAX_SIDE` pixels on a side (the aligned images are 178 x 218): a PNG of a few kB can
    declare 60000 x 60000 pixels, 10.8 GB to decode (a decompression bomb).
    """
    from PIL import Image

    sizes = []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CelebA: missing image {path}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path, formats=IMAGE_FORMATS) as img:
                    size = img.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise DataError(
                f"CelebA: {path} declares too many pixels, a decompression bomb ({err})"
            ) from None
        except Image.UnidentifiedImageError:
            raise DataError(f"CelebA: image {path} is not a JPEG or PNG file") from None
        except Exception as err:  # noqa: BLE001 - Pillow's parsers raise many types
            raise DataError(f"CelebA: cannot read image {path} ({err})") from None
        if max(size) > MAX_SIDE or min(size) < 1:
            raise DataError(
                f"CelebA: {path} declares {size[0]}x{size[1]} pixels; the aligned images are "
                f"{ALIGNED_SIZE[0]}x{ALIGNED_SIZE[1]} and at most {MAX_SIDE} pixels a side are "
                "read (a larger image is corrupt, crafted, or not from img_align_celeba)"
            )
        sizes.append(size)
    return sizes


def _images(folder: Path, files: list[str], resize: tuple[int, int] | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow is installed with matplotlib
        raise DataError("reading CelebA images needs Pillow; or provide features.npy") from None
    sizes = _image_sizes(folder, files)
    if resize is None and len(set(sizes)) > 1:
        first = {s: f for f, s in zip(files, sizes, strict=True)}
        shown = ", ".join(f"{f} is {w}x{h}" for (w, h), f in list(first.items())[:3])
        raise DataError(f"CelebA images differ in size (w x h: {shown}); pass resize=(h, w)")
    out = []
    for name, size in zip(files, sizes, strict=True):
        path = folder / name
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as img:
                if img.size != size:
                    raise DataError(f"CelebA: image {path} changed while it was read")
                img = img.convert("RGB")
                if resize is not None:
                    img = img.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
                out.append(np.asarray(img, dtype=np.uint8))
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - Pillow's decoders raise many types
            raise DataError(f"CelebA: cannot read image {path} ({err})") from None
    return np.stack(out).transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)


@register_dataset(
    "celeba",
    task="multilabel",
    size=202599,
    input_shape="(p,) from features.npy, or (3, 218, 178) images",
    num_outputs=40,
    description="CelebA's 40 attributes from the official files in ROOT; params root, split, ...",
    params=CelebaParams,
)
def load_celeba(params: CelebaParams) -> ArrayDataset:
    root = params.root
    if not root.is_dir():
        raise DataError(f"CelebA root {root} is not a directory")
    attr_path = _require(root, ATTR_FILE, ("Anno",), "the attribute annotations")
    part_path = _require(root, PARTITION_FILE, ("Eval",), "the train/val/test partition")
    files, names, labels = read_attributes(attr_path)
    ids = np.asarray([image_id(f, attr_path, i) for i, f in enumerate(files, 3)], dtype=np.int64)
    if len(np.unique(ids)) != len(ids):
        raise DataError(f"{attr_path}: image file names repeat")
    partition = read_partition(part_path, files)

    rows = np.arange(len(files))
    if params.split != "all":
        rows = rows[partition == PARTITIONS[params.split]]
    if params.subsample < 1.0:
        keep = round(params.subsample * len(rows))
        if keep == 0:
            raise DataError(f"subsample={params.subsample} keeps no sample of {len(rows)}")
        order = rows[np.argsort(ids[rows], kind="stable")]
        picked = np.random.default_rng(params.seed).choice(len(order), size=keep, replace=False)
        rows = np.sort(order[picked])

    features = _find(root, FEATURES_FILE, ())
    images = _find(root, IMAGE_DIR, ("Img",))
    source = params.source
    if source == "auto":
        source = "features" if features is not None else "images"
    if source == "features":
        if features is None:
            raise DataError(f"CelebA: missing {root / FEATURES_FILE} (an (N, p) float array)")
        x = _features(features, rows, len(files))
    else:
        if images is None:
            raise DataError(
                f"CelebA: found neither {root / FEATURES_FILE} nor the image folder "
                f"{root / IMAGE_DIR}/ (000001.jpg, ...)"
            )
        x = _images(images, [files[i] for i in rows], params.resize)

    meta: dict[str, Any] = {"root": str(root), "split": params.split, "source": source}
    if params.split == "all":
        meta["official_val_ids"] = as_ids(np.sort(ids[rows][partition[rows] == 1]))
        meta["official_test_ids"] = as_ids(np.sort(ids[rows][partition[rows] == 2]))
    return build_dataset("celeba", x, labels[rows], ids[rows], "multilabel", names, meta)
