"""The one augmentation vocabulary of unlearnkit: named batch transforms, composed in order.

An augmentation is a function ``(x, generator) -> x'`` on a batch of images ``(B, C, H, W)``
that draws its randomness only from ``generator`` (so a seeded generator replays it exactly).
The registry :data:`AUGMENTATIONS` holds the primitives; a *pipeline* is a tuple of their
names applied left to right (``()`` is no augmentation). Training recipes
(:class:`~unlearnkit.training.recipes.SGDRecipe` ``augment``) and EU-k's augmented retain loader
use the same names:

- ``hflip``: torchvision ``RandomHorizontalFlip(p=0.5)``;
- ``crop4``: torchvision ``RandomCrop(H×W, padding=4)``.

The CIFAR training transform of Deep Unlearn (Cadet et al., arXiv 2410.01276, §4) is
``("crop4", "hflip")``; its MNIST/FashionMNIST transform is ``("hflip",)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from unlearnkit.errors import UnsupportedError
from unlearnkit.registry import Registry

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Pipeline = tuple[str, ...]

AUGMENTATIONS: Registry[Augment] = Registry("augmentation")

IMAGE_PIPELINE: Pipeline = ("crop4", "hflip")
"""What ``"auto"`` picks for image arrays (Deep Unlearn's CIFAR transform)."""


def hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2: one ``torch.rand(B)`` draw per batch."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, *([1] * (x.dim() - 1))), x.flip(-1), x)


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut an H×W window at a random offset per image.

    Offsets are ``randint(0, 2p+1)`` for rows, then for columns. The zero padding is applied
    to the (already normalised) arrays, i.e. the pad colour is the dataset mean where
    torchvision pads black before normalising.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def _require_images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise UnsupportedError(
            f"augmentation {name!r} needs image batches (B, C, H, W), got {tuple(x.shape)}"
        )


@AUGMENTATIONS.register("hflip")
def _hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    _require_images(x, "hflip")
    return hflip(x, generator)


@AUGMENTATIONS.register("crop4")
def _crop4(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    _require_images(x, "crop4")
    return random_crop(x, generator, padding=4)


def check_pipeline(names: Iterable[str]) -> Pipeline:
    """``names`` as a tuple, each a registered augmentation (``ValueError`` otherwise, so that
    pydantic validators can report it)."""
    out = tuple(names)
    for a in out:
        if a not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {a!r}; known: {AUGMENTATIONS.names()}")
    return out


def compose(names: Iterable[str]) -> Augment:
    """One function applying the named augmentations left to right (identity for ``()``)."""
    fns = [AUGMENTATIONS.get(a) for a in names]
    if not fns:
        return lambda x, generator: x

    def apply(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, generator)
        return x

    return apply


def auto_pipeline(x: torch.Tensor, meta: Mapping[str, Any] | None = None) -> Pipeline:
    """``meta["augment"]`` when the dataset names its pipeline, else :data:`IMAGE_PIPELINE`
    for image arrays ``(N, C, H, W)`` and ``()`` otherwise."""
    named = meta.get("augment") if isinstance(meta, Mapping) else None
    if isinstance(named, (list, tuple)):
        return check_pipeline(named)
    return IMAGE_PIPELINE if x.dim() == 4 else ()
