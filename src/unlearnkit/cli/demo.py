"""``unlearnkit demo``: the main job end to end through the facade (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown

from unlearnkit.cli.app import Overwrite, app, console, friendly_errors
from unlearnkit.cli.options import SEED_MAX, check_forget_spec
from unlearnkit.demo import DEFAULT_POISON, run_demo
from unlearnkit.demo_report import render_table, verdict


@app.command("demo")
@friendly_errors
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), help="output folder"),
    dataset: str = typer.Option("mnist5k"),
    model: str = typer.Option("cnn"),
    forget: str | None = typer.Option(
        None,
        help="forget spec (default: exactly the poisoned ids); given without --poison, the "
        "data are clean (e.g. random:0.1, the older demo)",
    ),
    poison: str | None = typer.Option(
        None,
        help=f"SOURCE:TARGET:FRACTION of the training samples of class SOURCE relabelled as "
        f"TARGET, or 'none' (default {DEFAULT_POISON} unless --forget is given)",
    ),
    epochs: int = typer.Option(8),
    seed: int = typer.Option(0, min=0, max=SEED_MAX),
    overwrite: Overwrite = False,
) -> None:
    """Train on poisoned data, prepare SSSE, erase the poisoned samples (eps auto), retrain
    for reference; print and write the side-by-side report and pictures."""
    res = run_demo(
        out,
        dataset=dataset,
        model=model,
        forget=check_forget_spec(forget) if forget is not None else None,
        poison=poison,
        epochs=epochs,
        seed=seed,
        log=console.print,
        overwrite=overwrite,
    )
    console.print(Markdown(render_table(res)))
    console.print(
        f"ε = {res['eps']:g} ({res['eps_rule']}, no retrain needed); the oracle row uses the "
        f"Retrain to pick ε = {res['oracle_eps']:g} on the grid. Prepare "
        f"{res['prepare_seconds']:.1f} s once; erase {res['erase_seconds']:.2f} s; retrain "
        f"{res['rows']['Retrain']['seconds']:.1f} s."
    )
    console.print(verdict(res))
    console.print(f"report: {out / 'report.md'}  pictures: {out / 'changes.png'}")
