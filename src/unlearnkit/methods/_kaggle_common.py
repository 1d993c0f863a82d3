"""Model-structure helpers for part B of the method zoo (spec/methods.md §2.11-§2.19).

- :func:`model_layout`: the stem, the ordered "blocks" and the classifier of a network, which
  CF-k/EU-k (last k blocks), KDE (stem + head reset) and RNI (head reset) need;
- :func:`conv_layers`: the convolution layers (MSG, CT, CFW, PRMQ);
- :func:`default_reset`/:func:`goel_reinit`: re-initialisation drawn from a seeded CPU generator
  (so results are reproducible on any device);
- :data:`AUGMENTATIONS`: batch augmentations for EU-k's augmented retain loader (§1.1);
- :func:`frozen_except`, :func:`grad_multipliers`: temporary ``requires_grad`` flags and gradient
  hooks that are always undone, so the returned model carries neither.

Layouts, tried in order (the first that matches wins):

1. **ResNet** (torchvision ResNet-18, ResNet-20): attributes ``layer1, layer2, ...`` (consecutive,
   from 1) are the blocks, the classifier is ``fc`` (or ``head``), every other top-level child
   (``conv1``, ``bn1``, ...) is the stem.
2. **TinyViT**: a ``layers`` ModuleList and a ``head``: blocks are ``layers[1:]`` (the transformer
   stages); ``layers[0]`` (the conv stage) and the patch embedding form the stem (§2.11).
3. **Generic fallback**: the classifier is ``fc`` (or ``head``); the blocks are the model's other
   top-level children that own parameters, in registration order; the stem is empty. E.g. the
   project's ``mlp`` has one block (``body``), ``cnn`` one block (``features``), ``linear`` none.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, UnsupportedError
from unlearnkit.methods._common import ZooUnlearner
from unlearnkit.methods.base import UnlearnData
from unlearnkit.registry import Registry

CLASSIFIER_NAMES: tuple[str, ...] = ("fc", "head")
"""Attribute names under which a classifier is looked up, in order (ResNet, TinyViT)."""

CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Plain convolutions (weight shape C_out × C_in/groups × kernel), not transposed ones."""

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
)


@dataclass(frozen=True)
class Layout:
    """A network seen as ``stem -> blocks[0] -> ... -> blocks[-1] -> classifier``."""

    kind: str
    stem: tuple[tuple[str, nn.Module], ...]
    blocks: tuple[tuple[str, nn.Module], ...]
    classifier: tuple[str, nn.Module]

    def last_blocks(self, k: int) -> list[tuple[str, nn.Module]]:
        """The last ``k`` blocks (all of them if ``k`` exceeds their number)."""
        if k < 0:
            raise ConfigError(f"number of blocks must be >= 0, got {k}")
        return list(self.blocks[len(self.blocks) - min(k, len(self.blocks)) :])


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def find_classifier(model: nn.Module) -> tuple[str, nn.Module]:
    """The classifier: the first of ``fc``/``head`` that is a module with parameters."""
    for name in CLASSIFIER_NAMES:
        m = getattr(model, name, None)
        if isinstance(m, nn.Module) and _has_params(m):
            return name, m
    raise UnsupportedError(
        f"{type(model).__name__} has no classifier attribute ('fc' or 'head' with parameters)"
    )


def model_layout(model: nn.Module) -> Layout:
    """Stem, blocks and classifier of ``model`` (see the module docstring for the rules)."""
    cls_name, cls_mod = find_classifier(model)
    children = [(n, m) for n, m in model.named_children() if n != cls_name]
    resnet = []
    i = 1
    while isinstance(getattr(model, f"layer{i}", None), nn.Module):
        resnet.append((f"layer{i}", getattr(model, f"layer{i}")))
        i += 1
    if resnet:
        block_names = {n for n, _ in resnet}
        stem = tuple((n, m) for n, m in children if n not in block_names and _has_params(m))
        return Layout("resnet", stem, tuple(resnet), (cls_name, cls_mod))
    layers = getattr(model, "layers", None)
    if cls_name == "head" and isinstance(layers, nn.ModuleList) and len(layers) > 1:
        blocks = tuple((f"layers.{j}", layers[j]) for j in range(1, len(layers)))
        stem = tuple(
            [(n, m) for n, m in children if n != "layers" and _has_params(m)]
            + [("layers.0", layers[0])]
        )
        return Layout("tinyvit", stem, blocks, (cls_name, cls_mod))
    blocks = tuple((n, m) for n, m in children if _has_params(m))
    return Layout("generic", (), blocks, (cls_name, cls_mod))


def conv_layers(
    model: nn.Module, kinds: tuple[type[nn.Module], ...] = (nn.Conv2d,)
) -> list[tuple[str, nn.Module]]:
    """Every submodule of one of ``kinds`` (default ``Conv2d``), with its qualified name."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def is_norm(module: nn.Module) -> bool:
    """BatchNorm/InstanceNorm, LayerNorm or GroupNorm."""
    return isinstance(module, NORM_TYPES)


# ----------------------------------------------------------------------------- initialisation


def _fill_(param: torch.Tensor, draw: Callable[[torch.Tensor], object]) -> None:
    """Fill ``param`` in place with values drawn on a CPU float32 scratch tensor."""
    tmp = torch.empty(param.shape, dtype=torch.float32)
    draw(tmp)
    with torch.no_grad():
        param.copy_(tmp.to(param.device, param.dtype))


def uniform_fill_(param: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    """``param ~ U(-bound, bound)`` from ``generator``."""
    _fill_(param, lambda t: nn.init.uniform_(t, -bound, bound, generator=generator))


def fan_in(weight: torch.Tensor) -> int:
    """``weight[0].numel()``: in_features (Linear) or C_in/groups·k_h·k_w (conv)."""
    return int(weight[0].numel()) if weight.dim() > 1 else int(weight.numel())


def fan_out(weight: torch.Tensor) -> int:
    """``size(0) · receptive field``: out_features (Linear) or C_out·k_h·k_w (conv)."""
    return int(weight.shape[0] * (weight[0][0].numel() if weight.dim() > 2 else 1))


def default_reset(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default ``reset_parameters`` for every submodule, drawn from ``generator``.

    Linear/conv: weight ~ kaiming_uniform(a=√5) = U(±1/√fan_in), bias ~ U(±1/√fan_in);
    norm layers: weight 1, bias 0, running statistics reset. Other modules with a
    ``reset_parameters`` method fall back to it (global RNG, seeded by :meth:`Unlearner.unlearn`).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.modules.conv._ConvNd)):
            bound = 1.0 / math.sqrt(fan_in(m.weight)) if fan_in(m.weight) > 0 else 0.0
            uniform_fill_(m.weight, bound, generator)
            if m.bias is not None:
                uniform_fill_(m.bias, bound, generator)
        elif is_norm(m):
            _reset_norm(m, running_stats=True)
        elif any(True for _ in m.parameters(recurse=False)):
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()


def _reset_norm(m: nn.Module, running_stats: bool) -> None:
    with torch.no_grad():
        if getattr(m, "weight", None) is not None:
            m.weight.fill_(1.0)
        if getattr(m, "bias", None) is not None:
            m.bias.zero_()
    if running_stats and hasattr(m, "reset_running_stats"):
        m.reset_running_stats()


def goel_reinit(module: nn.Module, generator: torch.Generator, reset_running_stats: bool) -> None:
    """EU-k's re-initialisation (§2.12) of every submodule of ``module``.

    Conv: Kaiming-uniform (fan_out, ReLU), i.e. U(±√(6/fan_out)), bias 0; BatchNorm: weight 1,
    bias 0, running statistics reset only if ``reset_running_stats``; Linear: Xavier-uniform,
    U(±√(6/(fan_in+fan_out))), bias 0. Other modules (LayerNorm, attention biases) are left as
    they are, as in Deep Unlearn.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            b = math.sqrt(2.0) * math.sqrt(3.0 / fan_out(m.weight))
            uniform_fill_(m.weight, b, generator)
            if m.bias is not None:
                with torch.no_grad():
                    m.bias.zero_()
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            _reset_norm(m, running_stats=reset_running_stats)
        elif isinstance(m, nn.Linear):
            b = math.sqrt(6.0 / (fan_in(m.weight) + fan_out(m.weight)))
            uniform_fill_(m.weight, b, generator)
            if m.bias is not None:
                with torch.no_grad():
                    m.bias.zero_()


# ----------------------------------------------------------------------------- training state


@contextlib.contextmanager
def frozen_except(model: nn.Module, trainable: list[nn.Parameter]) -> Iterator[None]:
    """Set ``requires_grad`` to True exactly on ``trainable``; restore every flag on exit."""
    keep = {id(p) for p in trainable}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(id(p) in keep)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextlib.contextmanager
def grad_multipliers(scales: dict[nn.Parameter, torch.Tensor]) -> Iterator[None]:
    """Multiply each parameter's loss gradient by a fixed tensor while the context is open.

    The hook acts during backpropagation, before the gradient reaches ``.grad``; weight decay
    and momentum, which the optimizer adds later, are therefore not scaled (§2.14).
    """
    handles = []
    try:
        for p, m in scales.items():
            handles.append(p.register_hook(lambda g, m=m: g * m))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (e.g. BatchNorm running statistics) to its value on entry."""
    saved = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for b, v in saved:
                b.copy_(v)


# ----------------------------------------------------------------------------- augmentation

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry[Augment] = Registry("augmentation")


def hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each image of a (B, C, H, W) batch left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], generator=generator) < 0.5
    out = x.clone()
    idx = flip.nonzero().flatten().to(x.device)
    out[idx] = x[idx].flip(-1)
    return out


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """RandomCrop(H×W, padding) per image: zero-pad by ``padding``, cut a random H×W window.

    The zero padding is applied to the (already normalised) arrays, i.e. the pad colour is the
    dataset mean where torchvision pads black before normalising.
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


@AUGMENTATIONS.register("none")
def _aug_none(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


@AUGMENTATIONS.register("flip")
def _aug_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """MNIST/FashionMNIST's training transform in Deep Unlearn: horizontal flip only."""
    _require_images(x, "flip")
    return hflip(x, generator)


@AUGMENTATIONS.register("crop_flip")
def _aug_crop_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """CIFAR's training transform: RandomCrop(32, padding 4) then RandomHorizontalFlip."""
    _require_images(x, "crop_flip")
    return hflip(random_crop(x, generator), generator)


def resolve_augmentation(name: str, x: torch.Tensor, meta: dict) -> str:
    """``"auto"``: ``meta["augmentation"]`` if the dataset names one, else ``"crop_flip"`` for
    image arrays (N, C, H, W) and ``"none"`` otherwise. Other names are returned as given."""
    if name != "auto":
        return name
    named = meta.get("augmentation") if isinstance(meta, dict) else None
    if isinstance(named, str):
        return named
    return "crop_flip" if x.dim() == 4 else "none"


# ----------------------------------------------------------------------------- base class


def _check_conv2d(model: nn.Module, who: str) -> None:
    if not conv_layers(model):
        raise UnsupportedError(f"{who} needs a model with Conv2d layers")


def _check_convnd(model: nn.Module, who: str) -> None:
    if not conv_layers(model, CONV_TYPES):
        raise UnsupportedError(f"{who} needs a model with Conv1d/Conv2d/Conv3d layers")


def _check_square_conv2d(model: nn.Module, who: str) -> None:
    _check_conv2d(model, who)
    for name, m in conv_layers(model):
        kh, kw = m.weight.shape[-2:]
        if kh != kw:
            raise UnsupportedError(
                f"{who} transposes kernels and needs square ones; {name} has {kh}x{kw}"
            )


def _check_conv_or_linear(model: nn.Module, who: str) -> None:
    if not any(isinstance(m, (*CONV_TYPES, nn.Linear)) for m in model.modules()):
        raise UnsupportedError(f"{who} needs a model with Conv or Linear layers")


def _check_fc_or_head(model: nn.Module, who: str) -> None:
    model_layout(model)


REQUIREMENT_CHECKS: Registry[Callable[[nn.Module, str], None]] = Registry("model requirement")
REQUIREMENT_CHECKS.register("conv2d")(_check_conv2d)
REQUIREMENT_CHECKS.register("convnd")(_check_convnd)
REQUIREMENT_CHECKS.register("square_conv2d")(_check_square_conv2d)
REQUIREMENT_CHECKS.register("fc_or_head")(_check_fc_or_head)
REQUIREMENT_CHECKS.register("conv_or_linear")(_check_conv_or_linear)


class PartBUnlearner(ZooUnlearner):
    """:class:`ZooUnlearner` plus the model requirements of part B, declared in ``requires``:

    ``"conv2d"`` (at least one Conv2d), ``"convnd"`` (at least one Conv1d/2d/3d),
    ``"square_conv2d"`` (and every kernel square),
    ``"fc_or_head"`` (a classifier named ``fc`` or ``head``), ``"conv_or_linear"`` (at least one
    Conv or Linear layer). Failing ones raise :class:`UnsupportedError` before any work.

    Splits listed in ``unlabelled`` (KDE's val) must be present and non-empty, but their labels
    are never read, not even by the checks.
    """

    unlabelled: ClassVar[tuple[str, ...]] = ()

    def check(self, model: nn.Module, data: UnlearnData) -> None:
        """The zoo's data checks (labels skipped for ``unlabelled``) and the model requirements.

        Same rules as :meth:`ZooUnlearner.check` and :meth:`Unlearner.check`, re-stated here so
        that the label checks can skip the unlabelled splits.
        """
        who = self.abbreviation
        for split in self.uses:
            ds: ArrayDataset | None = getattr(data, split, None)
            if ds is None:
                raise UnsupportedError(f"{who} needs {split} data (got None)")
            if ds.x.shape[0] == 0:
                raise UnsupportedError(f"{who} needs a non-empty {split} set")
            if split in self.unlabelled:
                continue
            if ds.task != "multiclass" or ds.y.dtype != torch.int64 or ds.y.ndim != 1:
                raise UnsupportedError(
                    f"{who} handles multiclass data only (int64 class labels); "
                    f"{split} set {ds.name!r} has task {ds.task!r}"
                )
            if ds.num_outputs < 2:
                raise UnsupportedError(
                    f"{who} needs at least 2 classes; {split} set {ds.name!r} has {ds.num_outputs}"
                )
        if "conv" in self.requires and not any(
            isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()
        ):
            raise UnsupportedError(f"{who} needs a model with convolution layers")
        for req in self.requires:
            if req in REQUIREMENT_CHECKS:
                REQUIREMENT_CHECKS.get(req)(model, who)
