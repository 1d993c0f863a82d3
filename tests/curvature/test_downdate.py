"""Exact downdates: removing/replacing rows equals a fresh build on the remaining rows."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unlearnkit.curvature.block_inverse import BlockDiagonalInverse, IndexBlock
from unlearnkit.curvature.solvers import SOLVERS, BlockInverse, load_block_inverse
from unlearnkit.errors import (
    AlreadyErasedError,
    ConfigError,
    StateMismatchError,
    UnknownIdsError,
)

F64 = torch.float64
EXACT = ["dense", "sherman_morrison", "woodbury"]
FEW = settings(max_examples=12, deadline=None, derandomize=True)


def rand(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def fresh_solve(G: torch.Tensor, lam: float, n: float, V: torch.Tensor) -> torch.Tensor:
    F = lam * torch.eye(G.shape[1], dtype=F64) + G.T @ G / n
    return torch.linalg.solve(F, V)


def snapshot(inv: BlockInverse) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in inv.state_dict().items()}


def unchanged(inv: BlockInverse, snap: dict[str, torch.Tensor]) -> bool:
    now = inv.state_dict()
    return now.keys() == snap.keys() and all(torch.equal(now[k], snap[k]) for k in snap)


case = st.fixed_dictionaries(
    {
        "m": st.integers(2, 14),
        "d": st.integers(1, 9),
        "log_lam": st.floats(math.log(1e-4), 0.0),
        "seed": st.integers(0, 2**31 - 1),
        "solver": st.sampled_from(EXACT),
    }
)


@FEW
@given(c=case, data=st.data())
def test_downdate_equals_fresh_build_and_keeps_original(c: dict, data: st.DataObject) -> None:
    m, d, lam = c["m"], c["d"], math.exp(c["log_lam"])
    G, V = rand(c["seed"], m, d), rand(c["seed"] + 1, d, 2)
    k = data.draw(st.integers(1, m))
    drop = torch.randperm(m, generator=torch.Generator().manual_seed(c["seed"]))[:k]
    keep = torch.tensor(sorted(set(range(m)) - set(drop.tolist())), dtype=torch.int64)
    n, n_new = float(m), float(m - k) if k < m else 1.0  # SSSE: N = n, then n − k
    inv = SOLVERS.get(c["solver"])().build(G, lam, n)
    snap, before = snapshot(inv), inv.solve(V)
    down = inv.downdate(drop, n_new, row_values=G[drop])
    assert rel(down.solve(V), fresh_solve(G[keep], lam, n_new, V)) < 1e-8
    assert torch.equal(down.rows, keep) and down.normalizer == n_new
    assert unchanged(inv, snap) and torch.equal(inv.solve(V), before)


@FEW
@given(m=st.integers(3, 10), d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_sherman_morrison_minus_sign_downdate_with_same_normalizer(
    m: int, d: int, seed: int
) -> None:
    # the paper's recursion run backwards (normaliser unchanged → no rebuild)
    G, V = rand(seed, m, d), rand(seed + 1, d)
    lam, n = 0.05, float(m)
    inv = SOLVERS.get("sherman_morrison")().build(G, lam, n)
    down = inv.downdate(torch.tensor([0, m - 1]), n)
    assert rel(down.solve(V), fresh_solve(G[1 : m - 1], lam, n, V)) < 1e-8


@FEW
@given(c=case, same_n=st.booleans())
def test_replace_rows_equals_fresh_build(c: dict, same_n: bool) -> None:
    m, d, lam = c["m"], c["d"], math.exp(c["log_lam"])
    G, V = rand(c["seed"], m, d), rand(c["seed"] + 1, d, 3)
    rows = torch.tensor([m - 1, 0])
    new = rand(c["seed"] + 2, 2, d)
    n, n_new = float(m), float(m) if same_n else m - 0.5
    inv = SOLVERS.get(c["solver"])().build(G, lam, n)
    snap = snapshot(inv)
    out = inv.replace_rows(rows, new, n_new, old_values=G[rows])
    G2 = G.clone()
    G2[rows] = new
    assert rel(out.solve(V), fresh_solve(G2, lam, n_new, V)) < 1e-8
    assert unchanged(inv, snap)


@pytest.mark.parametrize("solver", EXACT)
def test_grouped_gradient_loses_one_member(solver: str) -> None:
    """Groups of 4 samples averaged into rows; erasing sample i replaces its group's row by
    (|b|·g_b − gᵢ)/(|b| − 1) and N goes from n to n − 1 (ssse-engine.md §4.4)."""
    n, size, d = 12, 4, 6
    per_sample = rand(7, n, d)
    groups = per_sample.view(n // size, size, d)
    G = groups.mean(dim=1)
    lam = 0.01
    inv = SOLVERS.get(solver)().build(G, lam, float(n))
    i, b = 5, 5 // size  # sample 5 is in group 1
    new_row = (size * G[b] - per_sample[i]) / (size - 1)
    out = inv.replace_rows(torch.tensor([b]), new_row[None], float(n - 1), old_values=G[b : b + 1])
    remaining = torch.cat([per_sample[4:5], per_sample[6:8]])  # group 1 without sample 5
    G_ref = torch.cat([G[:b], remaining.mean(0, keepdim=True), G[b + 1 :]])
    V = rand(8, d)
    assert rel(out.solve(V), fresh_solve(G_ref, lam, float(n - 1), V)) < 1e-10


@pytest.mark.parametrize("solver", EXACT)
def test_sequence_of_downdates_keeps_stable_row_ids(solver: str) -> None:
    m, d, lam = 10, 5, 0.02
    G, V = rand(3, m, d), rand(4, d)
    inv = SOLVERS.get(solver)().build(G, lam, float(m))
    removed: list[int] = []
    for step in ([7], [0, 3], [9]):
        t = torch.tensor(step)
        inv = inv.downdate(t, float(m - len(removed) - len(step)), row_values=G[t])
        removed += step
        keep = [r for r in range(m) if r not in removed]
        assert inv.rows.tolist() == keep
        assert rel(inv.solve(V), fresh_solve(G[keep], lam, float(len(keep)), V)) < 1e-8
    with pytest.raises(AlreadyErasedError, match="already removed"):
        inv.downdate(torch.tensor([3]), 5.0, row_values=G[3:4])
    with pytest.raises(UnknownIdsError, match="do not exist"):
        inv.downdate(torch.tensor([10]), 5.0, row_values=G[:1])
    with pytest.raises(ConfigError, match="duplicates"):
        inv.downdate(torch.tensor([1, 1]), 5.0, row_values=G[:2])


@pytest.mark.parametrize("solver", EXACT)
def test_downdate_to_no_rows_is_identity_over_damping(solver: str) -> None:
    G, v = rand(0, 3, 4), rand(1, 4)
    inv = SOLVERS.get(solver)().build(G, 0.25, 3.0)
    empty = inv.downdate(torch.arange(3), 1.0, row_values=G)
    assert empty.m == 0 and rel(empty.solve(v), v / 0.25) < 1e-10


def test_dense_needs_the_removed_gradients() -> None:
    G = rand(0, 5, 3)
    inv = SOLVERS.get("dense")().build(G, 0.1, 5.0)
    with pytest.raises(StateMismatchError, match=r"rows \[1\]"):
        inv.downdate(torch.tensor([1]), 4.0, row_values=G[2:3])  # wrong row's gradient
    with pytest.raises(StateMismatchError):
        inv.replace_rows(torch.tensor([1]), G[:1], 5.0, old_values=2 * G[1:2])
    with pytest.raises(ConfigError, match="does not keep the gradients"):
        inv.downdate(torch.tensor([1]), 4.0)
    with pytest.raises(ConfigError, match="got 2"):
        inv.downdate(torch.tensor([1]), 4.0, row_values=G[:2])
    with pytest.raises(ConfigError, match="old"):
        inv.replace_rows(torch.tensor([1]), G[:1], 5.0)


def test_block_diagonal_downdate_mixed_solvers_and_failed_update_changes_nothing() -> None:
    m, lam = 12, 0.05
    G = rand(11, m, 42)
    blocks = [
        IndexBlock("small", torch.arange(0, 42, 21)),  # d_b=2 ≪ m: dense
        IndexBlock("wide", torch.tensor([i for i in range(42) if i % 21])),
    ]  # woodbury
    inv = BlockDiagonalInverse.build(G, blocks, lam, float(m))
    assert [e.inverse.method for e in inv.entries] == ["dense", "woodbury"]
    V = rand(12, 42, 2)
    before = inv.solve(V)
    drop = torch.tensor([2, 5, 11])
    with pytest.raises(ConfigError, match="does not keep the gradients"):
        inv.downdate(drop, 9.0)  # dense block needs row_values
    with pytest.raises(ConfigError, match=r"\(3, 42\)"):
        inv.downdate(drop, 9.0, row_values=G[drop][:, :5])
    assert torch.equal(inv.solve(V), before)
    down = inv.downdate(drop, 9.0, row_values=G[drop])
    keep = torch.tensor([r for r in range(m) if r not in (2, 5, 11)])
    fresh = BlockDiagonalInverse.build(G[keep], blocks, lam, 9.0)
    assert rel(down.solve(V), fresh.solve(V)) < 1e-8
    assert torch.equal(inv.solve(V), before)
    new = rand(13, 1, 42)
    rep = down.replace_rows(torch.tensor([4]), new, 9.0, old_values=G[4:5])
    G2 = G[keep].clone()
    G2[3] = new[0]  # row id 4 is the 4th kept row
    assert rel(rep.solve(V), BlockDiagonalInverse.build(G2, blocks, lam, 9.0).solve(V)) < 1e-8


def test_from_grams_matches_build_and_downdates() -> None:
    # linear multi-attribute model: A_k = Xᵀ diag(r_k²) X for all k in one einsum
    n, p, k = 20, 3, 2
    X, R = rand(0, n, p), rand(1, n, k)
    grams = torch.einsum("ni,nk,nj->kij", X, R**2, X)
    blocks = [IndexBlock(f"attr{j}", torch.arange(j * p, (j + 1) * p)) for j in range(k)]
    G = torch.cat([R[:, j : j + 1] * X for j in range(k)], dim=1)  # per-sample gradients r_ik·x_i
    lam, v = 1e-3, rand(2, k * p)
    inv = BlockDiagonalInverse.from_grams(grams, blocks, n, lam, float(n))
    assert rel(inv.solve(v), BlockDiagonalInverse.build(G, blocks, lam, float(n)).solve(v)) < 1e-10
    down = inv.downdate(torch.tensor([0, 1]), float(n - 2), row_values=G[:2])
    ref = BlockDiagonalInverse.build(G[2:], blocks, lam, float(n - 2), solver="dense")
    assert rel(down.solve(v), ref.solve(v)) < 1e-8


@FEW
@given(c=case, how=st.sampled_from(["incremental", "refactor"]), data=st.data())
def test_woodbury_downdate_paths_equal_fresh_build_and_keep_original(
    c: dict, how: str, data: st.DataObject
) -> None:
    """Both exact Woodbury paths (the kept factor + PCG, or a new factor): a sequence of
    downdates with new normalisers and a group-style row replacement in between."""
    m, d, lam = c["m"] + 4, c["d"], math.exp(c["log_lam"])
    G, V = rand(c["seed"], m, d), rand(c["seed"] + 1, d, 2)
    inv = orig = SOLVERS.get("woodbury")().build(G, lam, float(m))
    snap, before = snapshot(orig), orig.solve(V)
    cur, keep, n = G.clone(), list(range(m)), float(m)
    gen = torch.Generator().manual_seed(c["seed"])
    for step in range(3):
        k = data.draw(st.integers(1, max(1, len(keep) // 3)))
        pick = [keep[i] for i in torch.randperm(len(keep), generator=gen)[:k].tolist()]
        if step == 1:  # a grouped row loses a member: new value, same id
            new = rand(c["seed"] + 2, k, d)
            n -= 0.5
            inv = inv.replace_rows(torch.tensor(pick), new, n)
            cur[torch.tensor(pick)] = new
        else:
            keep = [r for r in keep if r not in pick]
            n -= k
            inv = inv.downdate(torch.tensor(pick), n, how=how)
        assert rel(inv.solve(V), fresh_solve(cur[keep], lam, n, V)) < 1e-8
        assert inv.rows.tolist() == keep
    assert unchanged(orig, snap) and torch.equal(orig.solve(V), before)
    assert torch.equal(G, rand(c["seed"], m, d))  # the input rows are untouched


def test_woodbury_incremental_downdate_leaves_the_original_unchanged() -> None:
    G, V = rand(5, 10, 16), rand(6, 16, 2)
    inv = SOLVERS.get("woodbury")().build(G, 0.02, 10.0)
    snap, before = snapshot(inv), inv.solve(V)
    down = inv.downdate(torch.tensor([0, 4, 9]), 7.0, how="incremental")
    again = down.downdate(torch.tensor([5]), 6.0, how="incremental")
    assert down.L is inv.L and again.L is inv.L  # the build's factor, shared
    assert torch.equal(again._W[:, :3], down._W)  # [M⁻¹]_{:,S} columns reused, one new
    state = again.state_dict()
    assert torch.equal(load_block_inverse(state).solve(V), again.solve(V))
    state["dropped"] = state["dropped"][:2]
    with pytest.raises(ConfigError, match="saved downdate factors"):
        load_block_inverse(state)
    assert unchanged(inv, snap) and torch.equal(inv.solve(V), before)
    keep = [1, 2, 3, 6, 7, 8]
    assert rel(again.solve(V), fresh_solve(G[keep], 0.02, 6.0, V)) < 1e-10
    with pytest.raises(AlreadyErasedError):
        again.downdate(torch.tensor([4]), 5.0, how="incremental")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_woodbury_incremental_downdates_on_cuda_match_fresh_fp64() -> None:
    G, V = rand(0, 40, 60), rand(1, 60, 2)
    inv = SOLVERS.get("woodbury")().build(G.cuda(), 0.01, 40.0)
    d = inv.downdate(torch.tensor([3, 9, 30]), 37.0, how="incremental")
    d = d.downdate(torch.tensor([11]), 36.0, how="incremental")
    d = load_block_inverse({k: t for k, t in d.state_dict().items()})
    keep = [i for i in range(40) if i not in (3, 9, 11, 30)]
    assert d.device.type == "cuda" and d.basis.numel() == 40
    assert rel(d.solve(V.cuda()).cpu(), fresh_solve(G[keep], 0.01, 36.0, V)) < 1e-8


# --------------------------------------------------------------------------- Woodbury row
# replacement on the kept factor (bordered/Schur form on the replaced rows + PCG for the shift)


def precond_error(inv, cur: torch.Tensor, keep: list[int]) -> float:
    """The kept factor's bordered inverse vs a dense (N₀λI + K'_AA)⁻¹ (PCG would hide a wrong
    preconditioner in the solve: check it on its own)."""
    Ga = cur[keep]
    A = Ga @ Ga.T + inv.base_normalizer * inv.damping * torch.eye(len(keep), dtype=F64)
    B = rand(99, len(keep), 2)
    return rel(inv._precond(B), torch.linalg.solve(A, B))


@FEW
@given(c=case, data=st.data())
def test_woodbury_replace_rows_sequences_equal_fresh_fp64(c: dict, data: st.DataObject) -> None:
    """Replacements (also of a row replaced before), removals and normaliser changes in any
    order, on either exact path in any mix, equal a dense fp64 solve on the current rows (the
    kept factor's bordered inverse equals a dense one too); G and K are
    never copied (the replaced rows live in the patch); a state-dict round trip solves bit
    for bit; the original inverse and the input rows are unchanged."""
    m, d, lam = c["m"] + 4, c["d"], math.exp(c["log_lam"])
    G, V = rand(c["seed"], m, d), rand(c["seed"] + 1, d, 2)
    inv = orig = SOLVERS.get("woodbury")().build(G, lam, float(m))
    snap, before = snapshot(orig), orig.solve(V)
    cur, keep, n = G.clone(), list(range(m)), float(m)
    gen = torch.Generator().manual_seed(c["seed"])
    factor = orig.L
    for step in range(4):
        how = data.draw(st.sampled_from(["incremental", "refactor"]))
        k = data.draw(st.integers(1, max(1, len(keep) // 3)))
        pick = [keep[i] for i in torch.randperm(len(keep), generator=gen)[:k].tolist()]
        n -= data.draw(st.sampled_from([0.0, 0.5, 1.0]))
        if data.draw(st.booleans()) or step == 0:
            new = rand(c["seed"] + 10 + step, k, d)
            inv = inv.replace_rows(torch.tensor(pick), new, n, how=how)
            cur[torch.tensor(pick)] = new
        else:
            keep = [r for r in keep if r not in pick]
            inv = inv.downdate(torch.tensor(pick), n, how=how)
        assert inv.G is orig.G and inv.K is orig.K
        assert (inv.L is factor) == (how == "incremental")
        factor = inv.L
        assert torch.equal(inv.effective_rows()[keep], cur[keep])
        assert rel(inv.solve(V), fresh_solve(cur[keep], lam, n, V)) < 1e-8
        assert precond_error(inv, cur, keep) < 1e-7
        assert inv.rows.tolist() == keep
    back = load_block_inverse(inv.state_dict())
    assert torch.equal(back.solve(V), inv.solve(V))
    assert unchanged(orig, snap) and torch.equal(orig.solve(V), before)
    assert torch.equal(G, rand(c["seed"], m, d))


def test_woodbury_replace_then_remove_and_renormalise_in_one_request() -> None:
    """One grouped exact request: shrunk groups' rows replaced, emptied groups' rows removed,
    N changed (the order ErasureState uses); also a row replaced twice, then removed."""
    G, V = rand(7, 30, 12), rand(8, 12, 3)
    inv = SOLVERS.get("woodbury")().build(G, 0.05, 30.0)
    new = rand(9, 3, 12)
    out = inv.replace_rows(torch.tensor([4, 11, 20]), new, 27.0, how="incremental")
    out = out.downdate(torch.tensor([2, 5]), 27.0, how="incremental")
    cur = G.clone()
    cur[[4, 11, 20]] = new
    keep = [i for i in range(30) if i not in (2, 5)]
    assert out.L is inv.L and out.stale.tolist() == [4, 11, 20]
    assert rel(out.solve(V), fresh_solve(cur[keep], 0.05, 27.0, V)) < 1e-10
    assert precond_error(out, cur, keep) < 1e-12
    again = out.replace_rows(torch.tensor([11]), new[:1] * 0.5, 26.0, how="incremental")
    cur[11] = new[0] * 0.5
    assert rel(again.solve(V), fresh_solve(cur[keep], 0.05, 26.0, V)) < 1e-10
    gone = again.downdate(torch.tensor([11]), 25.0, how="incremental")
    keep.remove(11)
    assert gone.stale.tolist() == [4, 20] and precond_error(gone, cur, keep) < 1e-12
    assert rel(gone.solve(V), fresh_solve(cur[keep], 0.05, 25.0, V)) < 1e-10


def test_woodbury_replace_rows_falls_back_to_a_refactor(monkeypatch) -> None:
    """A Schur complement that is not numerically PD gives a refactor (exact); a PCG breakdown
    a direct factor of the patched K'_AA (exact)."""
    from unlearnkit.curvature.solvers import woodbury_factor
    from unlearnkit.curvature.solvers.pcg import PCGResult
    from unlearnkit.errors import NumericalError

    G, V = rand(0, 12, 30), rand(1, 30, 2)
    inv = SOLVERS.get("woodbury")().build(G, 0.01, 12.0)
    new = rand(2, 2, 30)
    cur = G.clone()
    cur[[3, 8]] = new
    real = woodbury_factor.cholesky_or_raise

    def fail_schur(M, name, what):
        if "Schur" in what:
            raise NumericalError("not PD")
        return real(M, name, what)

    monkeypatch.setattr(woodbury_factor, "cholesky_or_raise", fail_schur)
    out = inv.replace_rows(torch.tensor([3, 8]), new, 11.0, how="incremental")
    assert out.L is not inv.L and not out.stale.numel() and out.G is inv.G
    assert rel(out.solve(V), fresh_solve(cur, 0.01, 11.0, V)) < 1e-10
    monkeypatch.setattr(woodbury_factor, "cholesky_or_raise", real)
    inc = inv.replace_rows(torch.tensor([3, 8]), new, 11.0, how="incremental")
    assert inc.L is inv.L
    monkeypatch.setattr(woodbury_factor, "pcg", lambda *a, **k: PCGResult(a[2] * 0, 100, False))
    assert rel(inc.solve(V), fresh_solve(cur, 0.01, 11.0, V)) < 1e-10


def test_woodbury_states_saved_before_the_patch_load() -> None:
    """The previous replace_rows stored G and K with the new rows in place (no patch keys);
    such a state loads and solves as the patched inverse; a bad patch or stale row raises."""
    G, V = rand(3, 10, 25), rand(4, 25, 2)
    inv = SOLVERS.get("woodbury")().build(G, 0.1, 10.0)
    out = inv.replace_rows(torch.tensor([1, 6]), rand(5, 2, 25), 9.5, how="incremental")
    Gp = out.effective_rows()
    K = Gp.double() @ Gp.double().T
    L = torch.linalg.cholesky(K + 9.5 * 0.1 * torch.eye(10, dtype=F64))
    old = {
        k: t
        for k, t in out.state_dict().items()
        if k in ("method", "name", "d_b", "damping", "normalizer", "rows", "n_built")
    }
    old.update(G=Gp, K=K, L=L)
    back = load_block_inverse(old)
    assert not back.patch_ids.numel() and rel(back.solve(V), out.solve(V)) < 1e-12
    bad = out.state_dict()
    bad["patch_G"] = bad["patch_G"][:1]
    with pytest.raises(ConfigError, match="patch"):
        load_block_inverse(bad)
    bad = out.downdate(torch.tensor([6]), 9.0, how="incremental").state_dict()
    bad["stale"] = torch.tensor([1, 6])
    with pytest.raises(ConfigError, match="replaced rows"):
        load_block_inverse(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_woodbury_replace_rows_on_cuda_match_fresh_fp64() -> None:
    G, V = rand(0, 40, 60), rand(1, 60, 2)
    inv = SOLVERS.get("woodbury")().build(G.float().cuda(), 0.01, 400.0)
    new = rand(2, 3, 60)
    out = inv.replace_rows(torch.tensor([3, 9, 30]), new, 397.0, how="incremental")
    out = out.downdate(torch.tensor([11]), 396.0, how="incremental")
    out = load_block_inverse({k: t for k, t in out.state_dict().items()})
    out = out.replace_rows(torch.tensor([9]), new[:1] * 2, 395.0, how="incremental")
    cur = G.float().double()
    cur[[3, 9, 30]] = new.float().double()
    cur[9] = (new[0] * 2).float().double()
    keep = [i for i in range(40) if i != 11]
    assert out.device.type == "cuda" and out.L is not None and out.stale.tolist() == [3, 9, 30]
    assert rel(out.solve(V.cuda()).cpu(), fresh_solve(cur[keep], 0.01, 395.0, V)) < 1e-8
    assert torch.equal(out.effective_rows().cpu().double()[keep], cur[keep])
