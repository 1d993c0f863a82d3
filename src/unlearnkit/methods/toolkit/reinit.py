"""Re-initialising layers from a seeded CPU generator (reproducible on any device).

:func:`default_reset` is PyTorch's default initialisation (KDE, RNI, BT's incompetent teacher);
:func:`kaiming_xavier_reinit` is EU-k's (Goel et al., arXiv 2201.06640).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from unlearnkit.methods.toolkit.layout import is_norm


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
    ``reset_parameters`` method fall back to it (global RNG, seeded by
    :meth:`Unlearner.unlearn` and restored afterwards).
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


def kaiming_xavier_reinit(
    module: nn.Module, generator: torch.Generator, reset_running_stats: bool
) -> None:
    """EU-k's re-initialisation (Goel et al.) of every submodule of ``module``.

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
