"""Where each trainable parameter lives in the flat parameter vector θ ∈ R^d.

Order is ``model.named_parameters()`` restricted to ``requires_grad`` parameters; each tensor is
flattened row-major. Curvature rows, solvers and the erasure state all index θ this way.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unlearnkit.errors import ConfigError, UnsupportedError


@dataclass(frozen=True)
class ParamLayout:
    """Where each trainable parameter lives in the flat vector of length ``d``.

    Order is ``model.named_parameters()`` restricted to ``requires_grad`` parameters; each
    tensor is flattened row-major (``tensor.reshape(-1)``).
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]

    @classmethod
    def from_model(cls, model: nn.Module) -> ParamLayout:
        names: list[str] = []
        shapes: list[tuple[int, ...]] = []
        offsets: list[int] = []
        off = 0
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            names.append(name)
            shapes.append(tuple(p.shape))
            offsets.append(off)
            off += p.numel()
        if not names:
            raise UnsupportedError("the model has no trainable parameters (requires_grad=True)")
        return cls(tuple(names), tuple(shapes), tuple(offsets))

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def d(self) -> int:
        """Total number of trainable parameters."""
        return self.offsets[-1] + self.numels[-1]

    def slice_of(self, name: str) -> slice:
        """The flat index range of parameter ``name``."""
        try:
            i = self.names.index(name)
        except ValueError:
            raise ConfigError(f"no trainable parameter named {name!r}") from None
        return slice(self.offsets[i], self.offsets[i] + self.numels[i])

    def flatten(
        self, tensors: Mapping[str, Tensor], batch_dims: int = 0, out: Tensor | None = None
    ) -> Tensor:
        """Concatenate ``tensors[name]`` (shape ``(*batch, *shape)``) into ``(*batch, d)``.

        With ``out`` (shape ``(*batch, d)``, any dtype/device) the parts are copied into it,
        which saves one temporary the size of the result.
        """
        parts = []
        for name, shape in zip(self.names, self.shapes, strict=True):
            t = tensors[name]
            batch = t.shape[:batch_dims]
            if tuple(t.shape[batch_dims:]) != shape:
                raise ConfigError(f"{name}: expected shape {shape}, got {tuple(t.shape)}")
            parts.append(t.reshape(*batch, -1))
        if out is None:
            return torch.cat(parts, dim=-1)
        for part, off, k in zip(parts, self.offsets, self.numels, strict=True):
            out[..., off : off + k].copy_(part)
        return out

    def unflatten(self, vec: Tensor) -> dict[str, Tensor]:
        """Split a ``(*batch, d)`` tensor into ``{name: (*batch, *shape)}`` views."""
        if vec.shape[-1] != self.d:
            raise ConfigError(f"expected a vector of length {self.d}, got {vec.shape[-1]}")
        batch = vec.shape[:-1]
        return {
            name: vec[..., off : off + k].reshape(*batch, *shape)
            for name, shape, off, k in zip(
                self.names, self.shapes, self.offsets, self.numels, strict=True
            )
        }

    @classmethod
    def from_names_shapes(
        cls,
        names: list[str] | tuple[str, ...],
        shapes: list[list[int]] | tuple[tuple[int, ...], ...],
    ) -> ParamLayout:
        """The layout of parameters ``names`` with ``shapes`` (in order), e.g. from a manifest."""
        offsets, off = [], 0
        for s in shapes:
            offsets.append(off)
            off += math.prod(int(k) for k in s)
        return cls(tuple(names), tuple(tuple(int(k) for k in s) for s in shapes), tuple(offsets))


def flat_params(model: nn.Module, layout: ParamLayout) -> Tensor:
    """θ as a flat vector in ``layout`` order (trainable parameters)."""
    params = dict(model.named_parameters())
    return layout.flatten({n: params[n].detach() for n in layout.names})


def with_params(model: nn.Module, layout: ParamLayout, theta: Tensor) -> nn.Module:
    """A deep copy of ``model`` with its trainable parameters set from the flat ``theta``."""
    out = copy.deepcopy(model)
    params = dict(out.named_parameters())
    with torch.no_grad():
        for name, value in layout.unflatten(theta).items():
            params[name].copy_(value.to(params[name].dtype))
    return out
