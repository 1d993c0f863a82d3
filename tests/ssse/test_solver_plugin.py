"""A solver is one file: a module written here, outside the package, registers itself on
import and is then selectable by name through ``ErasureConfig(solver=...)``, planned by its
own memory estimate, saved and loaded, and gives the same erasure as ``dense`` (all exact
solvers represent the same (λI + GᵀG/N)⁻¹)."""

from __future__ import annotations

import importlib.util
import inspect
import pkgutil
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
import torch

import unlearnkit.curvature.solvers as solvers_pkg
from unlearnkit.curvature.layout import flat_params
from unlearnkit.curvature.solvers import (
    INVERSES,
    SOLVERS,
    AutoSolver,
    Solver,
    auto_candidates,
    estimate,
    register_solver,
    solver_help,
)
from unlearnkit.errors import ConfigError
from unlearnkit.methods import METHODS
from unlearnkit.ssse import ErasureConfig, ErasureState

#: The whole new solver: F⁻¹ through an eigendecomposition of GᵀG/N (not a Cholesky factor,
#: so it is an independent algorithm); keeps G in fp64 and rebuilds on every update.
EIGH_SOLVER = textwrap.dedent(
    '''
    """F = λI + GᵀG/N = Q·diag(λ + s)·Qᵀ (torch.linalg.eigh), F⁻¹V = Q·diag(1/(λ + s))·QᵀV."""

    from __future__ import annotations

    import torch
    from torch import Tensor

    from unlearnkit.curvature.memory import FP64, MemoryEstimate
    from unlearnkit.curvature.solvers import (
        BlockInverse,
        Solver,
        register_inverse,
        register_solver,
    )
    from unlearnkit.curvature.solvers.base import (
        F64,
        as_row_ids,
        check_hyper,
        check_rows_matrix,
        keep_mask,
        positions_of,
    )


    @register_inverse
    class EighInverse(BlockInverse):
        method = "test_eigh"

        def __init__(self, *, G: Tensor, **common: object) -> None:
            super().__init__(**common)
            self.G = G  # fp64 (n_built, d_b): row i is the current value of row id i
            R = G[self.rows]
            self.s, self.Q = torch.linalg.eigh(R.T @ R / self.normalizer)

        @property
        def device(self) -> torch.device:
            return self.G.device

        def _solve64(self, V: Tensor) -> Tensor:
            return self.Q @ ((self.Q.T @ V) / (self.damping + self.s.clamp_min(0))[:, None])

        def _with(self, G: Tensor, rows: Tensor, normalizer: float) -> EighInverse:
            return EighInverse(
                G=G, name=self.name, d_b=self.d_b, damping=self.damping,
                normalizer=normalizer, rows=rows, n_built=self.n_built,
            )

        def downdate(self, remove_rows, normalizer, row_values=None):
            r = as_row_ids(remove_rows, self.name)
            pos = positions_of(r, self.rows, self.n_built, self.name)
            return self._with(self.G, self.rows[keep_mask(self.m, pos)], normalizer)

        def replace_rows(self, rows, new_values, normalizer, old_values=None):
            r = as_row_ids(rows, self.name)
            positions_of(r, self.rows, self.n_built, self.name)
            G = self.G.clone()
            G[r] = new_values.to(G)
            return self._with(G, self.rows, normalizer)

        def memory_bytes(self) -> int:
            return (self.G.numel() + self.Q.numel() + self.s.numel() + self.rows.numel()) * 8

        def _tensors(self) -> dict[str, Tensor]:
            return {"G": self.G}

        @classmethod
        def from_state_dict(cls, state):
            return cls(G=state["G"].to(F64), **cls._common(state))


    @register_solver
    class EighSolver(Solver):
        name = "test_eigh"
        description = "eigendecomposition of GᵀG/N (a test plugin)"

        @classmethod
        def estimate(cls, m: int, d_b: int, itemsize: int) -> MemoryEstimate:
            return MemoryEstimate(
                persistent=(m * d_b + d_b * d_b + d_b) * FP64, workspace=d_b * d_b * FP64
            )

        @classmethod
        def build_flops(cls, m: int, d_b: int) -> float:
            return m * d_b * d_b + 9 * d_b**3

        def build(self, G, damping, normalizer, *, name="block"):
            lam, n = check_hyper(damping, normalizer)
            check_rows_matrix(G, name)
            return EighInverse(
                G=G.detach().to(F64).clone(), name=name, d_b=G.shape[1], damping=lam,
                normalizer=n, rows=torch.arange(G.shape[0]), n_built=G.shape[0],
            )
    '''
)


@pytest.fixture
def eigh_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Write the solver to a file outside the package and import it (registrations are
    undone after the test)."""
    monkeypatch.setattr(SOLVERS, "_items", dict(SOLVERS._items))
    monkeypatch.setattr(INVERSES, "_items", dict(INVERSES._items))
    path = tmp_path / "eigh_solver.py"
    path.write_text(EIGH_SOLVER)
    spec = importlib.util.spec_from_file_location("eigh_solver_plugin", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unknown_solver_is_a_config_error_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="test_eigh.*known: auto, dense, sherman_morrison"):
        ErasureConfig(solver="test_eigh")
    with pytest.raises(ConfigError, match="known: auto, dense"):
        METHODS.get("ssse")().make_config({"solver": "nope"})


def test_a_solver_in_one_file_is_selectable_and_agrees_with_dense(
    eigh_module: ModuleType, blobs, mlp, tmp_path: Path
) -> None:
    assert "test_eigh" in SOLVERS and "test_eigh: eigendecomposition" in solver_help()
    # its own memory estimate is what the planner asks: (m·d_b + d_b² + d_b)·8 + d_b²·8
    assert estimate("test_eigh", 60, 63).peak == (60 * 63 + 63 * 63 + 63 + 63 * 63) * 8
    forget = blobs.subset(blobs.ids[[4, 8, 33]])
    later = blobs.subset(blobs.ids[[11, 50]])
    states, models = {}, {}
    for solver in ("dense", "test_eigh"):
        cfg = ErasureConfig(
            blocks="per_layer", solver=solver, damping=1e-2, mode="exact", group_size=1
        )
        state = ErasureState.prepare(mlp, blobs, cfg)
        m1, st1 = state.erase(mlp, forget, eps=1.0)
        states[solver], models[solver] = (state, st1), m1
    assert [e.inverse.method for e in states["test_eigh"][0].inverse.entries] == ["test_eigh"] * 4
    # the same F⁻¹ before and after the exact downdate of the first request (fp64)
    for k in (0, 1):
        a = states["dense"][k].inverse.to_dense()
        b = states["test_eigh"][k].inverse.to_dense()
        assert torch.allclose(b, a, rtol=0, atol=1e-8 * float(a.abs().max()))
    lay = states["dense"][0].layout
    got = flat_params(models["test_eigh"], lay).double()
    want = flat_params(models["dense"], lay).double()
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)
    # it persists through its own registered inverse, and the loaded state erases the same
    st1 = states["test_eigh"][1]
    st1.save(tmp_path / "st")
    loaded = ErasureState.load(tmp_path / "st", models["test_eigh"])
    a, _ = st1.erase(models["test_eigh"], later, eps=1.0)
    b, _ = loaded.erase(models["test_eigh"], later, eps=1.0)
    assert torch.equal(flat_params(a, lay), flat_params(b, lay))


def test_every_solver_module_in_the_package_registers_itself() -> None:
    """The package imports its modules with pkgutil: each concrete Solver subclass defined in a
    module there is in SOLVERS under its name, with a one-line description."""
    found = []
    for info in pkgutil.iter_modules(solvers_pkg.__path__):
        module = getattr(solvers_pkg, info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Solver)
                and not inspect.isabstract(obj)
                and obj.__module__ == module.__name__
            ):
                found.append(obj)
                assert SOLVERS.get(obj.name) is obj and "\n" not in obj.description
    assert sorted(c.name for c in found) == SOLVERS.names()


def test_auto_asks_the_registry_for_its_candidates(eigh_module: ModuleType) -> None:
    """A registered auto candidate competes on its own stated flops and memory: free to build,
    it wins; over the budget, the cheapest candidate that fits wins and the reason says why."""

    @register_solver
    class FreeEigh(eigh_module.EighSolver):
        name = "test_free_eigh"
        description = "test_eigh, claimed free to build"
        auto_candidate = True

        @classmethod
        def build_flops(cls, m: int, d_b: int) -> float:
            return 0.0

    auto = AutoSolver()
    m, d_b = 100, 10_000  # woodbury's shape (m < d_b); dense needs 3·d_b² fp64
    assert [c.name for c in auto_candidates()] == ["dense", "test_free_eigh", "woodbury"]
    assert auto.choose(m, d_b).method == "test_free_eigh"
    free = estimate("test_free_eigh", m, d_b).peak
    wood = estimate("woodbury", m, d_b).peak
    assert wood < free
    pick = auto.choose(m, d_b, memory_budget_bytes=wood)
    assert pick.method == "woodbury"
    assert "test_free_eigh is cheaper but exceeds the budget" in pick.reason
    G = torch.randn(6, 4, dtype=torch.float64)
    inv = auto.build(G, 0.1, 6.0)
    assert inv.method == "test_eigh"
    F = 0.1 * torch.eye(4, dtype=torch.float64) + G.T @ G / 6.0
    assert torch.allclose(inv.to_dense(), torch.linalg.inv(F), rtol=0, atol=1e-10)
