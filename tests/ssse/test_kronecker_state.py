"""The Kronecker erasure state (structure kfac / ekfac) against direct computations in fp64:
the step of a request and of a sequence equals (F_R + λI)⁻¹v with F_R rebuilt on the retained
data and solved densely; save → load is bit-identical and tampering is refused; ``auto``
chooses by memory and says why."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from unlearnkit.curvature.kfac import KroneckerCurvature, accumulate, eigenbases, flatten_like
from unlearnkit.curvature.layout import flat_params
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import MemoryBudgetError, StateMismatchError, UtilityBudgetError
from unlearnkit.ssse import (
    ErasureConfig,
    ErasureState,
    KroneckerState,
    choose_structure,
    load_state,
    prepare_state,
)
from unlearnkit.ssse.persistence import DIGEST_KEY, manifest_digest

LAM = 1e-2
TOL = dict(rtol=1e-9, atol=1e-12)


@pytest.fixture
def mlp64(mlp: nn.Module) -> nn.Module:
    return mlp.double()


@pytest.fixture
def blobs64(blobs: ArrayDataset) -> ArrayDataset:
    return ArrayDataset("blobs", blobs.x.double(), blobs.y, blobs.ids, blobs.task, blobs.classes)


def _rest(data: ArrayDataset, *gone: torch.Tensor) -> ArrayDataset:
    keep = ~torch.isin(data.ids, torch.cat(gone))
    return data.subset(data.ids[keep])


def _grad(model: nn.Module, data: ArrayDataset) -> dict[str, torch.Tensor]:
    """Σ_i ∇ℓ_i by one backward pass per sample (the reference)."""
    out = {k: torch.zeros_like(p) for k, p in model.named_parameters()}
    for i in range(len(data)):
        loss = nn.functional.cross_entropy(
            model(data.x[i : i + 1]), data.y[i : i + 1], reduction="sum"
        )
        for (k, _), g in zip(
            model.named_parameters(),
            torch.autograd.grad(loss, list(model.parameters())),
            strict=True,
        ):
            out[k] += g
    return out


def _dense_step(curv: KroneckerCurvature, v: dict[str, torch.Tensor]) -> torch.Tensor:
    """(F + λI)⁻¹ v, densely, in the order of ``curv.dense()``."""
    F = curv.dense()
    return torch.linalg.solve(F + LAM * torch.eye(F.shape[0], dtype=F.dtype), flatten_like(curv, v))


def _got_step(
    state, new_model, model, curv: KroneckerCurvature, k: int, eps: float
) -> torch.Tensor:
    """Δ recovered from θ' = θ + ε/(n−k)·Δ, in the order of ``curv.dense()``."""
    delta = (flat_params(new_model, state.layout) - flat_params(model, state.layout)) * (
        (state.n_remaining - k) / eps
    )
    return flatten_like(curv, state.layout.unflatten(delta))


def _ekfac_brute(model_f: nn.Module, data: ArrayDataset, bases) -> KroneckerCurvature:
    """EK-FAC of ``data`` in the eigenbases ``bases`` by its definition: s = mean_i of
    (U_Gᵀ Ĝ_i U_A)², Ĝ_i = [∂ℓ_i/∂W | ∂ℓ_i/∂b] one sample at a time (George et al. 2018)."""
    mods = {"body.0": model_f.body[0], "fc": model_f.fc}
    scales = {k: 0.0 for k in mods}
    for i in range(len(data)):
        loss = nn.functional.cross_entropy(
            model_f(data.x[i : i + 1]), data.y[i : i + 1], reduction="sum"
        )
        for k, mod in mods.items():
            gw, gb = torch.autograd.grad(loss, [mod.weight, mod.bias], retain_graph=True)
            G = torch.cat([gw, gb[:, None]], dim=1)
            scales[k] = scales[k] + (bases[k].UG.T @ G @ bases[k].UA) ** 2
    facts = accumulate(model_f, data.x, data.y, "multiclass").factors()
    return KroneckerCurvature(facts, bases, {k: s / len(data) for k, s in scales.items()})


@pytest.mark.parametrize("mode", ["exact", "paper"])
def test_kfac_step_equals_direct_solve(blobs64, mlp64, mode):
    state = KroneckerState.prepare(
        mlp64, blobs64, ErasureConfig(structure="kfac", damping=LAM, mode=mode)
    )
    forget = blobs64.subset(blobs64.ids[[3, 7, 20, 41]])
    new_model, new_state = state.erase(mlp64, forget, eps=2.0)
    fisher_data = _rest(blobs64, forget.ids) if mode == "exact" else blobs64
    curv = KroneckerCurvature.build(
        accumulate(mlp64, fisher_data.x, fisher_data.y, "multiclass").factors()
    )
    want = _dense_step(curv, _grad(mlp64, forget))
    torch.testing.assert_close(_got_step(state, new_model, mlp64, curv, 4, 2.0), want, **TOL)
    entry = new_state.ledger[-1]
    assert (entry["structure"], entry["scales_basis"], entry["k"]) == ("kfac", "none", 4)
    assert new_state.sums.n == (56 if mode == "exact" else 60) and state.sums.n == 60  # immutable


@pytest.mark.parametrize("structure", ["kfac", "ekfac"])
def test_two_requests_equal_a_rebuild_without_both(blobs64, mlp64, structure):
    cfg = ErasureConfig(structure=structure, damping=LAM)
    s0 = KroneckerState.prepare(mlp64, blobs64, cfg)
    f1 = blobs64.subset(blobs64.ids[[0, 1, 30]])
    f2 = blobs64.subset(blobs64.ids[[5, 44]])
    m1, s1 = s0.erase(mlp64, f1, eps=1.0)
    m2, s2 = s1.erase(m1, f2, eps=1.5)
    rest = _rest(blobs64, f1.ids, f2.ids)  # factors at θ_F (the prepared model), v at θ_1
    if structure == "kfac":
        curv = KroneckerCurvature.build(accumulate(mlp64, rest.x, rest.y, "multiclass").factors())
    else:  # scales of D∖S₁∖S₂ in D's eigenbases, by brute force
        bases = eigenbases(accumulate(mlp64, blobs64.x, blobs64.y, "multiclass").factors())
        curv = _ekfac_brute(mlp64, rest, bases)
    want = _dense_step(curv, _grad(m1, f2))
    torch.testing.assert_close(_got_step(s1, m2, m1, curv, 2, 1.5), want, **TOL)
    assert [e["request"] for e in s2.ledger] == [1, 2] and s2.sums.n == len(rest)
    basis = "full-data" if structure == "ekfac" else "none"
    assert all(e["scales_basis"] == basis and e["structure"] == structure for e in s2.ledger)


def test_save_load_round_trip_and_tampering(tmp_path, blobs64, mlp64):
    state = KroneckerState.prepare(mlp64, blobs64, ErasureConfig(structure="ekfac", damping=LAM))
    m1, s1 = state.erase(mlp64, blobs64.subset(blobs64.ids[[2, 9]]), eps=1.0)
    s1.save(tmp_path / "st")
    loaded = load_state(tmp_path / "st", m1)
    assert isinstance(loaded, KroneckerState)
    from unlearnkit.ssse.kronecker_io import KroneckerTensors

    a = KroneckerTensors(s1.sums, s1.scale_sums).state_dict()
    b = KroneckerTensors(loaded.sums, loaded.scale_sums).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for name in ("sample_ids", "erased", "theta_fisher"):
        assert torch.equal(getattr(s1, name), getattr(loaded, name))
    assert loaded.ledger == s1.ledger and loaded.config == s1.config
    f2 = blobs64.subset(blobs64.ids[[6, 7, 8]])
    x, sx = s1.erase(m1, f2, eps=1.0)
    y, sy = loaded.erase(m1, f2, eps=1.0)
    assert torch.equal(flat_params(x, s1.layout), flat_params(y, s1.layout))
    assert sx.ledger[-1]["model_after"] == sy.ledger[-1]["model_after"]
    with pytest.raises(StateMismatchError, match="not the one"):
        load_state(tmp_path / "st", mlp64)
    with pytest.raises(StateMismatchError, match="Kronecker"):
        ErasureState.load(tmp_path / "st")  # the rows loader names the right one
    mpath = tmp_path / "st" / "manifest.json"
    original = mpath.read_text()
    manifest = json.loads(original)
    manifest["ledger"][0]["eps"] = 3.0  # an edited ledger: the digest no longer matches
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(StateMismatchError, match="modified or corrupted"):
        load_state(tmp_path / "st")
    # a consistent digest over inconsistent facts: paper mode's sums would cover all n = 60
    manifest = json.loads(original)
    manifest["config"]["mode"] = "paper"
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(StateMismatchError, match="count"):
        load_state(tmp_path / "st")
    manifest = json.loads(original)
    manifest["ledger"][0]["ids"] = manifest["ledger"][0]["ids"][:1]  # ledger ≠ erased mask
    manifest[DIGEST_KEY] = manifest_digest(manifest)
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(StateMismatchError, match="erased sample"):
        load_state(tmp_path / "st")
    mpath.write_text(original)
    assert load_state(tmp_path / "st", m1).n_remaining == 58


def test_auto_picks_rows_for_a_tiny_model_and_kfac_over_the_budget(tmp_path, blobs, mlp):
    small = prepare_state(mlp, blobs, ErasureConfig(structure="auto"))
    assert isinstance(small, ErasureState) and small.config.structure == "rows"
    choice = small.notes["structure_choice"]
    assert choice["chosen"] == "rows" and "fit the memory budget" in choice["reason"]
    # group_size=1: 60 rows × 57 params × 4 bytes = 13 680 bytes of rows, and a per-layer
    # inverse; the K-FAC sums are 2 × 8 × (6² + 6² + 7² + 3²) = 2 080 bytes
    cfg = ErasureConfig(structure="auto", group_size=1, memory_budget_bytes=20_000, damping=LAM)
    numbers = choose_structure(mlp, blobs, cfg)["numbers"]
    assert numbers["rows_bytes"] == 60 * 57 * 4 and numbers["kfac_bytes"] == 2080
    big = prepare_state(mlp, blobs, cfg)
    assert isinstance(big, KroneckerState) and big.config.structure == "kfac"
    reason = big.notes["structure_choice"]["reason"]
    assert "rows exceed the memory budget" in reason and "13.4 KiB of rows" in reason
    assert "chosen by auto" in big.describe() and "2.0 KiB" in big.describe()
    big.save(tmp_path / "st")
    manifest = json.loads((tmp_path / "st" / "manifest.json").read_text())
    assert manifest["structure_choice"]["chosen"] == "kfac" and manifest["structure"] == "kfac"
    assert load_state(tmp_path / "st").notes["structure_choice"]["reason"] == reason
    with pytest.raises(MemoryBudgetError, match="neither structure fits"):
        choose_structure(mlp, blobs, cfg.model_copy(update={"memory_budget_bytes": 1000}))


def test_rows_ledger_records_its_structure(blobs, mlp):
    state = ErasureState.prepare(mlp, blobs, ErasureConfig(group_size=1, damping=LAM))
    _, s1 = state.erase(mlp, blobs.subset(blobs.ids[[1]]), eps=1.0)
    assert (s1.ledger[-1]["structure"], s1.ledger[-1]["scales_basis"]) == ("rows", None)


def test_api_prepare_with_a_kronecker_structure(blobs, mlp):
    import unlearnkit as uk

    prepared = uk.prepare(mlp, blobs, config={"structure": "ekfac", "damping": LAM})
    assert isinstance(prepared.state, KroneckerState)
    ids = blobs.ids[[4, 5]].tolist()
    # the shared utility budget: this untrained model loses retained accuracy at ε = 1
    with pytest.raises(UtilityBudgetError, match="utility budget"):
        prepared.erase(mlp, ids, eps=1.0)
    assert not bool(prepared.state.erased.any()) and prepared.state.ledger == ()
    erased = prepared.erase(mlp, ids, eps=1.0, allow_utility_loss=True)
    assert erased.entry["structure"] == "ekfac" and erased.entry["scales_basis"] == "full-data"
    assert erased.prepared.state.sums.n == len(blobs) - 2 and prepared.state.sums.n == len(blobs)
    assert erased.prepared.remaining_ids.numel() == len(blobs) - 2
