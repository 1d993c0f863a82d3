"""The paper's statistics (rank within each setting, then aggregate) and the do-nothing flag.

**Ranks** (:func:`setting_ranks`): in each setting (dataset x model), the methods that ran
(reference rows excluded) are ordered by their mean over seeds of RetDev (lower is better),
ties broken by mean Indisc (higher is better); rank 1 is the best and exact ties share the
mean of their ranks (:func:`unlearnkit.bench.stats.average_ranks`). A method that did not
run in a setting has no rank there. Aggregates (:func:`rank_summary`): the mean rank over
the settings of each architecture, and over all settings, each over the settings the method
ran in (``covered`` says how many).

**Flag** (:func:`original_flags`): per setting and method, :func:`unlearnkit.bench.pruning.
indistinguishable` of the method's seeds against the Original's and the Retrain's.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from unlearnkit.bench.config import REFERENCE_ROWS
from unlearnkit.bench.pruning import MOVEMENT_TOL, OBJECTIVE_TOL, Flag, indistinguishable
from unlearnkit.bench.results import Results
from unlearnkit.bench.stats import average_ranks
from unlearnkit.bench.tables import Table


def _methods(res: Results) -> list[str]:
    return [r for r in res.rows() if r not in REFERENCE_ROWS]


def setting_ranks(res: Results) -> dict[str, dict[str, float]]:
    """``{setting: {method: rank}}`` (module docstring); NaN where a method has no result."""
    out = {}
    for setting in res.settings():
        keys = {}
        for row in _methods(res):
            ret = res.estimate(setting, row, "RetDev").mean
            ind = res.estimate(setting, row, "Indisc").mean
            keys[row] = (ret, -ind if math.isfinite(ind) else math.inf)
        out[setting] = average_ranks(keys)
    return out


def _mean(xs: list[float]) -> tuple[float, int]:
    arr = np.asarray(xs, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return (float(arr.mean()) if arr.size else math.nan), int(arr.size)


def rank_summary(res: Results) -> list[dict[str, Any]]:
    """Per method: ``ranks`` per setting, ``by_model`` mean rank per architecture, ``mean``
    rank over all settings, ``covered`` settings; sorted by mean rank (NaN last)."""
    ranks = setting_ranks(res)
    models = list(dict.fromkeys(r.model for r in res.records))
    by_setting_model = {r.setting: r.model for r in res.records}
    out = []
    for row in _methods(res):
        per = {s: ranks[s].get(row, math.nan) for s in ranks}
        by_model = {
            m: _mean([v for s, v in per.items() if by_setting_model[s] == m])[0] for m in models
        }
        mean, covered = _mean(list(per.values()))
        out.append(
            {"row": row, "ranks": per, "by_model": by_model, "mean": mean, "covered": covered}
        )
    out.sort(key=lambda o: (o["mean"] if math.isfinite(o["mean"]) else math.inf, o["row"]))
    return out


def _r(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.2f}".rstrip("0").rstrip(".")


def rank_table(res: Results, flags: dict[tuple[str, str], Flag] | None = None) -> Table:
    """The per-setting and per-architecture rank table (mean rank over settings last)."""
    settings = res.settings()
    summary = rank_summary(res)
    models = list(summary[0]["by_model"]) if summary else []
    flagged = {m for (_, m), f in (flags or {}).items() if f.flagged}
    rows = [
        [o["row"] + (" (≈ Original)" if o["row"] in flagged else "")]
        + [
            _r(o["ranks"][s]) if res.select(s, o["row"]) else res.status(s, o["row"])
            for s in settings
        ]
        + [_r(o["by_model"][m]) for m in models]
        + [_r(o["mean"]), f"{o['covered']}/{len(settings)}"]
        for o in summary
    ]
    return Table(
        "Ranks within each setting, mean rank per architecture and overall",
        ["method"] + settings + [f"mean rank, {m}" for m in models] + ["mean rank", "settings"],
        rows,
        "In each setting methods are ranked by mean RetDev over seeds (lower is better), ties "
        "by mean Indisc (higher is better); 1 = best, ties share the mean rank. Means are over "
        "the settings a method ran in. (≈ Original): flagged in some setting (next table).",
    )


def original_flags(res: Results) -> dict[tuple[str, str], Flag]:
    """``{(setting, method): Flag}`` for every method with results in the setting."""
    out = {}
    for setting in res.settings():
        seeds = {
            row: {r.seed: r.values for r in res.select(setting, row)}
            for row in ("original", "retrain")
        }
        for row in _methods(res):
            recs = {r.seed: r.values for r in res.select(setting, row)}
            if recs:
                out[(setting, row)] = indistinguishable(recs, seeds["original"], seeds["retrain"])
    return out


def flag_table(flags: dict[tuple[str, str], Flag]) -> Table:
    """The flagged (setting, method) pairs with their evidence."""
    rows = [
        [
            s,
            m,
            f"{f.max_objective_gap:.4f}",
            "n/a" if not math.isfinite(f.movement) else f"{f.movement:.4f}",
            f.basis,
        ]
        for (s, m), f in flags.items()
        if f.flagged
    ]
    return Table(
        "Chosen configurations indistinguishable from the Original",
        ["setting", "method", "max |Δo|", "movement", "basis"],
        rows or [["(none)", "", "", "", ""]],
        f"Flagged when each of the four search objectives (⅓|ΔRA|, ⅓|ΔFA|, ⅓|ΔVA| against "
        f"Retrain, 1 − val Indisc), averaged over seeds, is within {OBJECTIVE_TOL} of the "
        f"Original's, and the mean movement ρ = ‖θ−θ_O‖/‖θ_O−θ_R‖ is at most {MOVEMENT_TOL} "
        "(|D − 1| with D = dist_to_retrain where ρ is not measured): the method, as "
        "configured, did nothing.",
    )
