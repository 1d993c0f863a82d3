"""Data-parallel ``prepare_state``: two gloo processes on loopback, each with its shard (5 and 4
of 9 samples, interleaved), end with the single-process state (kfac, ekfac, exact rows) to fp64
rounding, and an erase request on it gives the single-process θ; overlapping shards and grouped
rows are refused on both processes; only rank 0 writes the state."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from unlearnkit.curvature.layout import flat_params
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.ssse import ErasureConfig, choose_structure, load_state, prepare_state
from unlearnkit.ssse.distributed import shard

N = 9  # two processes: shards of 5 and 4 samples
TOL = dict(rtol=1e-12, atol=1e-14)
FORGET = [12, 15, 17]  # ids held by both shards (interleaved: ranks own 10,12,.. / 11,13,..)
EPS = 0.5
#: a fixed budget (the default follows the machine's free memory, which varies)
AUTO: dict[str, Any] = {"task": "multiclass", "group_size": 1, "memory_budget_bytes": 2**30}
CONFIGS: dict[str, dict[str, Any]] = {
    "kfac": {"structure": "kfac", "curvature": "true", "seed": 3},
    "ekfac": {"structure": "ekfac", "curvature": "empirical"},
    "rows": {"structure": "rows", "curvature": "empirical", "group_size": 1},
    "rows_ggn": {"structure": "rows", "curvature": "ggn", "group_size": 1},
}


def _problem() -> tuple[nn.Module, ArrayDataset]:
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double().eval()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    data = ArrayDataset("train", x, y, torch.arange(10, 10 + N), "multiclass", ("a", "b", "c"))
    return model, data


def _config(name: str) -> ErasureConfig:
    return ErasureConfig(task="multiclass", damping=1e-2, **CONFIGS[name])


def _summary(state: Any, model: nn.Module, data: ArrayDataset) -> dict[str, Any]:
    """The state's tensors and ids, and θ after erasing FORGET with ε = EPS."""
    new_model, _ = state.erase(model, data.subset(torch.tensor(FORGET)), EPS)
    out: dict[str, Any] = {
        "ids": state.sample_ids,
        "n": state.n,
        "theta": flat_params(new_model, state.layout).double(),
        "state_id": state.state_id,
    }
    if hasattr(state, "sums"):
        out["count"] = state.sums.count
        out["sums"] = {k: (ls.a_sum, ls.g_sum) for k, ls in state.sums.layers.items()}
        out["diag"] = dict(state.sums.diag)
        if state.scale_sums is not None:
            out["scale_count"] = state.scale_sums.count
            out["scales"] = dict(state.scale_sums.sums)
    else:
        out["rows"] = state.rows
        out["members"] = state.group_members
        out["inverse"] = state.inverse.to_dense()
    return out


def _refusal(fn: Any) -> str:
    try:
        fn()
    except (ConfigError, DataError) as err:
        return f"{type(err).__name__}: {err}"
    return "not refused"


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, data = _problem()
        part = shard(data)  # positions rank, rank + 2, ...
        out: dict[str, Any] = {"shard": part.ids}
        for name in CONFIGS:
            state = prepare_state(model, part, _config(name))
            out[name] = _summary(state, model, data)
            if name == "ekfac":  # rank 0 writes; rank 1 writes nothing
                state.save(Path(out_dir) / f"state{rank}")
        auto = ErasureConfig(**AUTO, structure="auto")
        out["auto"] = prepare_state(model, part, auto).notes["structure_choice"]
        overlap = data.subset(data.ids[:5] if rank == 0 else data.ids[4:])
        out["overlap"] = _refusal(lambda: prepare_state(model, overlap, _config("kfac")))
        grouped = {**CONFIGS["rows"], "group_size": 2}
        cfg = ErasureConfig(task="multiclass", **grouped)
        out["grouped"] = _refusal(lambda: prepare_state(model, part, cfg))
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _assert_same(got: dict[str, Any], ref: dict[str, Any]) -> None:
    for k, want in ref.items():
        if k == "state_id":
            continue
        if isinstance(want, dict):
            assert want.keys() == got[k].keys()
            for kk in want:
                torch.testing.assert_close(got[k][kk], want[kk], **TOL)
        elif isinstance(want, torch.Tensor) and want.is_floating_point():
            tol = TOL if want.dtype == torch.float64 else dict(rtol=0, atol=0)
            torch.testing.assert_close(got[k], want, **tol)  # fp32 rows: bit-identical
        else:
            assert torch.equal(torch.as_tensor(got[k]), torch.as_tensor(want)), k


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_processes_prepare_the_single_process_state(tmp_path: Path) -> None:
    # the single-process references first: with "fork" the children inherit the warm state
    model, data = _problem()
    ref = {
        name: _summary(prepare_state(model, data, _config(name)), model, data) for name in CONFIGS
    }
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method=method
    )
    got = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert [g["shard"].tolist() for g in got] == [[10, 12, 14, 16, 18], [11, 13, 15, 17]]
    for name in CONFIGS:
        assert got[0][name]["state_id"] == got[1][name]["state_id"]
        for g in got:
            _assert_same(g[name], ref[name])
    # θ moved: the erase compared above is not the identity
    theta0 = flat_params(model, prepare_state(model, data, _config("kfac")).layout).double()
    assert float((ref["kfac"]["theta"] - theta0).abs().max()) > 1e-6
    # only rank 0 wrote the state; it loads as the single-process state's ids and sums
    assert not (tmp_path / "state1").exists()
    saved = load_state(tmp_path / "state0", model)
    assert saved.sample_ids.tolist() == list(range(10, 10 + N))
    assert saved.notes.get("structure_choice") is None
    torch.testing.assert_close(saved.scale_sums.sums, ref["ekfac"]["scales"], **TOL)
    # auto chooses for all 9 samples (not the shard's), the same on both processes
    want = choose_structure(model, data, ErasureConfig(**AUTO))
    assert got[0]["auto"] == got[1]["auto"] == want
    assert want["chosen"] == "rows"
    for g in got:
        assert g["overlap"].startswith("DataError: the shards overlap: 1 sample id(s)")
        assert "id 14 on rank(s) [0, 1]" in g["overlap"]
        assert g["grouped"].startswith("ConfigError: group_size=2 is not supported")
