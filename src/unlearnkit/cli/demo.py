"""``unlearnkit demo``: the main job end to end through the facade (what ``make demo`` runs)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markdown import Markdown

from unlearnkit.cli.app import Overwrite, app, console, friendly_errors
from unlearnkit.cli.options import SEED_MAX, check_forget_spec
from unlearnkit.demo import render_table, run_demo


@app.command("demo")
@friendly_errors
def demo_cmd(
    out: Path = typer.Option(Path("demo-out"), help="output folder"),
    dataset: str = typer.Option("mnist5k"),
    model: str = typer.Option("cnn"),
    forget: str = typer.Option("random:0.1", help="forget spec"),
    epochs: int = typer.Option(8),
    seed: int = typer.Option(0, min=0, max=SEED_MAX),
    overwrite: Overwrite = False,
) -> None:
    """Train, prepare SSSE, erase a forget set (eps auto), retrain for reference; report."""
    res = run_demo(
        out,
        dataset=dataset,
        model=model,
        forget=check_forget_spec(forget),
        epochs=epochs,
        seed=seed,
        log=console.print,
        overwrite=overwrite,
    )
    console.print(Markdown(render_table(res)))
    console.print(
        f"ε = {res['eps']:g} ({res['eps_rule']}, no retrain needed). "
        f"Prepare {res['prepare_seconds']:.1f} s once; erase {res['erase_seconds']:.2f} s; "
        f"retrain {res['rows']['Retrain']['seconds']:.1f} s."
    )
    console.print(f"report: {out / 'report.md'}")
