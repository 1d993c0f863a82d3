"""Exact Fisher-inverse solvers vs a dense fp64 ``torch.linalg.solve`` of λI + GᵀG/N."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse, IndexBlock
from unlearnkit.curvature.memory import format_bytes
from unlearnkit.curvature.solvers import (
    SOLVERS,
    AutoSolver,
    DenseInverse,
    DenseSolver,
    WoodburyInverse,
    estimate,
    estimate_bytes,
    load_block_inverse,
)
from unlearnkit.errors import ConfigError, MemoryBudgetError, NumericalError
from unlearnkit.io import load_tensors, save_tensors

F64 = torch.float64
EXACT = ["dense", "sherman_morrison", "woodbury"]
ALL = EXACT + ["auto"]
FEW = settings(max_examples=15, deadline=None, derandomize=True)


def fisher(G: torch.Tensor, lam: float, n: float) -> torch.Tensor:
    G = G.to(F64)
    return lam * torch.eye(G.shape[1], dtype=F64) + G.T @ G / n


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).norm() / b.to(F64).norm().clamp_min(1e-300))


def rand(seed: int, *shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


problem = st.fixed_dictionaries(
    {
        "m": st.integers(0, 12),
        "d": st.integers(1, 10),
        "log_lam": st.floats(math.log(1e-4), 0.0),
        "n": st.floats(1.0, 60.0),
        "r": st.integers(0, 3),  # 0: a vector
        "seed": st.integers(0, 2**31 - 1),
    }
)


@FEW
@given(p=problem)
def test_every_solver_matches_dense_fp64_solve(p: dict) -> None:
    G = rand(p["seed"], p["m"], p["d"])
    lam = math.exp(p["log_lam"])
    V = rand(p["seed"] + 1, p["d"]) if p["r"] == 0 else rand(p["seed"] + 1, p["d"], p["r"])
    ref = torch.linalg.solve(fisher(G, lam, p["n"]), V)
    outs = {}
    for name in ALL:
        inv = SOLVERS.get(name)().build(G, lam, p["n"], name="blk")
        out = inv.solve(V)
        assert out.shape == V.shape and out.dtype == F64
        assert rel(out, ref) < 1e-6, name
        outs[name] = out
    for a in EXACT:  # all solvers agree with each other
        for b in EXACT:
            assert rel(outs[a], outs[b]) < 1e-6


@FEW
@given(p=problem)
def test_fp32_inputs_give_fp32_outputs_close_to_fp64(p: dict) -> None:
    G = rand(p["seed"], p["m"], p["d"], dtype=torch.float32)
    V = rand(p["seed"] + 1, p["d"], max(p["r"], 1), dtype=torch.float32)
    lam = math.exp(p["log_lam"])
    ref = torch.linalg.solve(fisher(G, lam, p["n"]), V.to(F64))
    for name in EXACT:
        out = SOLVERS.get(name)().build(G, lam, p["n"]).solve(V)
        assert out.dtype == torch.float32
        assert rel(out, ref) < 1e-5, name  # factors are fp64: only the output is rounded


@FEW
@given(
    d=st.integers(2, 14),
    m=st.integers(1, 10),
    n_blocks=st.integers(1, 4),
    solver=st.sampled_from(ALL),
    seed=st.integers(0, 2**31 - 1),
)
def test_block_diagonal_matches_dense_block_reference(
    d: int, m: int, n_blocks: int, solver: str, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(d, generator=gen)
    cuts = sorted(torch.randperm(d - 1, generator=gen)[: min(n_blocks, d) - 1].add(1).tolist())
    parts = [perm[a:b] for a, b in zip([0, *cuts], [*cuts, d], strict=True)]
    blocks = [IndexBlock(f"b{i}", idx) for i, idx in enumerate(parts)]
    G = rand(seed, m, d)
    lam, n = 0.03, float(m + 3)
    ref = torch.zeros(d, d, dtype=F64)
    for idx in parts:
        ref[idx.unsqueeze(1), idx.unsqueeze(0)] = torch.linalg.inv(fisher(G[:, idx], lam, n))
    inv = BlockDiagonalInverse.build(G, blocks, lam, n, solver=solver)
    V = rand(seed + 1, d, 2)
    assert rel(inv.solve(V), ref @ V) < 1e-6
    assert rel(inv.solve(V[:, 0]), ref @ V[:, 0]) < 1e-6
    assert rel(inv.to_dense(), ref) < 1e-6


def test_slice_blocks_and_full_block() -> None:
    G = rand(0, 7, 9)
    lam, n = 0.1, 7.0
    v = rand(1, 9)
    by_slice = BlockDiagonalInverse.build(
        G, [IndexBlock("a", slice(0, 4)), IndexBlock("b", slice(4, 9))], lam, n
    )
    ref = torch.cat(
        [
            torch.linalg.solve(fisher(G[:, :4], lam, n), v[:4]),
            torch.linalg.solve(fisher(G[:, 4:], lam, n), v[4:]),
        ]
    )
    assert rel(by_slice.solve(v), ref) < 1e-12
    full = BlockDiagonalInverse.build(G, None, lam, n, solver="woodbury")
    assert rel(full.solve(v), torch.linalg.solve(fisher(G, lam, n), v)) < 1e-12
    assert "full" in full.describe() and "woodbury" in full.describe()


def test_sherman_morrison_one_step_by_hand() -> None:
    # one row g = (1, 2): F⁻¹ = I/λ − (g gᵀ/λ²)/(N + |g|²/λ) (eq. 3 with F₀⁻¹ = I/λ)
    g = torch.tensor([[1.0, 2.0]], dtype=F64)
    lam, n = 0.5, 4.0
    expected = torch.eye(2, dtype=F64) / lam - (g.T @ g / lam**2) / (n + 5.0 / lam)
    inv = SOLVERS.get("sherman_morrison")().build(g, lam, n)
    assert torch.allclose(inv.to_dense(), expected, rtol=1e-14, atol=0)


def test_build_does_not_modify_inputs() -> None:
    G = rand(3, 6, 5)
    before = G.clone()
    for name in ALL:
        SOLVERS.get(name)().build(G, 0.1, 6.0)
    BlockDiagonalInverse.build(G, None, 0.1, 6.0)
    assert torch.equal(G, before)


def test_auto_picks_by_shape_and_explains() -> None:
    auto = AutoSolver()
    tall = auto.choose(10_000, 100)
    wide = auto.choose(100, 10_000)
    assert tall.method == "dense" and "m=10000 > d_b=100" in tall.reason
    assert wide.method == "woodbury" and wide.reason.startswith("woodbury: m=100 < d_b=10000")
    assert isinstance(auto.build(rand(0, 40, 3), 0.1, 40.0), DenseInverse)
    assert isinstance(auto.build(rand(0, 3, 40), 0.1, 40.0), WoodburyInverse)


def test_auto_respects_memory_budget() -> None:
    # fp64 G, m = 0.9·d_b: woodbury has fewer flops but needs more memory than dense
    m, d_b = 900, 1000
    wood = estimate_bytes("woodbury", m, d_b, F64)
    dense = estimate_bytes("dense", m, d_b, F64)
    assert dense < wood
    auto = AutoSolver()
    assert auto.choose(m, d_b, F64).method == "woodbury"
    pick = auto.choose(m, d_b, F64, memory_budget_bytes=(dense + wood) // 2)
    assert pick.method == "dense" and "exceeds the budget" in pick.reason
    with pytest.raises(MemoryBudgetError, match="smaller blocks"):
        auto.choose(m, d_b, F64, memory_budget_bytes=dense - 1)


def test_memory_budget_error_before_allocation() -> None:
    # an expanded tensor takes no memory; a dense 2e5×2e5 build would need ~1e12 bytes
    G = torch.zeros(1).expand(64, 200_000)
    with pytest.raises(MemoryBudgetError, match="woodbury") as err:
        BlockDiagonalInverse.build(G, None, 0.1, 64.0, solver="dense", memory_budget_bytes=2**30)
    assert "GiB" in str(err.value)
    with pytest.raises(MemoryBudgetError):
        BlockDiagonalInverse.build(G, None, 0.1, 64.0, memory_budget_bytes=2**20)
    plan = BlockDiagonalInverse.plan(64, 200_000, None, memory_budget_bytes=2**30)
    assert plan[0]["method"] == "woodbury" and plan[0]["bytes"] <= 2**30


def test_memory_estimates_match_what_is_kept() -> None:
    m, d_b = 6, 11
    G = rand(0, m, d_b, dtype=torch.float32)
    for name in EXACT:
        inv = SOLVERS.get(name)().build(G, 0.1, 6.0)
        # persistent estimate + the int64 row ids == the bytes actually held
        assert inv.memory_bytes() == estimate(name, m, d_b, torch.float32).persistent + 8 * m
    assert estimate("dense", 10, 1000).persistent == 2 * 8 * 1000**2 + 8 * 10
    assert estimate("woodbury", 10, 1000).persistent == 10 * 1000 * 4 + 2 * 8 * 100
    assert format_bytes(1536) == "1.5 KiB"
    with pytest.raises(ConfigError):
        estimate("nope", 1, 1)


@pytest.mark.parametrize("name", EXACT)
def test_nan_inf_and_not_pd_raise_numerical_error(name: str) -> None:
    G = rand(0, 4, 3)
    G[1, 2] = float("nan")
    with pytest.raises(NumericalError, match="'fc'"):
        SOLVERS.get(name)().build(G, 0.1, 4.0, name="fc")
    G[1, 2] = float("inf")
    with pytest.raises(NumericalError, match=r"rows \[1\]"):
        BlockDiagonalInverse.build(G, None, 0.1, 4.0, solver=name)


def test_not_positive_definite_gram_names_block() -> None:
    A = -5.0 * torch.eye(3, dtype=F64)
    with pytest.raises(NumericalError, match="'head3'.*not positive definite"):
        DenseSolver().from_gram(A, 10, 0.1, 10.0, name="head3")


def test_bad_arguments_raise_config_error() -> None:
    G = rand(0, 4, 3)
    for lam, n in [(0.0, 1.0), (-1.0, 1.0), (float("nan"), 1.0), (0.1, 0.0), (0.1, -2.0)]:
        with pytest.raises(ConfigError):
            SOLVERS.get("dense")().build(G, lam, n)
    inv = SOLVERS.get("woodbury")().build(G, 0.1, 4.0)
    with pytest.raises(ConfigError, match=r"\(3,\)"):
        inv.solve(torch.ones(4, dtype=F64))
    with pytest.raises(ConfigError, match="unknown Fisher-inverse solver"):
        BlockDiagonalInverse.build(G, None, 0.1, 4.0, solver="cg")
    overlap = [IndexBlock("a", torch.tensor([0, 1])), IndexBlock("b", torch.tensor([1, 2]))]
    with pytest.raises(ConfigError, match="partition"):
        BlockDiagonalInverse.build(G, overlap, 0.1, 4.0)
    with pytest.raises(ConfigError, match="partition"):
        BlockDiagonalInverse.build(G, [IndexBlock("a", torch.tensor([0, 1]))], 0.1, 4.0)


def test_state_dict_round_trip_gives_identical_solves(tmp_path) -> None:
    G = rand(5, 9, 8)
    V = rand(6, 8, 2)
    for name in EXACT:
        inv = (
            SOLVERS.get(name)()
            .build(G, 0.05, 9.0, name=name)
            .downdate(torch.tensor([2]), 8.0, row_values=G[2:3])
        )
        back = load_block_inverse(inv.state_dict())
        assert type(back) is type(inv) and back.name == name
        assert torch.equal(back.solve(V), inv.solve(V))
        assert torch.equal(back.rows, inv.rows)
    blocks = [
        IndexBlock("w", torch.tensor([0, 2, 4, 6, 7])),
        IndexBlock("b", slice(1, 2)),
        IndexBlock("c", torch.tensor([3, 5])),
    ]
    bd = BlockDiagonalInverse.build(G, blocks, 0.05, 9.0)
    save_tensors(tmp_path / "inv.safetensors", bd.state_dict())
    back = BlockDiagonalInverse.from_state_dict(load_tensors(tmp_path / "inv.safetensors"))
    assert torch.equal(back.solve(V), bd.solve(V))
    assert back.describe() == bd.describe()


# --------------------------------------------------------------------------- PCG and the
# incremental Woodbury downdate (principal submatrix of the kept factor + PCG for the shift)


def spd(seed: int, n: int, cond: float) -> torch.Tensor:
    q, _ = torch.linalg.qr(rand(seed, n, n))
    return q @ torch.diag(torch.logspace(0, math.log10(cond), n, dtype=F64)) @ q.T


def test_pcg_iteration_bound_by_hand() -> None:
    from unlearnkit.curvature.solvers.pcg import pcg_iterations

    # κ = 4: ρ = (2 − 1)/(2 + 1) = 1/3; 2·(1/3)ⁱ ≤ 1e-15 ⇔ i ≥ log(5e-16)/log(1/3) = 32.07
    assert pcg_iterations(4.0) == 33
    assert pcg_iterations(1.0) == 1
    # κ = 3500/3400 (100 of 3 500 rows removed): ρ = 0.00725, i ≥ 7.15
    assert pcg_iterations(3500 / 3400) == 8


def test_pcg_solves_spd_systems_to_rounding_level() -> None:
    from unlearnkit.curvature.solvers.pcg import pcg

    A = spd(0, 30, 1e4)
    B = rand(1, 30, 3)
    ref = torch.linalg.solve(A, B)
    # preconditioner: the exact inverse of A + δI (the Woodbury downdate's situation)
    P = torch.linalg.inv(A + 0.5 * torch.eye(30, dtype=F64))
    res = pcg(lambda x: A @ x, lambda r: P @ r, B, anorm=1e4)
    assert res.converged and rel(res.x, ref) < 1e-10
    plain = pcg(lambda x: A @ x, lambda r: r, B, anorm=1e4)  # unpreconditioned: more steps
    assert plain.iterations > res.iterations and rel(plain.x, ref) < 1e-8
    zero = pcg(lambda x: A @ x, lambda r: P @ r, torch.zeros(30, 1, dtype=F64))
    assert zero.converged and zero.iterations == 0 and not zero.x.any()


def test_pcg_reports_breakdown() -> None:
    from unlearnkit.curvature.solvers.pcg import pcg

    A = torch.diag(torch.tensor([1.0, -1.0, 2.0], dtype=F64))  # not positive definite
    res = pcg(lambda x: A @ x, lambda r: r, torch.ones(3, 1, dtype=F64), max_iter=5)
    assert not res.converged


def test_downdate_plan_by_hand() -> None:
    from unlearnkit.curvature.solvers.woodbury_factor import BLAS2_WEIGHT, downdate_plan

    # m = 3 500 rows, 100 removed (the mnist5k linear block): 8 PCG iterations (+1 check)
    how, inc, ref = downdate_plan(3500, 100, 3400, 3500, 3500 / 3400)
    b = 3500
    assert inc == (
        2 * b * b * 100 + 100 * 100 * b + 100**3 / 3 + BLAS2_WEIGHT * 9 * (3 * b * b + 2 * b * 100)
    )
    assert ref == 3400**3 / 3 + BLAS2_WEIGHT * 2 * 3400**2
    assert how == "incremental"
    # 500 dropped rows, all new: refactor; in a sequence (100 new, 400 reused): incremental
    assert downdate_plan(3500, 500, 3000, 3500, 3500 / 3000)[0] == "refactor"
    assert downdate_plan(3500, 500, 3000, 3500, 3500 / 3000, n_new=100)[0] == "incremental"
    assert downdate_plan(3500, 1000, 2500, 3500, 3500 / 2500, n_new=100)[0] == "refactor"
    assert downdate_plan(20, 2, 18, 20, 20 / 18)[0] == "refactor"  # tiny blocks: refactor


@FEW
@given(p=problem, drops=st.lists(st.integers(1, 3), min_size=1, max_size=3))
def test_woodbury_incremental_downdates_match_dense_fp64(p: dict, drops: list[int]) -> None:
    """A sequence of downdates on the kept factor (forced incremental: the cost model would
    refactor such small blocks) equals a dense fp64 solve on the retained rows, also after a
    state-dict round trip."""
    m = p["m"] + sum(drops) + 1
    G = rand(p["seed"], m, p["d"])
    lam = math.exp(p["log_lam"])
    V = rand(p["seed"] + 1, p["d"], max(p["r"], 1))
    inv = SOLVERS.get("woodbury")().build(G, lam, p["n"] + m)
    keep = list(range(m))
    gen = torch.Generator().manual_seed(p["seed"])
    n = p["n"] + m
    for k in drops:
        drop = [keep[i] for i in torch.randperm(len(keep), generator=gen)[:k].tolist()]
        keep = [r for r in keep if r not in drop]
        n -= k * 0.9
        inv = inv.downdate(torch.tensor(drop), n, how="incremental")
        assert inv.basis.numel() == m and inv.rows.tolist() == keep  # the build's factor
        ref = torch.linalg.solve(fisher(G[keep], lam, n), V)
        assert rel(inv.solve(V), ref) < 1e-6
    back = load_block_inverse(inv.state_dict())
    assert torch.equal(back.solve(V), inv.solve(V))
    assert back.base_normalizer == p["n"] + m and torch.equal(back.basis, inv.basis)


def test_woodbury_incremental_falls_back_to_a_factor_when_pcg_breaks_down(monkeypatch) -> None:
    from unlearnkit.curvature.solvers import woodbury_factor
    from unlearnkit.curvature.solvers.pcg import PCGResult

    G, V = rand(0, 12, 30), rand(1, 30, 2)
    inv = (
        SOLVERS.get("woodbury")()
        .build(G, 0.01, 12.0)
        .downdate(torch.tensor([3, 7]), 10.0, how="incremental")
    )
    monkeypatch.setattr(woodbury_factor, "pcg", lambda *a, **k: PCGResult(a[2] * 0, 100, False))
    keep = [i for i in range(12) if i not in (3, 7)]
    assert rel(inv.solve(V), torch.linalg.solve(fisher(G[keep], 0.01, 10.0), V)) < 1e-10


def test_woodbury_state_dict_without_basis_loads() -> None:
    """States saved before the incremental downdates have no basis / base normaliser."""
    G, V = rand(2, 8, 20), rand(3, 20)
    inv = (
        SOLVERS.get("woodbury")()
        .build(G, 0.1, 8.0)
        .downdate(torch.tensor([1]), 7.0, how="refactor")
    )
    old = {k: t for k, t in inv.state_dict().items() if k not in ("basis", "base_normalizer")}
    back = load_block_inverse(old)
    assert torch.equal(back.basis, back.rows) and back.base_normalizer == 7.0
    assert rel(back.solve(V), inv.solve(V)) < 1e-14
    with pytest.raises(ConfigError, match="incremental"):
        inv.downdate(torch.tensor([2]), 6.0, how="sometimes")


def test_woodbury_sharing_keeps_one_copy_of_the_rows() -> None:
    G = rand(4, 6, 9)
    inv = SOLVERS.get("woodbury")().build(G, 0.1, 6.0)
    shared = inv.sharing(G)
    assert shared.G is G and torch.equal(shared.solve(G[0]), inv.solve(G[0]))
    with pytest.raises(ConfigError, match="differ"):
        inv.sharing(G + 1)


def test_downdate_plan_with_replaced_rows_by_hand() -> None:
    """k replaced rows bordered onto the factor add 2·b²·k + 2·b·s·k + k³/3 and 2·m·k per PCG
    iteration; a CIFAR-like grouped request (5 000 rows, 100 shrunk, N 50 000 → 49 900) is
    incremental, and with 1 000 stale rows (10 such requests) a refactor is cheaper."""
    from unlearnkit.curvature.solvers.pcg import pcg_iterations
    from unlearnkit.curvature.solvers.woodbury_factor import BLAS2_WEIGHT, downdate_plan

    b, k, kappa = 5000, 100, 50_000 / 49_900
    how, inc, ref = downdate_plan(b, k, b, b, kappa, k, k)
    it = pcg_iterations(kappa) + 1
    assert inc == pytest.approx(
        2 * b * b * k
        + k * k * b
        + k**3 / 3
        + BLAS2_WEIGHT * it * (3 * b * b + 2 * b * k)
        + 2 * b * b * k
        + 2 * b * k * k
        + k**3 / 3
        + BLAS2_WEIGHT * it * 2 * b * k,
        rel=1e-14,
    )
    assert ref == b**3 / 3 + BLAS2_WEIGHT * 2 * b * b and how == "incremental"
    assert downdate_plan(b, 1000, b, b, 50_000 / 49_000, 100, 1000)[0] == "refactor"
