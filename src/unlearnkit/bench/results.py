"""From the store to numbers: per-seed records, derived metrics, aggregates over seeds.

Per evaluated model (setting = dataset x model, row = original, retrain or a method, seed):
the stored metrics (RA, FA, VA, TA, val_mia, test_mia, ...) plus, against the retrain model of
the same seed (docs/evaluation.md, "Deep Unlearn's own evaluation" §3.2–3.5):

* RR = RA_U / RA_R, FR = FA_U / FA_R, TR = TA_U / TA_R; RetDev = |RR−1| + |FR−1| + |TR−1|;
* Indisc = 1 − |2·TestMIA − 1| (the fork's "T-MIA" indiscernibility), ``val_indisc`` from
  Val MIA;
* ``seconds``: the method's timed region (unlearn), Retrain's training time, none for Original.

Aggregates over seeds are mean ± t-interval clipped to the metric's range
(:mod:`unlearnkit.bench.stats`); RTE of a
setting is ``mean(T_R) / mean(T_U)`` over seeds (:func:`unlearnkit.evaluation.rte`). The
ranking averages each seed's value over the settings a row ran in, then takes mean ± CI over
seeds; rows are sorted by RetDev (ascending), then Indisc (descending).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.bench.config import REFERENCE_ROWS, Experiment
from unlearnkit.bench.context import Context, make_context
from unlearnkit.bench.convergence import load_curves
from unlearnkit.bench.stats import RANGES, Estimate, mean_ci
from unlearnkit.jobs.store import Store
from unlearnkit.metrics import indiscernibility, rte
from unlearnkit.metrics.retention import RETENTION_OF, retention_deviation, retentions


@dataclass
class Record:
    """One evaluated model."""

    dataset: str
    model: str
    row: str
    seed: int
    status: str
    values: dict[str, float] = field(default_factory=dict)
    seconds: float | None = None

    @property
    def setting(self) -> str:
        return f"{self.dataset} / {self.model}"


@dataclass
class Results:
    """Everything the report shows, read from one benchmark directory."""

    root: Path
    exp: Experiment
    records: list[Record]
    selections: dict[tuple[str, str], dict[str, Any]]
    ulira: dict[str, dict[str, Any]]
    counts: dict[tuple[str, str], int]
    failures: list[tuple[str, str, str]]
    environments: list[dict[str, Any]]
    level: float = 0.95
    curves: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def settings(self) -> list[str]:
        return list(dict.fromkeys(r.setting for r in self.records))

    def rows(self) -> list[str]:
        return list(dict.fromkeys(r.row for r in self.records))

    def select(self, setting: str | None = None, row: str | None = None) -> list[Record]:
        return [
            r
            for r in self.records
            if r.status == "done"
            and (setting is None or r.setting == setting)
            and (row is None or r.row == row)
        ]

    def status(self, setting: str, row: str) -> str:
        """``done`` if any seed is, else the most common status of the row's records."""
        st = [r.status for r in self.records if r.setting == setting and r.row == row]
        if "done" in st:
            return "done"
        return max(set(st), key=st.count) if st else "missing"

    def estimate(self, setting: str, row: str, name: str) -> Estimate:
        vals = [r.values.get(name, math.nan) for r in self.select(setting, row)]
        return mean_ci(vals, self.level, RANGES.get(name, (-math.inf, math.inf)))

    def seconds(self, setting: str, row: str) -> Estimate:
        vals = [r.seconds for r in self.select(setting, row) if r.seconds is not None]
        return mean_ci(vals, self.level, RANGES["seconds"])

    def rte(self, setting: str, row: str) -> float:
        """mean(T_R) / mean(T_U) over seeds (NaN when undefined)."""
        t_r = [r.seconds for r in self.select(setting, "retrain") if r.seconds is not None]
        t_u = [r.seconds for r in self.select(setting, row) if r.seconds is not None]
        if not t_r or not t_u or row == "original":
            return math.nan
        try:
            return rte(t_r, t_u)
        except Exception:  # zero method time
            return math.nan

    def ranking(self) -> list[dict[str, Any]]:
        """Per row: RetDev and Indisc (mean ± CI over seeds of the per-seed mean over settings),
        settings covered; sorted by RetDev then Indisc, references last."""
        out = []
        n_settings = len(self.settings())
        for row in self.rows():
            recs = self.select(row=row)
            if not recs:
                continue
            per_seed: dict[int, dict[str, list[float]]] = {}
            for r in recs:
                d = per_seed.setdefault(r.seed, {"RetDev": [], "Indisc": []})
                for k in d:
                    d[k].append(r.values.get(k, math.nan))
            est = {
                k: mean_ci([_nanmean(v[k]) for v in per_seed.values()], self.level, RANGES[k])
                for k in ("RetDev", "Indisc")
            }
            covered = len({r.setting for r in recs})
            out.append({"row": row, **est, "covered": covered, "settings": n_settings})
        methods = [o for o in out if o["row"] not in REFERENCE_ROWS]
        methods.sort(key=lambda o: (_key(o["RetDev"].mean), _key(-o["Indisc"].mean)))
        refs = [o for o in out if o["row"] in REFERENCE_ROWS]
        for i, o in enumerate(methods, start=1):
            o["rank"] = i
        for o in refs:
            o["rank"] = None
        return methods + refs


def _nanmean(v: list[float]) -> float:
    arr = np.asarray(v, dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _key(x: float) -> float:
    return x if math.isfinite(x) else math.inf


def derive(values: dict[str, float], reference: dict[str, float] | None) -> dict[str, float]:
    """Add Indisc, val_indisc and (with the retrain reference) RR, FR, TR, RetDev."""
    out = dict(values)
    for mia, name in (("test_mia", "Indisc"), ("val_mia", "val_indisc")):
        if math.isfinite(out.get(mia, math.nan)):
            out[name] = indiscernibility(out[mia])
    if reference is not None and all(k in out and k in reference for k in RETENTION_OF.values()):
        out.update(retentions(out, reference, on_zero="nan"))
        out["RetDev"] = retention_deviation(out, reference, on_zero="nan")
    return out


def collect(root: str | Path, level: float = 0.95) -> Results:
    """Read the latest experiment of ``root`` and every result that belongs to it."""
    root = Path(root)
    with Store(root, create=False) as store:
        exp = Experiment.model_validate(store.latest_experiment())
        ctx = make_context(exp, root, store)
        records = _records(ctx)
        selections = {
            (f"{d.tag} / {m.tag}", method): {
                "status": store.status(ctx.select_key(d, m, method)) or "missing",
                **store.params(ctx.select_key(d, m, method)),
                **store.metrics(ctx.select_key(d, m, method)),
            }
            for d, m in ctx.settings()
            for method in exp.method_names()
        }
        ulira: dict[str, dict[str, Any]] = {}
        if exp.ulira is not None:
            for d, m in ctx.settings():
                key = ctx.ulira_key(d, m)
                run = store.run(key)
                if run is not None and run.status == "done" and run.artifact:
                    ulira[f"{d.tag} / {m.tag}"] = {
                        "metrics": store.metrics(key),
                        "curves": root / run.artifact,
                    }
        failures = [
            (r.stage, r.key, (r.error or "").strip().splitlines()[0] if r.error else "")
            for r in store.runs()
            if r.status == "failed"
        ]
        return Results(
            root,
            exp,
            records,
            selections,
            ulira,
            store.counts(),
            failures,
            store.environments(),
            level,
            load_curves(ctx),
        )


def _records(ctx: Context) -> list[Record]:
    store = ctx.store
    records: list[Record] = []
    for d, m in ctx.settings():
        by_seed_ref: dict[int, dict[str, float]] = {}
        setting_records: list[Record] = []
        for row in ctx.rows():
            for seed in ctx.exp.seeds:
                key = ctx.evaluate_key(d, m, row, seed)
                status = store.status(key) or "missing"
                rec = Record(d.tag, m.tag, row, seed, status)
                if status == "done":
                    rec.values = store.metrics(key)
                    rec.seconds = _seconds(ctx, d, m, row, seed)
                    if row == "retrain":
                        by_seed_ref[seed] = rec.values
                setting_records.append(rec)
        for rec in setting_records:
            if rec.status == "done":
                rec.values = derive(rec.values, by_seed_ref.get(rec.seed))
        records.extend(setting_records)
    return records


def _seconds(ctx: Context, d: Any, m: Any, row: str, seed: int) -> float | None:
    if row == "original":
        return None
    if row == "retrain":
        return ctx.store.timings(ctx.train_key(d, m, seed, "retrain")).get("train")
    return ctx.store.timings(ctx.unlearn_key(d, m, row, seed)).get("unlearn")
