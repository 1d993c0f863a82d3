"""Retrain-free ε rules on a request that names poisoned (mislabelled) samples.

The demo's scenario (:func:`unlearnkit.demo.scenario`): a seeded 40 % of the training 7s are
relabelled as 1, and the erasure request names exactly those ids. In one run: the Original
(trained on the poisoned data), SSSE with ``eps="auto"`` under each retrain-free rule
(``retained_loss``, ``loss_matching``), and the Retrain (trained without the poisoned ids), with
the class-7 and overall test accuracy of each and the share of the Original→Retrain class-7 gap
that each rule closes.

    python benchmarks/eps_rules_poisoned.py --dataset digits --model mlp --out benchmarks/results/eps_rules_poisoned_digits.json
    python benchmarks/eps_rules_poisoned.py --dataset mnist5k --model cnn --out benchmarks/results/eps_rules_poisoned_mnist5k.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import unlearnkit as uk
from unlearnkit.demo import scenario
from unlearnkit.ssse.eps import guard_sample
from unlearnkit.ssse.request import AUTO_RULES
from unlearnkit.training import evaluate_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/eps_rules_poisoned.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    split, poisoned, _ = scenario(args.dataset, args.seed, None, None)
    test = split.test
    sevens = test.subset(test.ids[test.y == 7])

    def row(model: torch.nn.Module, seconds: float, **extra: object) -> dict[str, object]:
        acc7, acc = evaluate_accuracy(model, sevens), evaluate_accuracy(model, test)
        return {"class7": acc7, "test": acc, "seconds": seconds, **extra}

    t = time.perf_counter()
    orig = uk.train(args.model, split, "sgd", seed=args.seed).model
    rows = {"original": row(orig, time.perf_counter() - t)}
    t = time.perf_counter()
    retrain = uk.train(args.model, split, "sgd", seed=args.seed, on="retain").model
    rows["retrain"] = row(retrain, time.perf_counter() - t)
    t = time.perf_counter()
    prepared = uk.prepare(orig, split)
    prepare_s = time.perf_counter() - t
    state = prepared.state
    forget = prepared.data.subset(poisoned, name="erased")
    left = state.sample_ids[~state.erased]
    retain = guard_sample(prepared.data.subset(left[~torch.isin(left, poisoned)]))
    for rule in AUTO_RULES:
        t = time.perf_counter()
        model, after = state.request(orig, forget).commit(
            "auto", holdout=prepared.holdout, retain_sample=retain, auto_rule=rule
        )
        rows[rule] = row(model, time.perf_counter() - t, eps=after.ledger[-1]["eps"])
    gap = rows["retrain"]["class7"] - rows["original"]["class7"]  # type: ignore[operator]
    for rule in AUTO_RULES:
        closed = rows[rule]["class7"] - rows["original"]["class7"]  # type: ignore[operator]
        rows[rule]["gap_closed"] = closed / gap if gap else float("nan")
    result = {
        "dataset": args.dataset,
        "model": args.model,
        "seed": args.seed,
        "poisoned": int(poisoned.numel()),
        "prepare_seconds": prepare_s,
        "rows": rows,
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": 1},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    for name, r in rows.items():
        print(f"{name:14s} " + "  ".join(f"{k}={v:.4g}" for k, v in r.items()))


if __name__ == "__main__":
    main()
