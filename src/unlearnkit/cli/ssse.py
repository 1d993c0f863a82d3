"""``unlearnkit prepare``, ``unlearnkit erase`` and ``unlearnkit reproduce``: the SSSE engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from unlearnkit.cli.app import app, console, friendly_errors
from unlearnkit.cli.options import parse_ids


@app.command("prepare")
@friendly_errors
def prepare_cmd(
    model: Path = typer.Option(..., help="model artifact from `unlearnkit train`"),
    out: Path = typer.Option(..., help="folder for the erasure state"),
    curvature: str = typer.Option("empirical", help="empirical | true | ggn"),
    damping: float = typer.Option(1e-3, help="λ in F = λI + (1/N)ΣrrT"),
    normalizer: str | None = typer.Option(
        None, help="samples | rows (default: samples, rows with groups)"
    ),
    blocks: str = typer.Option("per_layer", help="full | per_layer | chunks | per_output_head"),
    block_size: int | None = typer.Option(None, help="chunk size for --blocks chunks"),
    group_size: int = typer.Option(1, help="rows are means over groups of g samples"),
    solver: str = typer.Option("auto", help="auto | dense | woodbury | sherman_morrison"),
    mode: str = typer.Option("exact", help="exact (Fisher of the remaining data) | paper"),
    l2: float = typer.Option(
        0.0, help="ℓ2 coefficient of the training objective (regularised step)"
    ),
    memory_budget: float | None = typer.Option(None, help="memory budget in GiB"),
) -> None:
    """Compute and invert the block-diagonal curvature of the model's training data (once)."""
    from unlearnkit.artifacts import load_model
    from unlearnkit.data.plan import data_from_manifest
    from unlearnkit.ssse import ErasureConfig, ErasureState

    net, manifest = load_model(model)
    _, mat = data_from_manifest(manifest)
    cfg = ErasureConfig(
        task=mat.fit_on.task,
        curvature=curvature,
        damping=damping,
        normalizer=normalizer,
        blocks=blocks,
        block_options={"size": block_size} if block_size else {},
        group_size=group_size,
        solver=solver,
        mode=mode,
        l2=l2,
        regularized_step=l2 > 0,
        memory_budget_bytes=int(memory_budget * 2**30) if memory_budget else None,
    )
    with console.status(f"preparing: {curvature} rows of {len(mat.fit_on)} samples, then F⁻¹"):
        state = ErasureState.prepare(net, mat.fit_on, cfg)
    state.save(out)
    console.print(state.describe())
    console.print(f"saved erasure state to {out} in {state.prepare_seconds:.2f} s")


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
    forget_seed: int = typer.Option(0),
    eps: float = typer.Option(1.0, help="step scale ε (SSSE eq. 4)"),
    state_out: Path | None = typer.Option(
        None, help="where to write the new state (default: replace --state)"
    ),
) -> None:
    """Erase samples with one SSSE step; writes the new model and the updated state.

    The model is written first, then the state (atomically). If anything fails, the state on
    disk still applies to the input model, so the same command can simply be run again.
    """
    from unlearnkit.artifacts import load_model, save_model
    from unlearnkit.data.forget import make_forget_spec, select_forget
    from unlearnkit.data.plan import data_from_manifest
    from unlearnkit.errors import ConfigError
    from unlearnkit.ssse import ErasureState
    from unlearnkit.training import evaluate_accuracy

    if (ids is None) == (forget is None):
        raise ConfigError("give exactly one of --ids and --forget")
    net, manifest = load_model(model)
    st = ErasureState.load(state, net)
    _, mat = data_from_manifest(manifest)
    if ids is not None:
        wanted = parse_ids(ids)
        if not wanted:
            raise ConfigError("no ids given")
        sel = mat.fit_on.subset(wanted)
    else:
        fs = select_forget(mat.fit_on, make_forget_spec(forget), seed=forget_seed)
        sel = fs.forget(mat.fit_on)
    new_model, new_state = st.erase(net, sel, eps=eps)
    entry = new_state.ledger[-1]
    path = save_model(
        out,
        new_model,
        {
            "data": manifest.get("data"),
            "role": "ssse",
            "parent": str(model),
            "ssse": {
                "eps": eps,
                "k": entry["k"],
                "request": entry["request"],
                "state": str(state_out or state),
            },
        },
    )
    new_state.save(state_out or state)
    console.print(
        f"erased {entry['k']} sample(s) in {entry['seconds']:.3f} s (‖step‖ = {entry['step_norm']:.3g}); "
        f"{new_state.n_remaining} remain. Model: {path}"
    )
    console.print(
        f"accuracy on the erased samples: {evaluate_accuracy(new_model, sel):.4f} "
        f"(before: {evaluate_accuracy(net, sel):.4f})"
    )


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
    seed: int = typer.Option(0),
) -> None:
    """The paper's §3: linear multi-attribute classifier, γ_S and distance over ε (Figure 1)."""
    from unlearnkit.reproduce.convex import run_convex

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
    seed: int = typer.Option(0),
) -> None:
    """The paper's §4 at CPU scale: class and half-class removal, |ΔAcc| vs retrain (Figure 2)."""
    from unlearnkit.reproduce.deep import run_deep

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
        console.print(f"[bold]{name}[/]")
        console.print(json.dumps(d["summary"], indent=1)[:4000])
    console.print(f"wrote {out}/results.json and Figure 2 PNGs")


def _print_summary(summary: dict[str, Any], keys: tuple[str, ...]) -> None:
    from rich.table import Table

    table = Table()
    table.add_column("variant")
    table.add_column("fraction")
    for k in keys:
        table.add_column(k)
    for v, per in summary.items():
        for f, s in per.items():
            table.add_row(v, f, *[f"{s[k]:.4g}" for k in keys])
    console.print(table)
