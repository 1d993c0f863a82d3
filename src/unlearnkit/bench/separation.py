"""Is there something to forget? The Original against the Retrain on the forget set.

A setting only tells unlearning methods apart when the Original still differs from the
Retrain on the forget set; otherwise "do nothing" scores well (docs/harness.md, "The memorise
preset"). Per setting, four forget-set measures of both reference rows, each with its
interval:

* forget accuracy ``FA`` and the population ``test_mia``: mean with its 95 % t-interval over
  seeds (:meth:`unlearnkit.bench.results.Results.estimate`, clipped to [0, 1]);
* forget KLoM against the retrain pool (``forget.klom_mean``, t-interval over examples) and
  the pool U-LiRA AUC (``ulira.auc_seed_mean``, t-interval over seeds), from the ``klom``
  stage (:mod:`unlearnkit.bench.oracle_audit`), when the experiment has oracle pools.

The two rows are **separated** on a measure when their intervals are disjoint
(``max(low) > min(high)``), and the setting has something to forget when they are separated on
at least one measure. An interval that is not defined (one seed, a missing run) separates
nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unlearnkit.bench.context import make_context
from unlearnkit.bench.oracles import klom_key
from unlearnkit.bench.render import Section
from unlearnkit.bench.results import Results
from unlearnkit.bench.tables import Table
from unlearnkit.jobs.store import Store

#: (label, source, metric): source "records" = per-seed values, "klom" = the klom stage.
MEASURES: tuple[tuple[str, str, str], ...] = (
    ("forget accuracy", "records", "FA"),
    ("T-MIA", "records", "test_mia"),
    ("forget KLoM", "klom", "forget.klom_mean"),
    ("U-LiRA AUC", "klom", "ulira.auc_seed_mean"),
)
_KLOM_BOUNDS = {
    "forget.klom_mean": ("forget.klom_mean_lo", "forget.klom_mean_hi"),
    "ulira.auc_seed_mean": ("ulira.auc_seed_lo", "ulira.auc_seed_hi"),
}


@dataclass(frozen=True)
class Interval:
    """A mean with its interval [low, high] (NaN where undefined)."""

    mean: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return all(math.isfinite(v) for v in (self.mean, self.low, self.high))

    def fmt(self) -> str:
        if not math.isfinite(self.mean):
            return "n/a"
        if not self.defined:
            return f"{self.mean:.3f}"
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


NONE = Interval(math.nan, math.nan, math.nan)


def separated(a: Interval, b: Interval) -> bool:
    """Disjoint intervals: max(a.low, b.low) > min(a.high, b.high); False if either is
    undefined."""
    return a.defined and b.defined and max(a.low, b.low) > min(a.high, b.high)


def _klom_intervals(res: Results) -> dict[tuple[str, str], dict[str, Interval]]:
    """``{(setting, row): {metric: Interval}}`` for the reference rows' klom runs."""
    out: dict[tuple[str, str], dict[str, Interval]] = {}
    if res.exp.oracles.size == 0 or not (res.root / "results.db").exists():
        return out
    with Store(res.root, create=False) as store:
        ctx = make_context(res.exp, res.root, store)
        for d, m in ctx.settings():
            for row in ("original", "retrain"):
                key = klom_key(ctx, d, m, row)
                if store.status(key) != "done":
                    continue
                vals = store.metrics(key)
                out[(f"{d.tag} / {m.tag}", row)] = {
                    name: Interval(
                        vals.get(name, math.nan),
                        vals.get(lo, math.nan),
                        vals.get(hi, math.nan),
                    )
                    for name, (lo, hi) in _KLOM_BOUNDS.items()
                }
    return out


def separation(res: Results) -> dict[str, dict[str, tuple[Interval, Interval, bool]]]:
    """``{setting: {measure label: (Original, Retrain, separated)}}``."""
    klom = _klom_intervals(res)
    out: dict[str, dict[str, tuple[Interval, Interval, bool]]] = {}
    for s in res.settings():
        row: dict[str, tuple[Interval, Interval, bool]] = {}
        for label, source, name in MEASURES:
            if source == "records":
                o, r = (res.estimate(s, ref, name) for ref in ("original", "retrain"))
                pair = tuple(
                    Interval(e.mean, e.low, e.high)
                    if e.n > 1
                    else Interval(e.mean, *[math.nan] * 2)
                    for e in (o, r)
                )
            else:
                pair = tuple(
                    klom.get((s, ref), {}).get(name, NONE) for ref in ("original", "retrain")
                )
            row[label] = (pair[0], pair[1], separated(pair[0], pair[1]))
        out[s] = row
    return out


def separation_section(res: Results) -> Section:
    """The report section: one row per setting and measure, and a sentence per setting."""
    sep = separation(res)
    rows, verdicts = [], []
    for s, measures in sep.items():
        for label, (o, r, yes) in measures.items():
            if not (math.isfinite(o.mean) or math.isfinite(r.mean)):
                continue
            rows.append([s, label, o.fmt(), r.fmt(), "yes" if yes else "no"])
        hits = [label for label, (_, _, yes) in measures.items() if yes]
        defined = any(o.defined and r.defined for o, r, _ in measures.values())
        if hits:
            verdicts.append(f"{s}: separated on {', '.join(hits)}")
        elif defined:
            verdicts.append(f"{s}: NOT separated on any measure")
        else:
            verdicts.append(f"{s}: no intervals yet (fewer than two seeds of each reference)")
    text = (
        "Does the Original still differ from the Retrain on the forget set? Separated = the "
        "two intervals are disjoint. " + "; ".join(verdicts) + "."
    )
    table = Table(
        "Original against Retrain on the forget set",
        ["setting", "measure", "Original", "Retrain", "separated"],
        rows or [["(no results)", "", "", "", ""]],
        "Accuracy and T-MIA: mean [95 % t-interval over seeds]; forget KLoM: mean [95 % "
        "t-interval over forget examples] against the retrain pool; U-LiRA AUC: mean [95 % "
        "t-interval over seeds] with the pool as the OUT world (unlearnkit.bench.separation).",
    )
    return Section("Something to forget?", text, [table])
