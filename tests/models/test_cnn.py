"""The small CNN: layer types, hand-counted parameters, no coupling between samples."""

from __future__ import annotations

import torch
from torch import nn

from unlearnkit.models import build_model, count_parameters


def test_conv1d_for_signals_conv2d_for_images() -> None:
    m1 = build_model("cnn", (1, 40), 10, seed=0)
    m2 = build_model("cnn", (1, 28, 28), 10, seed=0)
    assert any(isinstance(m, nn.Conv1d) for m in m1.modules())
    assert not any(isinstance(m, nn.Conv2d) for m in m1.modules())
    assert any(isinstance(m, nn.Conv2d) for m in m2.modules())
    # conv(1->32, 3) + conv(32->64, 3) + fc(64 * 4 cells -> 10)
    assert count_parameters(m1) == (1 * 32 * 3 + 32) + (32 * 64 * 3 + 64) + (64 * 4 * 10 + 10)
    # conv(1->32, 3x3) + conv(32->64, 3x3) + fc(64 * 4x4 cells -> 10)
    assert count_parameters(m2) == (1 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 16 * 10 + 10)


def test_batchnorm_is_optional_and_off_by_default() -> None:
    plain = build_model("cnn", (3, 32, 32), 10, seed=0)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in plain.modules())
    bn = build_model("cnn", (3, 32, 32), 10, seed=0, batchnorm=True, channels=(8, 8, 8))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 3


def test_samples_do_not_interact_in_train_mode() -> None:
    """Without BatchNorm, a sample's output does not depend on the rest of its batch."""
    m = build_model("cnn", (3, 16, 16), 4, seed=0).train()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        batch = m(x)
        alone = torch.cat([m(x[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(batch, alone)
