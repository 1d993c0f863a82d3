"""A network seen as ``stem -> blocks -> classifier``, and its convolution layers.

CF-k/EU-k (last k blocks), KDE (stem + head reset) and RNI (head reset) need the layout. The
classifier is found by :func:`unlearnkit.models.find_classifier_head` (or named by the user).
Layouts, tried in order (the first that matches wins):

1. **ResNet** (torchvision ResNet-18, ResNet-20): attributes ``layer1, layer2, ...`` (consecutive,
   from 1) are the blocks; every other top-level child with parameters (``conv1``, ``bn1``, ...)
   except the one holding the classifier is the stem.
2. **TinyViT**: a ``layers`` ModuleList and a top-level classifier: blocks are ``layers[1:]`` (the
   transformer stages); ``layers[0]`` (the conv stage) and the patch embedding form the stem.
3. **Generic fallback**: the blocks are the model's other top-level children that own
   parameters, in registration order; the stem is empty. E.g. the project's ``mlp`` has one
   block (``body``), ``cnn`` one block (``features``), ``linear`` none; a Hugging Face
   ``BertForSequenceClassification`` one block (``bert``) before its ``classifier``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from unlearnkit.errors import ConfigError
from unlearnkit.models import find_classifier_head

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


def model_layout(
    model: nn.Module, head: str | None = None, num_outputs: int | None = None
) -> Layout:
    """Stem, blocks and classifier of ``model`` (see the module docstring for the rules).

    ``head``/``num_outputs`` locate the classifier head as in
    :func:`~unlearnkit.models.find_classifier_head`; the layout's classifier is the top-level
    child that holds it (the head itself when it is a top-level Linear, e.g. ``fc``; the whole
    ``head`` Sequential of a ViT whose last Linear is ``head.1``), neither stem nor block.
    """
    head_name, _ = find_classifier_head(model, head, num_outputs)
    cls_name = head_name.split(".")[0]
    cls_mod = model.get_submodule(cls_name)
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
    if isinstance(layers, nn.ModuleList) and len(layers) > 1:
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
