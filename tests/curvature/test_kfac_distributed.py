"""Two gloo processes on loopback, each with half the data: the all-reduced K-FAC / EK-FAC
statistics equal the single-process ones to fp64 rounding."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from unlearnkit.curvature.kfac import (
    KroneckerCurvature,
    accumulate,
    all_reduce_sums,
    eigenbases,
    scale_sums,
    shard_curvature,
)

TOL = dict(rtol=1e-12, atol=1e-13)
N, LAM = 9, 1e-2  # odd n: the shards hold 5 and 4 samples
OPTS = dict(mode="true", seed=6, samples=2)  # sampled labels must not depend on the shard


def _problem() -> tuple[
    nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]
]:
    torch.manual_seed(5)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, stride=2, padding=1),
        nn.Tanh(),
        nn.Flatten(),
        nn.LayerNorm(8),
        nn.Linear(8, 3),
    )
    model = model.double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    v = {
        k: torch.randn(p.shape, generator=g, dtype=torch.float64)
        for k, p in model.named_parameters()
    }
    return model, x, y, torch.arange(50, 50 + N), v


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model, x, y, ids, v = _problem()
        shard = slice(0, 5) if rank == 0 else slice(5, N)
        sums, s, curv = shard_curvature(
            model, x[shard], y[shard], "multiclass", ids=ids[shard], ekfac=True, **OPTS
        )
        assert s is not None
        out = {
            "count": sums.count,
            "layers": {k: (ls.a_sum, ls.g_sum, ls.positions) for k, ls in sums.layers.items()},
            "diag": sums.diag,
            "scale_count": s.count,
            "ekfac_solve": curv.solve(v, LAM),
            "kfac_solve": KroneckerCurvature.build(sums.factors()).solve(v, LAM),
        }
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")
def test_two_processes_equal_one(tmp_path: Path) -> None:
    # the single-process reference first: with "fork" the children inherit its warm state
    model, x, y, ids, v = _problem()
    sums = accumulate(model, x, y, "multiclass", ids=ids, **OPTS)
    bases = eigenbases(sums.factors())
    s = scale_sums(model, x, y, "multiclass", bases, ids=ids, **OPTS)
    ekfac = KroneckerCurvature.build(sums.factors(), s.scales(), bases).solve(v, LAM)
    kfac = KroneckerCurvature.build(sums.factors()).solve(v, LAM)
    # torch.multiprocessing's spawn API; "fork" where the platform has it: the children then
    # inherit the imported modules (importing unlearnkit again takes ~6 s) and warm torch.func
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, start_method=method
    )
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert float(got["count"]) == float(got["scale_count"]) == N
        for k, (a, g, p) in got["layers"].items():
            torch.testing.assert_close(a, sums.layers[k].a_sum, **TOL)
            torch.testing.assert_close(g, sums.layers[k].g_sum, **TOL)
            torch.testing.assert_close(p, sums.layers[k].positions)
        for k, d in got["diag"].items():
            torch.testing.assert_close(d, sums.diag[k], **TOL)
        for k in v:  # basis-independent results of the normalised curvature
            torch.testing.assert_close(got["kfac_solve"][k], kfac[k], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(got["ekfac_solve"][k], ekfac[k], rtol=1e-10, atol=1e-12)


def test_without_process_group_is_identity() -> None:
    model, x, y, ids, _ = _problem()
    sums = accumulate(model, x, y, "multiclass", ids=ids)
    assert all_reduce_sums(sums) is sums
