"""The SSSE erasure state against brute force: a loop of single-sample gradients and a dense
fp64 inverse of λI + (1/N)ΣggT, for the paper's step and for exact leave-S-out sequences."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from unlearnkit.curvature.layout import flat_params
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import (
    AlreadyErasedError,
    ConfigError,
    NumericalError,
    StateMismatchError,
    UnknownIdsError,
)
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse import ErasureConfig, ErasureState


def loop_grads(model: nn.Module, data: ArrayDataset) -> torch.Tensor:
    """(n, d) fp64 gradients, one backward pass per sample (the reference)."""
    m = model.double()
    rows = []
    for i in range(len(data)):
        m.zero_grad()
        out = m(data.x[i : i + 1].double())
        torch.nn.functional.cross_entropy(out, data.y[i : i + 1], reduction="sum").backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in m.parameters()]))
    m.float()
    return torch.stack(rows)


def reference_step(model, data, forget_ids, lam, normalizer, eps, remaining_ids=None):
    """θ + ε/(n−k)·(λI + GᵀG/N)⁻¹ Σ_S g, all by brute force in fp64."""
    import copy

    ref = copy.deepcopy(model)
    G = loop_grads(ref, data)
    fisher_ids = data.ids if remaining_ids is None else remaining_ids
    rows = G[torch.isin(data.ids, fisher_ids)]
    F = lam * torch.eye(G.shape[1], dtype=torch.float64) + rows.T @ rows / normalizer
    v = G[torch.isin(data.ids, forget_ids)].sum(0)
    n_after = len(data) - len(forget_ids)
    theta = torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])
    return theta + eps / n_after * torch.linalg.solve(F, v)


@pytest.mark.parametrize("solver", ["dense", "woodbury", "sherman_morrison"])
def test_paper_step_matches_brute_force(blobs, mlp, solver):
    cfg = ErasureConfig(blocks="full", solver=solver, damping=1e-2, group_size=1, mode="paper")
    state = ErasureState.prepare(mlp, blobs, cfg)
    forget = blobs.subset(blobs.ids[[3, 7, 20]])
    new_model, new_state = state.erase(mlp, forget, eps=2.0)
    want = reference_step(mlp, blobs, forget.ids, 1e-2, len(blobs), 2.0)
    got = flat_params(new_model, state.layout).double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert new_state.ledger[-1]["k"] == 3 and new_state.n_remaining == len(blobs) - 3
    # input model and input state unchanged
    assert state.n_remaining == len(blobs) and not state.ledger


def test_exact_mode_uses_fisher_of_remaining_data(blobs, mlp):
    cfg = ErasureConfig(
        blocks="per_layer", solver="dense", damping=1e-2, mode="exact", group_size=1
    )
    state = ErasureState.prepare(mlp, blobs, cfg)
    forget = blobs.subset(blobs.ids[[1, 2, 30, 41]])
    new_model, _ = state.erase(mlp, forget, eps=1.0)
    remaining = blobs.ids[~torch.isin(blobs.ids, forget.ids)]
    # block-diagonal reference: per parameter tensor
    G = loop_grads(mlp, blobs)
    keep = torch.isin(blobs.ids, remaining)
    v = G[~keep].sum(0)
    delta = torch.zeros_like(v)
    off = 0
    for p in mlp.parameters():
        sl = slice(off, off + p.numel())
        R = G[keep][:, sl]
        F = 1e-2 * torch.eye(p.numel(), dtype=torch.float64) + R.T @ R / len(remaining)
        delta[sl] = torch.linalg.solve(F, v[sl])
        off += p.numel()
    theta = flat_params(mlp, state.layout).double()
    want = theta + delta / len(remaining)
    got = flat_params(new_model, state.layout).double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("solver", ["dense", "woodbury"])
def test_exact_sequence_equals_fresh_leave_out(blobs, mlp, solver):
    """Two requests in exact mode: the second uses the Fisher of D∖(S1∪S2) at θ_F and the
    gradients at θ_1, exactly as a fresh computation."""
    cfg = ErasureConfig(blocks="full", solver=solver, damping=5e-2, mode="exact", group_size=1)
    state = ErasureState.prepare(mlp, blobs, cfg)
    s1 = blobs.subset(blobs.ids[[0, 5]])
    s2 = blobs.subset(blobs.ids[[9, 10, 11]])
    m1, st1 = state.erase(mlp, s1, eps=1.0)
    m2, st2 = st1.erase(m1, s2, eps=1.0)
    G0 = loop_grads(mlp, blobs)  # rows at θ_F = θ_0
    gone = torch.cat([s1.ids, s2.ids])
    keep = ~torch.isin(blobs.ids, gone)
    F = 5e-2 * torch.eye(G0.shape[1], dtype=torch.float64) + G0[keep].T @ G0[keep] / int(keep.sum())
    v = loop_grads(m1, s2).sum(0)  # gradients at θ_1
    want = flat_params(m1, state.layout).double() + torch.linalg.solve(F, v) / int(keep.sum())
    got = flat_params(m2, state.layout).double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert [e["request"] for e in st2.ledger] == [1, 2]
    assert set(st2.erased_ids.tolist()) == set(gone.tolist())


def test_grouped_exact_leave_out_reaverages_groups(blobs, mlp):
    cfg = ErasureConfig(blocks="full", solver="woodbury", damping=5e-2, mode="exact", group_size=4)
    state = ErasureState.prepare(mlp, blobs, cfg)
    forget = blobs.subset(blobs.ids[[2, 3, 17]])
    new_model, new_state = state.erase(mlp, forget, eps=1.0)
    # brute force: group means over the members that remain, N = number of non-empty groups
    G = loop_grads(mlp, blobs)
    pos = {int(i): k for k, i in enumerate(blobs.ids)}
    rows = []
    for members in state.group_members.tolist():
        keep = [pos[i] for i in members if i >= 0 and i not in set(forget.ids.tolist())]
        if keep:
            rows.append(G[keep].mean(0))
    R = torch.stack(rows)
    F = 5e-2 * torch.eye(G.shape[1], dtype=torch.float64) + R.T @ R / R.shape[0]
    v = G[torch.isin(blobs.ids, forget.ids)].sum(0)
    n_after = len(blobs) - 3
    want = flat_params(mlp, state.layout).double() + torch.linalg.solve(F, v) / n_after
    got = flat_params(new_model, state.layout).double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-6)
    assert int(new_state.group_sizes.sum()) == n_after


def test_solvers_give_identical_erasures(blobs, mlp):
    forget = blobs.subset(blobs.ids[[4, 8]])
    outs = []
    for solver in ("dense", "woodbury", "sherman_morrison", "auto"):
        st = ErasureState.prepare(
            mlp,
            blobs,
            ErasureConfig(
                blocks="per_layer", solver=solver, group_size=1, mode="paper", damping=1e-4
            ),
        )
        outs.append(flat_params(st.erase(mlp, forget, eps=1.0)[0], st.layout).double())
    for o in outs[1:]:
        assert torch.allclose(o, outs[0], rtol=1e-4, atol=1e-7)


def test_bad_requests_are_refused_and_nothing_changes(blobs, mlp):
    state = ErasureState.prepare(
        mlp, blobs, ErasureConfig(blocks="full", mode="exact", group_size=1, damping=1e-4)
    )
    before = model_fingerprint(mlp)
    unknown = ArrayDataset(
        "x", blobs.x[:1], blobs.y[:1], torch.tensor([5]), "multiclass", blobs.classes
    )
    with pytest.raises(UnknownIdsError):
        state.erase(mlp, unknown, eps=1.0)
    s1 = blobs.subset(blobs.ids[[1]])
    m1, st1 = state.erase(mlp, s1, eps=1.0)
    with pytest.raises(AlreadyErasedError):
        st1.erase(m1, s1, eps=1.0)
    with pytest.raises(StateMismatchError):
        st1.erase(
            mlp, blobs.subset(blobs.ids[[2]]), eps=1.0
        )  # the old model, not the one st1 applies to
    nan = blobs.subset(blobs.ids[[3]])
    nan = ArrayDataset(
        "nan", torch.full_like(nan.x, float("nan")), nan.y, nan.ids, "multiclass", nan.classes
    )
    with pytest.raises(NumericalError):
        st1.erase(m1, nan, eps=1.0)
    with pytest.raises(ConfigError):
        st1.request(m1, blobs.subset(blobs.ids[[4]])).apply(float("nan"))
    assert model_fingerprint(mlp) == before
    assert st1.n_remaining == len(blobs) - 1 and len(st1.ledger) == 1


def test_save_load_round_trip_and_tampering(tmp_path, blobs, mlp):
    cfg = ErasureConfig(blocks="per_layer", mode="exact", group_size=3, damping=1e-4)
    state = ErasureState.prepare(mlp, blobs, cfg)
    m1, st1 = state.erase(mlp, blobs.subset(blobs.ids[[0, 1]]), eps=1.0)
    st1.save(tmp_path / "st")
    loaded = ErasureState.load(tmp_path / "st", m1)
    s2 = blobs.subset(blobs.ids[[6, 7, 8]])
    a, sa = st1.erase(m1, s2, eps=1.0)
    b, sb = loaded.erase(m1, s2, eps=1.0)
    assert torch.equal(flat_params(a, st1.layout), flat_params(b, st1.layout))
    assert sa.ledger[-1]["model_after"] == sb.ledger[-1]["model_after"]
    with pytest.raises(StateMismatchError):
        ErasureState.load(tmp_path / "st", mlp)  # not the model the state applies to
    other = torch.nn.Sequential(torch.nn.Linear(5, 3))
    with pytest.raises(StateMismatchError):
        ErasureState.load(tmp_path / "st", other)
    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    raw = (tmp_path / "st" / "state.safetensors").read_bytes()
    mid = len(raw) // 2
    (tmp_path / "st" / "state.safetensors").write_bytes(
        raw[:mid] + bytes([raw[mid] ^ 0xFF]) + raw[mid + 1 :]
    )
    with pytest.raises(StateMismatchError, match="checksum"):
        ErasureState.load(tmp_path / "st")
    assert manifest["n_remaining"] == len(blobs) - 2


def test_true_fisher_exact_mode_refused():
    with pytest.raises(ValueError, match="exact"):
        ErasureConfig(curvature="true", mode="exact", damping=1e-4)


def test_memory_budget_is_checked_before_collecting_rows(blobs, mlp):
    from unlearnkit.errors import MemoryBudgetError

    with pytest.raises(MemoryBudgetError, match="group_size"):
        ErasureState.prepare(
            mlp,
            blobs,
            ErasureConfig(
                blocks="full", memory_budget_bytes=1000, group_size=1, mode="paper", damping=1e-4
            ),
        )
    # enough for the rows (60 × 63 × 4 B) but not for a dense 63² fp64 block + workspace
    with pytest.raises(MemoryBudgetError):
        ErasureState.prepare(
            mlp,
            blobs,
            ErasureConfig(
                blocks="full",
                solver="dense",
                memory_budget_bytes=16_000,
                group_size=1,
                mode="paper",
                damping=1e-4,
            ),
        )


def brute_exact_step(model, theta_model, data, members, gone, lam, eps=1.0):
    """θ_t + ε/(n−k)·F⁻¹Σ_S∇ℓ(θ_t), F of the groups' remaining members at θ_F (brute force;
    N = number of non-empty groups when groups have >1 member, else n − |gone|)."""
    G = loop_grads(theta_model, data)  # rows at θ_F
    pos = {int(i): k for k, i in enumerate(data.ids)}
    gone_set = {int(i) for i in gone}
    rows = []
    for group in members.tolist():
        keep = [pos[i] for i in group if i >= 0 and i not in gone_set]
        if keep:
            rows.append(G[keep].mean(0))
    R = torch.stack(rows)
    grouped = members.shape[1] > 1
    n_after = len(data) - len(gone_set)
    N = R.shape[0] if grouped else n_after
    F = lam * torch.eye(G.shape[1], dtype=torch.float64) + R.T @ R / N
    return F, n_after


def test_exact_sequence_on_the_kept_woodbury_factor_matches_brute_force(
    tmp_path, blobs, mlp, monkeypatch
):
    """Three requests with the incremental Woodbury downdate forced (the build's factor + PCG;
    the cost model would refactor a 60-row block), a save/load in the middle: each step equals
    a fresh dense fp64 computation on the retained data."""
    from unlearnkit.curvature.solvers import woodbury

    monkeypatch.setattr(woodbury, "downdate_plan", lambda *a: ("incremental", 0.0, 1.0))
    cfg = ErasureConfig(blocks="full", solver="woodbury", damping=5e-3, mode="exact", group_size=1)
    state = ErasureState.prepare(mlp, blobs, cfg)
    model, gone = mlp, []
    for step, idx in enumerate(([0, 5], [9, 10, 11], [30])):
        forget = blobs.subset(blobs.ids[idx])
        new_model, state = state.erase(model, forget, eps=1.0)
        gone += forget.ids.tolist()
        F, n_after = brute_exact_step(model, mlp, blobs, blobs.ids[:, None], gone, 5e-3)
        v = loop_grads(model, forget).sum(0)
        want = flat_params(model, state.layout).double() + torch.linalg.solve(F, v) / n_after
        got = flat_params(new_model, state.layout).double()
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), step
        wood = state.inverse.entries[0].inverse
        assert wood.basis.numel() == len(blobs) and wood.m == len(blobs) - len(gone)
        if step == 1:
            state.save(tmp_path / "st")
            state = ErasureState.load(tmp_path / "st", new_model)
        model = new_model


def test_grouped_exact_sequence_matches_brute_force(blobs, mlp, monkeypatch):
    """Groups of 4: the first request reuses the per-sample gradients at θ_F for the groups'
    re-averaging (no second gradient pass); the second, at θ_1 ≠ θ_F, recomputes them at θ_F."""
    import unlearnkit.ssse.leave_out as state_mod

    calls = []
    real = state_mod.dataset_rows
    monkeypatch.setattr(state_mod, "dataset_rows", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = ErasureConfig(
        blocks="per_layer", solver="woodbury", damping=5e-2, mode="exact", group_size=4
    )
    state = ErasureState.prepare(mlp, blobs, cfg)
    n_prepare = len(calls)
    members = state.group_members.clone()
    model, gone = mlp, []
    for step, idx in enumerate(([2, 3, 17], [4, 18, 40, 41])):
        forget = blobs.subset(blobs.ids[idx])
        new_model, state = state.erase(model, forget, eps=1.0)
        assert len(calls) - n_prepare == step  # first request: no gradient pass at θ_F
        gone += forget.ids.tolist()
        F, n_after = brute_exact_step(model, mlp, blobs, members, gone, 5e-2)
        v = loop_grads(model, forget).sum(0)
        # block-diagonal per parameter tensor
        delta, off = torch.zeros_like(v), 0
        for p in mlp.parameters():
            sl = slice(off, off + p.numel())
            delta[sl] = torch.linalg.solve(F[sl, sl], v[sl])
            off += p.numel()
        want = flat_params(model, state.layout).double() + delta / n_after
        got = flat_params(new_model, state.layout).double()
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), step
        assert int(state.group_sizes.sum()) == n_after
        model = new_model


def test_exact_state_holds_the_rows_once(tmp_path, blobs, mlp):
    """Woodbury blocks keep a view of the exact-mode rows (one copy in memory), also after
    loading; a request does not copy the rows when no group shrinks."""
    cfg = ErasureConfig(
        blocks="per_layer", solver="woodbury", mode="exact", group_size=1, damping=1e-4
    )
    state = ErasureState.prepare(mlp, blobs, cfg)
    ptr = state.rows.untyped_storage().data_ptr()
    for e in state.inverse.entries:
        assert e.inverse.G.untyped_storage().data_ptr() == ptr
        assert torch.equal(e.inverse.G, state.rows[:, e.sel])
    m1, st1 = state.erase(mlp, blobs.subset(blobs.ids[[3]]), eps=1.0)
    assert st1.rows is state.rows
    st1.save(tmp_path / "st")
    loaded = ErasureState.load(tmp_path / "st", m1)
    ptr = loaded.rows.untyped_storage().data_ptr()
    assert all(e.inverse.G.untyped_storage().data_ptr() == ptr for e in loaded.inverse.entries)
    a, _ = st1.erase(m1, blobs.subset(blobs.ids[[8, 9]]), eps=1.0)
    b, _ = loaded.erase(m1, blobs.subset(blobs.ids[[8, 9]]), eps=1.0)
    assert torch.equal(flat_params(a, state.layout), flat_params(b, state.layout))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_exact_sequence_on_cuda_with_the_kept_factor_and_a_reload(
    tmp_path, blobs, mlp, monkeypatch
):
    """The incremental Woodbury path and a state saved/loaded mid-sequence with a GPU model
    (θ_F then lives on the CPU) give the CPU's erasure."""
    import copy

    from unlearnkit.curvature.solvers import woodbury

    monkeypatch.setattr(woodbury, "downdate_plan", lambda *a: ("incremental", 0.0, 1.0))
    cfg = ErasureConfig(blocks="full", solver="woodbury", damping=5e-3, mode="exact", group_size=1)
    out = {}
    for dev in ("cpu", "cuda"):
        model = copy.deepcopy(mlp).to(dev)
        state = ErasureState.prepare(model, blobs, cfg)
        m1, state = state.erase(model, blobs.subset(blobs.ids[[0, 5]]), eps=1.0)
        state.save(tmp_path / dev)
        state = ErasureState.load(tmp_path / dev, m1)
        m2, _ = state.erase(m1, blobs.subset(blobs.ids[[9, 10, 11]]), eps=1.0)
        out[dev] = flat_params(m2, state.layout).double().cpu()
    torch.testing.assert_close(out["cuda"], out["cpu"], rtol=1e-5, atol=1e-6)


def test_grouped_exact_sequence_on_the_kept_woodbury_factor(tmp_path, blobs, mlp, monkeypatch):
    """Groups of 4 with the kept factor forced (shrunk groups' rows bordered onto the build's
    factor, emptied groups dropped, PCG for N): three requests with a save/load after the
    second equal a fresh dense fp64 leave-out; the state's rows are shared by the Woodbury
    block, and a request does not copy them (the re-averaged rows go to a patch, written as
    plain rows on save); the old state still erases as before."""
    from unlearnkit.curvature.solvers import woodbury

    monkeypatch.setattr(woodbury, "downdate_plan", lambda *a: ("incremental", 0.0, 1.0))
    cfg = ErasureConfig(blocks="full", solver="woodbury", damping=5e-2, mode="exact", group_size=4)
    state0 = state = ErasureState.prepare(mlp, blobs, cfg)
    members = state.group_members.clone()
    rows0 = state.rows.clone()
    model, gone = mlp, []
    for step, idx in enumerate(([2, 3, 17], [0, 1, 4, 18, 40], [5, 41])):
        forget = blobs.subset(blobs.ids[idx])
        new_model, new_state = state.erase(model, forget, eps=1.0)
        gone += forget.ids.tolist()
        F, n_after = brute_exact_step(model, mlp, blobs, members, gone, 5e-2)
        v = loop_grads(model, forget).sum(0)
        want = flat_params(model, state.layout).double() + torch.linalg.solve(F, v) / n_after
        got = flat_params(new_model, state.layout).double()
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-6), step
        wood = new_state.inverse.entries[0].inverse
        assert wood.L is state0.inverse.entries[0].inverse.L or step == 2  # reloaded at 2
        assert wood.stale.numel() > 0 and wood.basis.numel() == len(members)
        assert wood.G.untyped_storage().data_ptr() == new_state.rows.untyped_storage().data_ptr()
        assert torch.equal(wood.effective_rows(), new_state.current_rows())
        if step < 2:  # no copy of the rows per request: the replaced ones are in a patch
            assert new_state.rows is state0.rows and new_state.row_patch is not None
        if step == 1:
            new_state.save(tmp_path / "st")
            new_state = ErasureState.load(tmp_path / "st", new_model)
            w2 = new_state.inverse.entries[0].inverse
            assert w2.G.untyped_storage().data_ptr() == new_state.rows.untyped_storage().data_ptr()
            assert torch.equal(w2.stale, wood.stale) and new_state.row_patch is None
            assert torch.equal(new_state.rows, wood.effective_rows())
        state, model = new_state, new_model
    assert torch.equal(state0.rows, rows0)  # the first state is unchanged and still usable
    a, _ = state0.erase(mlp, blobs.subset(blobs.ids[[2, 3, 17]]), eps=1.0)
    F, n_after = brute_exact_step(mlp, mlp, blobs, members, blobs.ids[[2, 3, 17]].tolist(), 5e-2)
    v = loop_grads(mlp, blobs.subset(blobs.ids[[2, 3, 17]])).sum(0)
    want = flat_params(mlp, state0.layout).double() + torch.linalg.solve(F, v) / n_after
    assert torch.allclose(flat_params(a, state0.layout).double(), want, rtol=1e-4, atol=1e-6)
