"""SSSE at the paper's §4 scale: ResNet-20 on 50 000 CIFAR-10-shaped images, one GPU.

The SSSE paper (Peste et al. 2021, §4) prepares the grouped empirical Fisher of ResNet-20 on
CIFAR-10 (groups of 10 gradients → 5 000 rows, blocks of at most 70 000 parameters) and
erases with one step. Real CIFAR-10 cannot be downloaded here, so this benchmark uses
synthetic data of exactly CIFAR-10's shape and size (50 000 train + 10 000 test images,
3×32×32, 10 classes): a faint smooth per-class template under unit pixel noise. The
timings depend on the shapes, not on the pixels; the accuracies are those of this synthetic
task, reported only to show the erased model behaves (the same code reads real CIFAR-10 with
``load_dataset("cifar10", root=...)``).

Measured in one run, each stage timed after a device synchronisation:

* **train**: the Original (SGD + momentum, cosine, no augmentation) and the Retrain on the
  retained data from the same initial weights, recipe and seed;
* **prepare**: per-sample gradients (torch.func), group means of 10, per-block inverses;
* **request**: one deletion request of k random training samples (their gradients and
  F⁻¹v), warm (second call), then ε over a grid: accuracy gaps to the Retrain;
* peak GPU memory of each stage.

    python benchmarks/cifar_scale.py --device cuda --out benchmarks/results/cifar_scale_gpu.json
    python benchmarks/cifar_scale.py --device cpu --n-train 600 --n-test 200 --epochs 1 --k 20
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unlearnkit.data.base import ArrayDataset
from unlearnkit.models import build_model
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.training import SGDRecipe, evaluate_accuracy, train

EPS_GRID = [float(e) for e in np.round(np.logspace(-3, 1, 21), 6)]


def synthetic_cifar(
    n: int, seed: int, templates: torch.Tensor, id_offset: int, signal: float
) -> ArrayDataset:
    """n images of CIFAR-10's shape: signal·template[class] + N(0, 1) noise, balanced classes.

    At signal 0.05 a logistic regression on 4×4-pooled pixels reaches 55% test accuracy
    (0.08: 85%), so the task is learnable but not trivially separable.
    """
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 10
    y = y[torch.randperm(n, generator=g)]
    x = signal * templates[y] + torch.randn(n, 3, 32, 32, generator=g)
    return ArrayDataset(
        name="synthetic-cifar10",
        x=x.float(),
        y=y.long(),
        ids=torch.arange(id_offset, id_offset + n, dtype=torch.int64),
        task="multiclass",
        classes=tuple(str(c) for c in range(10)),
    )


def make_templates(seed: int) -> torch.Tensor:
    """Ten smooth 3×32×32 class templates (8×8 Gaussian noise upsampled bilinearly)."""
    g = torch.Generator().manual_seed(seed)
    low = torch.randn(10, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(low, size=(32, 32), mode="bilinear", align_corners=False)


class Stages:
    """Runs named stages, records seconds / peak memory / errors, and writes JSON after each."""

    def __init__(self, out: Path, device: torch.device, result: dict[str, Any]) -> None:
        self.out, self.device, self.result = out, device, result
        result.setdefault("stages", {})

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        rec: dict[str, Any] = {}
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.sync()
        t = time.perf_counter()
        try:
            value = fn()
            self.sync()
            rec["seconds"] = time.perf_counter() - t
            rec["ok"] = True
        except Exception as e:  # noqa: BLE001 - recorded, the next stages may still run
            value = None
            rec.update(
                ok=False,
                seconds=time.perf_counter() - t,
                error=repr(e),
                traceback=traceback.format_exc()[-3000:],
            )
        if self.device.type == "cuda":
            rec["peak_gpu_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
        self.result["stages"][name] = rec
        self.write()
        print(
            f"[{name}] {'ok' if rec['ok'] else 'FAILED'} {rec['seconds']:.2f} s"
            + ("" if rec["ok"] else f"  {rec['error']}"),
            flush=True,
        )
        return value

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.result, indent=2))


def _solver_counts(state: ErasureState) -> dict[str, int]:
    """How many blocks each solver got."""
    counts: dict[str, int] = {}
    for e in state.inverse.entries:
        counts[e.inverse.method] = counts.get(e.inverse.method, 0) + 1
    return counts


def accuracies(model: torch.nn.Module, data: dict[str, ArrayDataset]) -> dict[str, float]:
    return {k: evaluate_accuracy(model, d) for k, d in data.items()}


def erase_sweep(
    st: Stages,
    tag: str,
    state: ErasureState,
    orig: torch.nn.Module,
    forget: ArrayDataset,
    data: dict[str, ArrayDataset],
    ref: dict[str, float],
) -> None:
    """Time one request (cold, then warm) and sweep ε; store gaps to the Retrain."""
    st.run(f"{tag}/request_cold", lambda: state.request(orig, forget))
    req = st.run(f"{tag}/request_warm", lambda: state.request(orig, forget))
    if req is None:
        return

    def sweep() -> dict[str, Any]:
        accs = [accuracies(req.apply(e), data) for e in EPS_GRID]
        gaps = [sum(abs(a[k] - ref[k]) for k in ref) for a in accs]
        i = int(np.argmin(gaps))
        return {
            "eps": EPS_GRID,
            "accuracy": accs,
            "best_eps": EPS_GRID[i],
            "accuracy_at_best": accs[i],
            "gap_points_at_best": {k: 100 * abs(accs[i][k] - ref[k]) for k in ref},
        }

    st.result[f"{tag}_sweep"] = st.run(f"{tag}/eps_sweep", sweep)
    st.write()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/cifar_scale_gpu.json"))
    ap.add_argument("--n-train", type=int, default=50_000)
    ap.add_argument("--n-test", type=int, default=10_000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--k", type=int, default=500, help="samples per deletion request")
    ap.add_argument("--group-size", type=int, default=10)
    ap.add_argument("--block-size", type=int, default=70_000)
    ap.add_argument("--damping", type=float, default=1e-3)
    ap.add_argument("--modes", default="paper,exact")
    ap.add_argument(
        "--signal",
        type=float,
        default=0.05,
        help="template amplitude of the synthetic images (noise std 1)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    dev = torch.device(args.device)
    torch.manual_seed(args.seed)
    result: dict[str, Any] = {
        "benchmark": "cifar_scale",
        "torch": torch.__version__,
        "device": str(dev),
        "device_name": (
            torch.cuda.get_device_name(dev)
            if dev.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    st = Stages(args.out, dev, result)
    templates = make_templates(args.seed)
    train_set = synthetic_cifar(args.n_train, args.seed + 1, templates, 0, args.signal)
    test_set = synthetic_cifar(args.n_test, args.seed + 2, templates, args.n_train, args.signal)
    gen = torch.Generator().manual_seed(args.seed + 3)
    forget_ids = train_set.ids[torch.randperm(args.n_train, generator=gen)[: args.k]]
    keep = ~torch.isin(train_set.ids, forget_ids)
    forget, retain = train_set.subset(forget_ids), train_set.subset(train_set.ids[keep])
    eval_retain = retain.subset(retain.ids[:5000])  # a fixed 5 000-sample subset (speed)
    data = {"retain": eval_retain, "forget": forget, "test": test_set}
    recipe = SGDRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, augment=())
    init = build_model("resnet20", (3, 32, 32), 10, seed=args.seed).to(dev)
    result["parameters"] = sum(p.numel() for p in init.parameters())
    result["recipe"] = recipe.model_dump()

    orig = st.run("train_original", lambda: train(init, train_set, recipe, seed=args.seed).model)
    retr = st.run("retrain", lambda: train(init, retain, recipe, seed=args.seed).model)
    if orig is None or retr is None:
        return result
    orig.eval()
    retr.eval()
    result["accuracy"] = {"original": accuracies(orig, data), "retrain": accuracies(retr, data)}
    ref = result["accuracy"]["retrain"]
    st.write()
    for mode in args.modes.split(","):
        cfg = ErasureConfig(
            task="multiclass",
            damping=args.damping,
            group_size=args.group_size,
            blocks="chunks",
            block_options={"size": args.block_size},
            mode=mode,
            seed=args.seed,
        )
        state = st.run(f"{mode}/prepare", lambda c=cfg: ErasureState.prepare(orig, train_set, c))
        if state is None:
            continue
        result[f"{mode}_state"] = {
            "describe": state.describe().splitlines()[:2],
            "solvers": _solver_counts(state),
            "memory_bytes": state.inverse.memory_bytes(),
        }
        erase_sweep(st, mode, state, orig, forget, data, ref)
        del state
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    s = result["stages"]
    if s.get("retrain", {}).get("ok") and s.get("paper/request_warm", {}).get("ok"):
        result["retrain_over_request"] = {
            m: s["retrain"]["seconds"] / s[f"{m}/request_warm"]["seconds"]
            for m in args.modes.split(",")
            if s.get(f"{m}/request_warm", {}).get("ok")
        }
    st.write()
    print(json.dumps({k: v for k, v in result.items() if k not in ("stages",)}, indent=1)[:4000])
    return result


if __name__ == "__main__":
    main()
