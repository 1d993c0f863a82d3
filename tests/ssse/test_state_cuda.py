"""SSSE on a GPU gives the CPU's erasure (skipped without CUDA; run by benchmarks/gpu_checks.sh)."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearnkit.ssse import ErasureConfig, ErasureState

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _flat(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().double().cpu().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("solver", ["dense", "woodbury", "sherman_morrison", "auto"])
@pytest.mark.parametrize("mode", ["paper", "exact"])
@pytest.mark.parametrize("group_size", [1, 4])
def test_cuda_erasure_matches_cpu(blobs, mlp, solver, mode, group_size):
    cfg = ErasureConfig(damping=1e-2, solver=solver, mode=mode, group_size=group_size)
    # ids that leave groups partly filled (re-averaging) and a second request afterwards
    first, second = blobs.ids[[0, 5, 6, 13]], blobs.ids[[20, 21, 22, 23, 40]]
    results = {}
    for dev in ("cpu", "cuda"):
        model = copy.deepcopy(mlp).to(dev)
        state = ErasureState.prepare(model, blobs, cfg)
        m1, state = state.erase(model, blobs.subset(first), eps=0.5)
        m2, state = state.erase(m1, blobs.subset(second), eps=0.5)
        assert next(m2.parameters()).device.type == dev
        results[dev] = (_flat(m1), _flat(m2))
    for cpu, gpu in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(gpu, cpu, rtol=1e-5, atol=1e-6)
