"""PRMQ: global L1 prune of weights+biases, re-init pruned weights, fine-tune, fp16."""

from __future__ import annotations

import math

import torch
from tiny_resnet_fixtures import data, model, one_thread, state  # noqa: F401
from torch import nn

from unlearnkit.methods.prmq import PRMQ, entropy, inverse_power_class_weights

STILL = {"learning_rate": 0.0, "weight_decay": 0.0, "momentum": 0.0, "num_epochs": 0.0}


def _fp16(t: torch.Tensor) -> torch.Tensor:
    return t.half().float()


def test_prunes_the_global_smallest_fraction_and_reinitialises_weights() -> None:
    m = model()
    before = state(m)
    layers = [(n, mod) for n, mod in m.named_modules() if isinstance(mod, (nn.Conv2d, nn.Linear))]
    keys = [
        f"{n}.{p}" for n, mod in layers for p in ("weight", "bias") if getattr(mod, p) is not None
    ]
    flat = torch.cat([before[k].flatten() for k in keys])
    k = round(0.6 * flat.numel())
    threshold = flat.abs().sort().values[k - 1]
    out = PRMQ().unlearn(m, data(), {**STILL, "prune_amount": 0.6}).model.state_dict()
    n_pruned = 0
    for key in keys:
        old, new = before[key], out[key]
        pruned = old.abs() <= threshold
        n_pruned += int(pruned.sum())
        assert torch.equal(new[~pruned], _fp16(old[~pruned])), key
        if key.endswith("bias"):
            assert torch.equal(new[pruned], torch.zeros_like(new[pruned])), key
        else:
            fan_in = old[0].numel()
            assert new[pruned].abs().max() <= 1 / math.sqrt(fan_in) + 1e-3, key
            assert (new[pruned] != _fp16(old[pruned])).float().mean() > 0.9, key
    assert n_pruned == k
    assert any(key.endswith("bias") for key in keys)


def test_ends_in_fp16_representable_float32_weights() -> None:
    out = PRMQ().unlearn(model(), data(), {"num_epochs": 1.0, "batch_size": 8}).model
    for name, t in out.state_dict().items():
        if t.is_floating_point():
            assert t.dtype == torch.float32
            assert torch.equal(t, _fp16(t)), name


def test_iteration_count_and_teacher_forward_passes() -> None:
    """⌊(#batches)·E⌋ + 1 steps; each step runs the student and the frozen teacher once."""
    calls = []
    m = model()
    handle = m.fc.register_forward_hook(lambda mod, i, o: calls.append(mod.training))
    try:
        PRMQ().unlearn(m, data(), {"num_epochs": 1.5, "batch_size": 8})  # 3 batches → 5 steps
    finally:
        handle.remove()
    assert calls.count(True) == 5 and calls.count(False) == 5


def test_class_weights_and_entropy() -> None:
    d = data()  # 24 retain samples, 8 of each of 3 classes
    assert torch.allclose(inverse_power_class_weights(d.retain), torch.full((3,), 8**-0.1))
    z = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    assert torch.allclose(entropy(z), torch.tensor([math.log(2), 0.0]), atol=1e-6)
