"""``unlearnkit prepare``, ``unlearnkit erase`` and ``unlearnkit reproduce``: the SSSE engine."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from unlearnkit import api
from unlearnkit.cli.app import Device, Overwrite, app, console, friendly_errors, show
from unlearnkit.cli.options import (
    SEED_MAX,
    check_forget_spec,
    gib_to_bytes,
    parse_eps,
    parse_ids,
    positive_float,
)
from unlearnkit.curvature.solvers import SOLVERS
from unlearnkit.errors import ConfigError
from unlearnkit.reproduce.convex import run_convex
from unlearnkit.reproduce.deep import run_deep
from unlearnkit.ssse import ErasureConfig
from unlearnkit.ssse.lock import state_lock


@app.command("prepare")
@friendly_errors
def prepare_cmd(
    model: Path = typer.Option(..., help="model artifact from `unlearnkit train`"),
    out: Path = typer.Option(..., help="folder for the erasure state"),
    curvature: str | None = typer.Option(None, help="empirical | true | ggn (default: empirical)"),
    damping: float | None = typer.Option(None, help="λ in F = λI + (1/N)ΣrrT (default: 1e-3)"),
    normalizer: str | None = typer.Option(
        None, help="samples | rows (default: samples, rows with groups)"
    ),
    blocks: str | None = typer.Option(
        None, help="full | per_layer | chunks | per_output_head (default: per_layer)"
    ),
    block_size: int | None = typer.Option(None, help="chunk size for --blocks chunks"),
    group_size: int | None = typer.Option(
        None, help="rows are means over groups of g samples (default: 10, empirical Fisher)"
    ),
    solver: str | None = typer.Option(
        None, help="auto (default) | " + " | ".join(n for n in SOLVERS.names() if n != "auto")
    ),
    mode: str | None = typer.Option(
        None, help="exact (Fisher of the remaining data, default) | paper"
    ),
    l2: float | None = typer.Option(
        None, help="ℓ2 coefficient of the training objective (regularised step)"
    ),
    memory_budget: float | None = typer.Option(None, help="memory budget in GiB"),
    structure: str | None = typer.Option(
        None,
        help="rows (exact rows, default) | kfac | ekfac (Kronecker factors) | auto (by memory "
        "and cost; the choice and why are printed)",
    ),
    device: Device = "cpu",
    overwrite: Overwrite = False,
) -> None:
    """Compute and invert the block-diagonal curvature of the model's training data (once),
    or with --structure kfac / ekfac keep its Kronecker factor sums.

    An existing state at --out is never replaced silently (its ledger would be lost): pass
    --overwrite to start over.
    """
    budget = gib_to_bytes(memory_budget)
    positive_float(damping, "--damping")
    if block_size is not None and blocks not in (None, "chunks"):
        raise ConfigError("--block-size applies to --blocks chunks only")
    api.check_output(out, overwrite=True, inputs=[model], artifact=False)
    api.check_state_output(out, overwrite=overwrite)
    api.resolve_device(device)
    saved = api.load(model)
    given = {
        "curvature": curvature,
        "damping": damping,
        "normalizer": normalizer,
        "blocks": blocks,
        "block_options": {"size": block_size} if block_size is not None else None,
        "group_size": group_size,
        "solver": solver,
        "mode": mode,
        "l2": l2,
        "regularized_step": True if l2 else None,
        "memory_budget_bytes": budget,
        "structure": structure,
    }
    # unset options keep ErasureConfig's defaults (the one set of SSSE defaults)
    cfg = ErasureConfig(**{k: v for k, v in given.items() if v is not None})
    n = len(saved.fit_on)
    what = f"{cfg.curvature} rows of {n} samples, then F⁻¹"
    # Kronecker structures show their own progress bar (on stderr, in a terminal): one live
    # display at a time, so the spinner is for the rows only
    busy = console.status(f"preparing: {what}") if cfg.structure == "rows" else nullcontext()
    with busy:
        prepared = api.prepare(saved, config=cfg, device=device)
    prepared.save(out)
    console.print(prepared.state.describe())
    console.print(f"saved erasure state to {out} in {prepared.state.prepare_seconds:.2f} s")


@app.command("erase")
@friendly_errors
def erase_cmd(
    model: Path = typer.Option(..., help="the model the state applies to (artifact)"),
    state: Path = typer.Option(
        ..., help="erasure state folder (from `prepare` or a previous `erase`)"
    ),
    out: Path = typer.Option(..., help="output artifact for the erased model"),
    ids: str | None = typer.Option(None, help="sample ids: 1,2,3 or @file"),
    forget: str | None = typer.Option(
        None, help="or a forget spec over the training data, e.g. class:3"
    ),
    forget_seed: int = typer.Option(0, min=0, max=SEED_MAX),
    eps: str = typer.Option(
        "auto",
        help="step scale ε (SSSE eq. 4): a number, or auto (retrain-free loss matching, "
        "guarded to keep retained accuracy)",
    ),
    utility_budget: float = typer.Option(
        api.DEFAULT_UTILITY_BUDGET,
        help="largest accepted drop of retained / held-out accuracy (0.02 = 2 points)",
    ),
    allow_utility_loss: bool = typer.Option(
        False, "--allow-utility-loss", help="write the model even over the utility budget"
    ),
    state_out: Path | None = typer.Option(
        None, help="where to write the new state (default: update --state in place)"
    ),
    overwrite: Overwrite = False,
) -> None:
    """Erase samples with one SSSE step; writes the new model and the updated state.

    Prints retained and held-out accuracy before and after. The model is written first, then
    the state (atomically). If anything fails, the state on disk still applies to the input
    model, so the same command can simply be run again. The state is locked from load to save:
    a concurrent ``erase`` on it waits, then finds that the state no longer applies to its
    --model and is refused (exit 2) — a request is never lost.
    """
    if (ids is None) == (forget is None):
        raise ConfigError("give exactly one of --ids and --forget")
    eps_value = parse_eps(eps)
    wanted_ids = parse_ids(ids) if ids is not None else None
    if forget is not None:
        check_forget_spec(forget)
    api.check_output(out, overwrite=overwrite, inputs=[model, state])
    if state_out is not None and state_out.resolve() != state.resolve():
        api.check_state_output(state_out, overwrite=overwrite)
    saved = api.load(model)
    with state_lock(state):  # concurrent requests on one state run one after the other
        prepared = api.load_prepared(state, saved)
        wanted = (
            wanted_ids if wanted_ids is not None else prepared.select(forget or "", forget_seed)
        )
        erased = prepared.erase(
            saved,
            wanted,
            eps=eps_value,
            utility_budget=utility_budget,
            allow_utility_loss=allow_utility_loss,
        )
        path = api.save(erased, out, overwrite=overwrite, inputs=[state])
        erased.prepared.save(state_out or state)
    e = erased.entry
    rule = "given" if erased.eps_rule == "fixed" else f"auto: {erased.eps_rule}"
    console.print(
        f"erased {e['k']} sample(s) in {e['seconds']:.3f} s with ε = {erased.eps:g} "
        f"({rule}; ‖step‖ = {e['step_norm']:.3g}); "
        f"{erased.state.n_remaining} remain. Model: {path}"
    )
    labels = {
        "retain": "retained",
        "holdout": "held-out",
        "holdout_other": "held-out (other kinds)",
    }
    for name, acc in erased.accuracy.items():
        what = labels.get(name, name)
        console.print(f"accuracy on the {what} samples: {acc['before']:.4f} -> {acc['after']:.4f}")


reproduce_app = typer.Typer(help="Reproduce the SSSE paper's experiments.", no_args_is_help=True)
app.add_typer(reproduce_app, name="reproduce")


@reproduce_app.command("ssse-convex")
@friendly_errors
def reproduce_convex_cmd(
    out: Path = typer.Option(
        ..., help="output folder: results.json, fig1_gamma.png, fig1_distance.png"
    ),
    l2: float = typer.Option(1e-3, help="ℓ2 coefficient = damping λ"),
    max_attributes: int | None = typer.Option(
        None, help="limit the number of attributes (quick runs)"
    ),
    fraction: list[float] = typer.Option([0.1, 0.25, 0.5, 1.0], help="removal fractions"),
    pool: int = typer.Option(2, help="average-pool the images by this factor (features)"),
    seed: int = typer.Option(0, min=0, max=SEED_MAX),
    overwrite: Overwrite = False,
) -> None:
    """The paper's §3: linear multi-attribute classifier, γ_S and distance over ε (Figure 1)."""
    api.check_output(out / "results.json", overwrite=overwrite, artifact=False)
    res = run_convex(
        out,
        l2=l2,
        fractions=tuple(fraction),
        max_attributes=max_attributes,
        seed=seed,
        pool=pool,
        log=console.print,
    )
    _print_summary(
        res["summary"],
        ("best_eps", "best_gamma_mean", "distance_at_best_eps", "loss_matching_gamma_mean"),
    )
    console.print(f"wrote {out}/results.json and Figure 1 PNGs in {res['total_seconds']:.0f} s")


@reproduce_app.command("ssse-deep")
@friendly_errors
def reproduce_deep_cmd(
    out: Path = typer.Option(..., help="output folder: results.json, fig2_<dataset>.png"),
    dataset: list[str] = typer.Option(["mnist5k", "mnist1d"]),
    model: str = typer.Option("cnn"),
    classes: list[int] = typer.Option([0, 1], "--class", help="classes to remove (repeatable)"),
    epochs: int = typer.Option(15),
    group_size: int = typer.Option(10),
    damping: float = typer.Option(1e-3),
    blocks: str = typer.Option("per_layer"),
    block_size: int | None = typer.Option(None),
    refine: int = typer.Option(
        12, help="ε points refined around each coarse best (0: coarse grid only)"
    ),
    criterion: str = typer.Option(
        "worst_split", help="oracle best ε: worst_split (max |gap|/tolerance) | sum"
    ),
    seed: int = typer.Option(0, min=0, max=SEED_MAX),
    overwrite: Overwrite = False,
) -> None:
    """The paper's §4 at CPU scale: class and half-class removal, |ΔAcc| vs retrain (Figure 2)."""
    api.check_output(out / "results.json", overwrite=overwrite, artifact=False)
    res = run_deep(
        out,
        datasets=tuple(dataset),
        model=model,
        classes=tuple(classes),
        epochs=epochs,
        group_size=group_size,
        damping=damping,
        blocks=blocks,
        block_size=block_size,
        refine=refine,
        criterion=criterion,
        seed=seed,
    )
    for name, d in res["datasets"].items():
        console.print(name, style="bold")
        console.print(json.dumps(d["summary"], indent=1)[:4000])
    console.print(f"wrote {out}/results.json and Figure 2 PNGs")


def _print_summary(summary: dict[str, Any], keys: tuple[str, ...]) -> None:
    table = Table()
    table.add_column("variant")
    table.add_column("fraction")
    for k in keys:
        table.add_column(k)
    for v, per in summary.items():
        for f, s in per.items():
            table.add_row(v, f, *[f"{s[k]:.4g}" for k in keys])
    show(table)
