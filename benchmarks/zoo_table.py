"""Benchmark: all 21 zoo rows with their default hyper-parameters on MNIST-5k + the small CNN.

Setup (Deep Unlearn's protocol, spec/methods.md §1, scaled down to a CPU):

- data: ``mnist5k`` (5,000 real MNIST digits); ``train_val_test_split`` with test 20 %,
  val 15 %, seed 123; forget = ``random:0.1`` of the train split (seed 123); retain = the rest;
- model: ``cnn`` (two 3x3 conv stages, 32 and 64 channels), initial weights seed 0;
- Original: SGD + cosine, momentum 0.9, wd 5e-4, a short recipe (default 12 epochs, batch 128,
  lr 0.05; Deep Unlearn's MNIST recipe is 50 epochs, batch 256, lr 0.1), seed 123;
- Retrain: the same recipe from the same initial weights on retain only (the ``retrain`` row);
- every other method: its registered defaults (``Config()``), seed 123.

Per row: RA / FA / VA / TA (accuracy on retain / forget / val / test), Test-MIA (loss-LR
population MIA of forget vs test, Deep Unlearn §3.3) and Indisc = 1 − |2·MIA − 1|, the gaps
|ΔRA|, |ΔFA|, |ΔTA| to Retrain, wall-clock seconds of the ``unlearn`` call and RTE =
T_retrain / T_method (higher is faster). A method that raises gets a row with its error.

    python benchmarks/zoo_table.py                       # everything (tens of minutes on CPU)
    python benchmarks/zoo_table.py --only ft,msg,ct      # a subset (Retrain always runs)

Writes ``<out>/zoo_table.json`` (after every row, so a long run can be watched) and
``<out>/zoo_table.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from pathlib import Path
from typing import Any

import torch

import unlearnkit.methods  # noqa: F401
from unlearnkit.data import load_dataset, select_forget, train_val_test_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.io import ids_hash, model_fingerprint
from unlearnkit.methods import METHODS, UnlearnData
from unlearnkit.methods.describe import method_table
from unlearnkit.metrics import gap, indiscernibility, population_mia, rte
from unlearnkit.models import build_model
from unlearnkit.tasks import per_sample_loss
from unlearnkit.training import SGDRecipe, evaluate_accuracy, predict_logits, train

SEED = 123

VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "ssse_eps1": ("ssse", {"eps": 1.0}, "SSSE (fixed ε = 1)"),
}
"""Extra rows, not defaults: ``name -> (method key, config, label)``. SSSE's default picks ε
with the retrain-free, utility-guarded loss-matching rule (:mod:`unlearnkit.ssse.eps`) on val;
the variant shows the unscaled step (ε = 1) for comparison."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--model", default="cnn")
    p.add_argument("--forget", default="random:0.1")
    p.add_argument("--epochs", type=int, default=12, help="Original/Retrain epochs")
    p.add_argument("--batch-size", type=int, default=128, help="Original/Retrain batch size")
    p.add_argument("--lr", type=float, default=0.05, help="Original/Retrain learning rate")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="", help="comma-separated method keys (default: all)")
    p.add_argument("--out", type=Path, default=Path("docs/results/zoo"))
    p.add_argument(
        "--resume", action="store_true", help="keep finished rows of <out>/zoo_table.json"
    )
    p.add_argument("--no-variants", action="store_true", help="skip the extra rows (VARIANTS)")
    p.add_argument(
        "--rerun", default="", help="with --resume: comma-separated row keys to compute again"
    )
    return p.parse_args()


def losses(model: torch.nn.Module, ds: Any) -> torch.Tensor:
    """Per-sample losses of ``model`` on ``ds`` (eval mode)."""
    return per_sample_loss(ds.task, predict_logits(model, ds), ds.y).detach()


def evaluate(model: torch.nn.Module, parts: dict[str, Any]) -> dict[str, float]:
    """RA, FA, VA, TA, Test-MIA (forget vs test) and Indisc."""
    out = {
        key: evaluate_accuracy(model, parts[split])
        for key, split in (("RA", "retain"), ("FA", "forget"), ("VA", "val"), ("TA", "test"))
    }
    mia = population_mia(
        losses(model, parts["forget"]).numpy(), losses(model, parts["test"]).numpy()
    )
    out["MIA"] = mia
    out["Indisc"] = indiscernibility(mia)
    return out


def run_row(
    key: str,
    method_key: str,
    original: torch.nn.Module,
    data: UnlearnData,
    parts: dict[str, Any],
    config: dict[str, Any],
) -> dict[str, Any]:
    """Unlearn with method ``key`` and evaluate; errors become a row with ``error`` set."""
    method = METHODS.get(method_key)()
    row: dict[str, Any] = {"key": key, "method": method_key, "abbreviation": method.abbreviation}
    try:
        result = method.unlearn(original, data, config, seed=SEED)
    except UnlearnkitError as e:
        return {**row, "error": f"{type(e).__name__}: {e}"}
    except Exception as e:  # noqa: BLE001 - recorded honestly, the table goes on
        return {**row, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    row.update(evaluate(result.model, parts))
    row["seconds"] = result.seconds
    row["config"] = result.info.get("config", {})
    row["info"] = json.loads(
        json.dumps({k: v for k, v in result.info.items() if k != "config"}, default=str)
    )
    return row


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict[str, Any]) -> str:
    """The Markdown table of ``report`` (rows in the method-table order)."""
    s = report["setup"]
    lines = [
        "# Zoo table: every method with its defaults",
        "",
        f"{s['dataset']} ({s['sizes']['train']} train = {s['sizes']['retain']} retain + "
        f"{s['sizes']['forget']} forget, {s['sizes']['val']} val, {s['sizes']['test']} test), "
        f"model `{s['model']}`, forget `{s['forget']}`; Original/Retrain: SGD+cosine "
        f"{s['recipe']['epochs']} epochs, batch {s['recipe']['batch_size']}, lr {s['recipe']['lr']}"
        f" (Original trained in {s['original_train_seconds']:.1f} s). Seed {SEED}; "
        f"{s['threads']} CPU threads on {s['machine']}; torch {s['torch']}.",
        "",
        "RA/FA/VA/TA: accuracy on retain/forget/val/test. MIA: loss-LR population attack, forget"
        " vs test (0.5 = chance). Indisc = 1 − |2·MIA − 1|. Δ: absolute gap to Retrain. RTE ="
        " T_retrain / T_method (higher is faster). Generated by `benchmarks/zoo_table.py`.",
        "",
        *(
            [
                f"Rows {', '.join(s['rerun'])} were re-run on {s['resumed'][:10]} (`--resume --rerun`)"
                " with the same Original (same weights fingerprint). Each row's seconds and RTE come"
                " from its own run, against the Retrain time measured in that run; the machine's load"
                " differed between the runs, so compare"
                " RTE within a run, not across runs.",
                "",
            ]
            if s.get("rerun")
            else []
        ),
        "| method | family | RA | FA | VA | TA | MIA | Indisc | ΔRA | ΔFA | ΔTA | seconds | RTE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        if "error" in r:
            lines.append(
                f"| {r['label']} | {r['family']} | "
                + " | ".join(["-"] * 11)
                + f" |  \n*error: {r['error'].splitlines()[0][:160]}*"
            )
            continue
        cells = [
            r["RA"],
            r["FA"],
            r["VA"],
            r["TA"],
            r["MIA"],
            r["Indisc"],
            r.get("dRA"),
            r.get("dFA"),
            r.get("dTA"),
        ]
        lines.append(
            f"| {r['label']} | {r['family']} | "
            + " | ".join(fmt(c) for c in cells)
            + f" | {fmt(r['seconds'], 2)} | {fmt(r.get('RTE'), 2)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    ds = load_dataset(args.dataset)
    splits = train_val_test_split(ds, val_fraction=0.15, test_fraction=0.2, seed=SEED)
    fs = select_forget(splits.train, args.forget, seed=SEED)
    data = UnlearnData(
        retain=fs.retain(splits.train), forget=fs.forget(splits.train), val=splits.val
    )
    parts = {"retain": data.retain, "forget": data.forget, "val": splits.val, "test": splits.test}

    recipe = SGDRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device="cpu")
    init = build_model(args.model, ds.input_shape, ds.num_outputs, seed=0)
    print(f"training Original: {recipe.model_dump()}", flush=True)
    trained = train(init, splits.train, recipe, seed=SEED)
    original = trained.model.eval()

    families = {r.key: r.family for r in method_table()}
    order: list[str] = []
    for r in method_table():
        order += [r.key] + [v for v, (base, _, _) in VARIANTS.items() if base == r.key]
    wanted = {k.strip() for k in args.only.split(",") if k.strip()} or set(order)
    if args.no_variants:
        wanted -= set(VARIANTS)
    wanted.add("retrain")  # the reference of every gap and RTE
    keys = ["retrain"] + [k for k in order if k in wanted and k != "retrain"]
    retrain_cfg = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "train_seed": SEED,
    }
    jobs = {"retrain": ("retrain", retrain_cfg, "R"), **VARIANTS}

    setup = {
        "dataset": args.dataset,
        "model": args.model,
        "forget": args.forget,
        "split": {"val_fraction": 0.15, "test_fraction": 0.2, "seed": SEED},
        "sizes": {k: len(v) for k, v in {"train": splits.train, **parts}.items()},
        "forget_ids_hash": ids_hash(fs.forget_ids),
        "recipe": recipe.model_dump(mode="json"),
        "original_fingerprint": model_fingerprint(original),
        "seed": SEED,
    }
    report: dict[str, Any] = {
        "setup": {
            **setup,
            "original_train_seconds": trained.seconds,
            "threads": args.threads,
            "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
            "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "rows": [],
    }
    path = args.out / "zoo_table.json"
    if args.resume and path.exists():
        old = json.loads(path.read_text())
        if any(old["setup"].get(k) != v for k, v in setup.items()):
            raise SystemExit(f"{path} was made with another setup; run without --resume")
        rerun = {k.strip() for k in args.rerun.split(",") if k.strip()}
        report["rows"] = [
            r
            for r in old["rows"]
            if "error" not in r and r["key"] in wanted and r["key"] not in rerun
        ]
        report["setup"]["started"] = old["setup"]["started"]
        report["setup"]["resumed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        report["setup"]["rerun"] = sorted(rerun)
    done = {r["key"]: r for r in report["rows"]}
    reference: dict[str, Any] | None = done.get("retrain")

    def save() -> None:
        rows = sorted(report["rows"], key=lambda r: order.index(r["key"]))
        path.write_text(json.dumps({**report, "rows": rows}, indent=2, default=str))

    for key in keys:
        if key in done:
            continue
        print(f"{key} ...", end=" ", flush=True)
        method_key, config, label = jobs[key] if key in jobs else (key, {}, None)
        label = label or METHODS.get(method_key).abbreviation
        row = run_row(key, method_key, original, data, parts, config)
        row["label"] = label
        row["family"] = families.get(method_key, "other")
        if key == "retrain" and "error" not in row:
            reference = row
        if reference is not None and "error" not in row:
            for m in ("RA", "FA", "TA"):
                row[f"d{m}"] = gap(row[m], reference[m])
            row["RTE"] = rte(reference["seconds"], row["seconds"]) if key != "original" else None
        report["rows"].append(row)
        save()
        print(
            row.get("error")
            or f"{row['seconds']:.1f}s RA {row['RA']:.3f} FA {row['FA']:.3f} TA {row['TA']:.3f}",
            flush=True,
        )
    report["rows"] = sorted(report["rows"], key=lambda r: order.index(r["key"]))
    report["setup"]["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    save()
    (args.out / "zoo_table.md").write_text(markdown(report))
    print(f"wrote {args.out / 'zoo_table.json'} and {args.out / 'zoo_table.md'}")


if __name__ == "__main__":
    main()
