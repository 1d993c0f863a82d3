"""An erasure request keeps to the memory budget (issue 12, defect 7): it computes the forget
set's gradients in chunks that fit, or refuses before allocating, and the estimate bounds the
measured peak.

Measured peak: the torch profiler's raw allocation records (every CPU tensor allocation and
free with its byte count and time, ``profile_memory=True``), replayed in time order; the peak
of the running sum is the most tensor memory live at once during the call, above what was
live before it (tracemalloc does not see torch's CPU allocator)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import MemoryBudgetError
from unlearnkit.ssse.budget import input_numel, request_plan
from unlearnkit.ssse.config import ErasureConfig
from unlearnkit.ssse.leave_out import plan_leave_out
from unlearnkit.ssse.state import ErasureState

MiB = 2**20


def measured_peak(fn):
    """(peak live tensor bytes during ``fn()``, its result)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    records = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]"
    )
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak, out


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 100), nn.Tanh(), nn.Linear(100, 10)).eval()  # d = 5110
    g = torch.Generator().manual_seed(0)
    y = torch.arange(600) % 10
    x = torch.randn(600, 40, generator=g)
    data = ArrayDataset("d", x, y, torch.arange(600), "multiclass", tuple("abcdefghij"))
    return model, data


def with_budget(state: ErasureState, budget: int) -> ErasureState:
    return dataclasses.replace(
        state, config=state.config.model_copy(update={"memory_budget_bytes": budget})
    )


def estimate(state: ErasureState, forget: ArrayDataset):
    plan = plan_leave_out(state, forget.ids) if state.config.mode == "exact" else None
    return request_plan(state, plan, len(forget), input_numel(forget))


def as_fp64(model: nn.Module, data: ArrayDataset) -> tuple[nn.Module, ArrayDataset]:
    """fp64 gradients: chunked and single-pass sums then agree to fp64 rounding (in fp32 the
    gradients of a different batch size differ in the last bits, amplified by cond(F))."""
    x = data.x.double()
    return copy.deepcopy(model).double(), dataclasses.replace(data, x=x)


def test_paper_request_is_chunked_to_fit_the_budget(problem):
    model, data = as_fp64(*problem)
    state = ErasureState.prepare(model, data, ErasureConfig(mode="paper"))
    forget = data.subset(torch.arange(300))
    # the single pass holds all 300 gradient rows (fp32) and their fp64 copy at once
    unlimited, ref = measured_peak(lambda: with_budget(state, 2**40).request(model, forget))
    assert unlimited > 300 * 5110 * (8 + 4) * 0.95  # fp64 gradients + their fp32 rows
    budget = 8 * MiB
    assert unlimited > budget  # before the fix: this much under an 8 MiB budget, no error
    tight = with_budget(state, budget)
    assert estimate(tight, forget).chunk < 300
    used, req = measured_peak(lambda: tight.request(model, forget))
    assert used <= budget
    # the same direction up to the fp64 summation order of the chunks
    torch.testing.assert_close(req.delta, ref.delta, rtol=1e-10, atol=1e-12)


def test_exact_request_over_budget_is_refused_and_changes_nothing(problem, tmp_path):
    model, data = problem
    budget = 12 * MiB
    state = ErasureState.prepare(model, data, ErasureConfig(memory_budget_bytes=budget))
    state.save(tmp_path / "st")
    files = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "st").iterdir()
    }
    loaded = ErasureState.load(tmp_path / "st", model)
    with pytest.raises(MemoryBudgetError, match="Split the request into smaller ones"):
        loaded.erase(model, data.subset(torch.arange(300)), eps=1.0)
    assert not bool(loaded.erased.any()) and loaded.ledger == ()
    after = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / "st").iterdir()
    }
    assert after == files
    # the advice works: a smaller request fits, and stays within the budget
    used, (_, new_state) = measured_peak(
        lambda: loaded.erase(model, data.subset(torch.arange(50)), eps=1.0)
    )
    assert used <= budget and int(new_state.erased.sum()) == 50


def test_exact_request_chunked_equals_single_pass(problem):
    model, data = as_fp64(*problem)
    state = ErasureState.prepare(model, data, ErasureConfig())
    forget = data.subset(torch.arange(300))
    budget = 20 * MiB
    tight = with_budget(state, budget)
    assert estimate(tight, forget).chunk < 300
    used, req = measured_peak(lambda: tight.request(model, forget))
    assert used <= budget
    ref = with_budget(state, 2**40).request(model, forget)
    torch.testing.assert_close(req.delta, ref.delta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("mode", "k"), [("paper", 300), ("exact", 50), ("exact", 300)])
def test_estimate_bounds_the_measured_peak(problem, mode, k):
    """The estimate is an upper bound (what the refusal relies on) within 1.6× of the truth."""
    model, data = problem
    state = with_budget(ErasureState.prepare(model, data, ErasureConfig(mode=mode)), 2**40)
    forget = data.subset(torch.arange(k))
    est = estimate(state, forget)
    assert est.chunk == k
    used, _ = measured_peak(lambda: state.request(model, forget))
    assert used <= est.peak <= 1.6 * used
