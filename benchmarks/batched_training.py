"""Training K small models at once (``train_many``) against training them one by one.

The oracle, original and shadow pools of the benchmark need dozens of trainings of one small
model. This script trains K copies of an MLP on MNIST-1D, each on its own random half of the
training data with its own seed (a shadow pool), twice in one run: one by one with
:func:`unlearnkit.training.train`, and all at once with
:func:`unlearnkit.training.batched.train_many`; it reports the wall times, their ratio and the
largest weight difference between the two (the same models up to reduction order).

    python benchmarks/batched_training.py --out benchmarks/results/batched_training.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from unlearnkit.data import load_dataset
from unlearnkit.models import build_model
from unlearnkit.training import SGDRecipe, train
from unlearnkit.training.batched import train_many


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, nargs="+", default=[8, 32, 64])
    ap.add_argument("--n", type=int, default=4000, help="MNIST-1D samples")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/batched_training.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("mnist1d", size=args.n)
    recipe = SGDRecipe(epochs=args.epochs, batch_size=128, lr=0.05)

    def factory(seed: int) -> torch.nn.Module:
        return build_model("mlp", data.input_shape, data.num_outputs, seed=seed, width=args.width)

    # warm-up of both paths (first-call overheads of torch and torch.func are not the method's)
    warm = [data.ids[: len(data) // 2]]
    train(factory(0), data.subset(warm[0]), recipe, 0)
    train_many(factory, data, warm, [0], recipe)
    rows = []
    for k in args.models:
        gen = torch.Generator().manual_seed(k)
        subsets = [
            data.ids[torch.randperm(len(data), generator=gen)[: len(data) // 2]] for _ in range(k)
        ]
        seeds = list(range(1000, 1000 + k))
        t0 = time.perf_counter()
        alone = [
            train(factory(s), data.subset(i), recipe, s).model
            for s, i in zip(seeds, subsets, strict=True)
        ]
        sequential = time.perf_counter() - t0
        t0 = time.perf_counter()
        batched = train_many(factory, data, subsets, seeds, recipe).models
        together = time.perf_counter() - t0
        diff = max(
            float((p - q).detach().abs().max())
            for a, b in zip(alone, batched, strict=True)
            for p, q in zip(a.parameters(), b.parameters(), strict=True)
        )
        rows.append(
            {
                "models": k,
                "sequential_s": sequential,
                "batched_s": together,
                "speedup": sequential / together,
                "max_weight_diff": diff,
            }
        )
        print(rows[-1], flush=True)
    out = {
        "setting": {
            "dataset": "mnist1d",
            "n": args.n,
            "model": f"mlp width {args.width}",
            "recipe": recipe.model_dump(),
            "threads": args.threads,
        },
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
