"""``unlearnkit report DIR``: Deep Unlearn's tables and plots, as Markdown and one HTML page.

Writes ``DIR/report.md`` (PNG files referenced from ``DIR/plots/``) and ``DIR/report.html``
(self-contained: every PNG embedded as base64). Contents (docs/evaluation.md, "Deep Unlearn's
own evaluation" §3.6):

1. ranking by RetDev (ascending) then Indisc (descending), mean ± 95 % CI over seeds;
2. run-time efficiency RTE = mean T_R / mean T_U per setting, and T_U in seconds;
3. the paper's statistics: ranks within each setting, mean rank per architecture and overall
   (:mod:`unlearnkit.bench.ranks`), and the methods whose chosen configuration is
   indistinguishable from the Original (:mod:`unlearnkit.bench.pruning`);
4. per setting: RA, FA, TA, RR, FR, TR, RetDev, Indisc, T-MIA, RTE;
5. the chosen hyper-parameters per setting and method (search provenance and score) and the
   search convergence per setting and method (:mod:`unlearnkit.bench.convergence`);
6. U-LiRA (where run): AUC, balanced accuracy and TPR at low FPR per row, log-log ROC plots;
7. run status counts, failures, and the environments that produced the runs.

Intervals use Student's t over seeds, clipped to the metric's range
(:mod:`unlearnkit.bench.stats`). Every table is also written as CSV and LaTeX.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from unlearnkit.bench.convergence import plot_convergence
from unlearnkit.bench.headline import headline_section
from unlearnkit.bench.oracle_report import oracle_tables
from unlearnkit.bench.plots import plot_accuracy_time, plot_ranking
from unlearnkit.bench.ranks import flag_table, original_flags, rank_table
from unlearnkit.bench.render import Figure, Section, to_html, to_markdown
from unlearnkit.bench.results import Results, collect
from unlearnkit.bench.separation import separation_section
from unlearnkit.bench.tables import Table, export_tables
from unlearnkit.io import atomic_write_bytes
from unlearnkit.metrics import plot_roc_loglog

CONVERGENCE = "best ‖o‖₂ so far against finished trials, one line per search seed"
PER_SETTING = ("RA", "FA", "TA", "RR", "FR", "TR", "RetDev", "Indisc", "test_mia")
HEADER_NAMES = {"test_mia": "T-MIA", "val_mia": "V-MIA"}


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}f}"


def ranking_table(res: Results) -> Table:
    rows = []
    for o in res.ranking():
        rows.append(
            [
                "ref" if o["rank"] is None else str(o["rank"]),
                o["row"],
                o["RetDev"].fmt(),
                o["Indisc"].fmt(),
                f"{o['covered']}/{o['settings']}",
            ]
        )
    ranked = {o["row"] for o in res.ranking()}
    for row in res.rows():
        if row not in ranked:
            status = res.status(res.settings()[0], row) if res.settings() else "missing"
            rows.append(["—", row, status, status, f"0/{len(res.settings())}"])
    return Table(
        "Table 1. Ranking by RetDev (lower is better), then Indisc (higher is better)",
        ["rank", "method", "RetDev", "Indisc", "settings"],
        rows,
        "Each seed's value is averaged over the settings the method ran in; mean ± 95% CI "
        "(t) over seeds. RetDev = |RR−1|+|FR−1|+|TR−1| against Retrain of the same seed; "
        "Indisc = 1 − |2·T-MIA − 1|. A method that ran in fewer settings is not directly "
        "comparable.",
    )


def rte_table(res: Results) -> Table:
    settings = res.settings()
    headers = ["method"] + [f"RTE {s}" for s in settings] + [f"T_U (s) {s}" for s in settings]
    rows = []
    for row in res.rows():
        if row == "original":
            continue
        cells = [row]
        cells += [
            _fmt(res.rte(s, row), 1) if res.select(s, row) else res.status(s, row) for s in settings
        ]
        cells += [
            res.seconds(s, row).fmt(2) if res.select(s, row) else res.status(s, row)
            for s in settings
        ]
        rows.append(cells)
    return Table(
        "Table 2. Run-time efficiency RTE = mean T_R / mean T_U (higher is faster)",
        headers,
        rows,
        "T_R: Retrain's training time; T_U: the method's timed region (unlearning only, "
        "evaluation excluded), mean ± 95% CI over seeds.",
    )


def setting_table(res: Results, setting: str) -> Table:
    headers = ["method"] + [HEADER_NAMES.get(k, k) for k in PER_SETTING] + ["RTE"]
    rows = []
    for row in res.rows():
        status = res.status(setting, row)
        if status != "done":
            rows.append([row] + [status] * (len(PER_SETTING) + 1))
            continue
        cells = [row] + [res.estimate(setting, row, k).fmt() for k in PER_SETTING]
        cells.append(_fmt(res.rte(setting, row), 1))
        rows.append(cells)
    return Table(f"Table 3. {setting}", headers, rows, "mean ± 95% CI over seeds")


def selection_table(res: Results) -> Table:
    rows = []
    for (setting, method), sel in res.selections.items():
        if sel.get("status") != "done":
            rows.append([setting, method, sel.get("status", "missing"), "", ""])
            continue
        searched = sel.get("searched") or {}
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(searched.items()))
        score = _fmt(sel.get("score"), 4) if sel.get("source") == "search" else ""
        rows.append([setting, method, str(sel.get("source")), score, params or "(defaults)"])
    return Table(
        "Table 4. Chosen hyper-parameters",
        ["setting", "method", "source", "‖o‖₂", "parameters"],
        rows,
        "source 'search': the minimum-L2 trial of Deep Unlearn's four objectives (NSGA-III) "
        "over the search seeds' studies; 'defaults': the method's defaults (no search).",
    )


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def ulira_tables(res: Results) -> list[Table]:
    tables = []
    for setting, info in res.ulira.items():
        m = info["metrics"]
        found = {k.split(".", 1)[0] for k in m if "." in k}
        rows_ = [r for r in ("original", "retrain") if r in found] + sorted(
            found - {"original", "retrain"}
        )
        fprs = sorted(
            {k.split("tpr@", 1)[1] for k in m if "tpr@" in k and not k.endswith("_supported")},
            key=float,
        )
        rows = []
        for r in rows_:
            rows.append(
                [r, _fmt(m.get(f"{r}.auc")), _fmt(m.get(f"{r}.balanced_accuracy"))]
                + [_fmt(m.get(f"{r}.tpr@{a}"), 4) for a in fprs]
                + [_fmt(m.get(f"{r}.FA")), _fmt(m.get(f"{r}.TA"))]
            )
        u = res.exp.ulira
        assert u is not None
        tables.append(
            Table(
                f"U-LiRA, {setting}",
                ["row", "AUC", "balanced acc."] + [f"TPR@{a}" for a in fprs] + ["FA", "TA"],
                rows,
                f"{u.scheme} scheme, {u.shadows} shadow splits, {int(m.get('targets', 0))} "
                "target examples; AUC and balanced accuracy closer to 0.5 are better, "
                "TPR@α closer to α. FA/TA: mean accuracy of the audited models.",
            )
        )
    return tables


def outlier_references(res: Results) -> list[list[str]]:
    """Original/Retrain models whose TA is below half the median TA of the same row and
    setting (a training run that did not learn): their seed's retentions and RetDev are
    meaningless, and they dominate means and intervals."""
    rows = []
    for setting in res.settings():
        for row in ("original", "retrain"):
            recs = res.select(setting, row)
            tas = [r.values.get("TA", math.nan) for r in recs]
            finite = [t for t in tas if math.isfinite(t)]
            if not finite:
                continue
            median = sorted(finite)[len(finite) // 2]
            for r, ta in zip(recs, tas, strict=True):
                if math.isfinite(ta) and ta < 0.5 * median:
                    rows.append([setting, row, str(r.seed), _fmt(ta), _fmt(median)])
    return rows


def status_table(res: Results) -> Table:
    stages = sorted({s for s, _ in res.counts})
    statuses = sorted({st for _, st in res.counts})
    rows = [[s] + [str(res.counts.get((s, st), 0)) for st in statuses] for s in stages]
    return Table("Runs in the store, by stage and status", ["stage"] + statuses, rows)


def environment_table(res: Results) -> Table:
    rows = []
    for env in res.environments:
        pk = env.get("packages", {})
        rows.append(
            [
                str(env.get("host")),
                str(env.get("device")) + (f" ({env['gpu']})" if "gpu" in env else ""),
                str(env.get("torch_threads")),
                str(env.get("python")),
                ", ".join(f"{k} {v}" for k, v in sorted(pk.items()) if v),
            ]
        )
    return Table("Environments", ["host", "device", "threads", "python", "packages"], rows)


def build_sections(res: Results, plots: Path) -> list[Section]:
    plots.mkdir(parents=True, exist_ok=True)
    exp = res.exp
    sections = []
    intro = (f"{exp.description}\n\n" if exp.description else "") + (
        f"Datasets: {', '.join(d.tag for d in exp.datasets)}. Models: "
        f"{', '.join(m.tag for m in exp.models)}. Seeds: {exp.seeds}. Forget set: "
        f"{exp.forget if isinstance(exp.forget, str) else json.dumps(exp.forget)} "
        f"(seed {exp.forget_seed}{', varied per seed' if exp.vary_forget else ''}). "
        f"Training: {json.dumps({k: v for k, v in exp.training.items() if v is not None})}. "
        f"Search: {exp.search.trials} trials per study on seeds {exp.search_seeds()} "
        f"({exp.search.sampler})."
    )
    ranked = Section("Ranking", intro, [ranking_table(res)])
    outliers = outlier_references(res)
    if outliers:
        ranked.tables.insert(
            0,
            Table(
                "Warning: reference models that did not train",
                ["setting", "row", "seed", "TA", "median TA of the row"],
                outliers,
                "TA below half the median over seeds. Retentions (RR, FR, TR) and RetDev "
                "against such a Retrain are meaningless for that seed and dominate the means "
                "and intervals of the setting; rerun with another recipe or drop the seed.",
            ),
        )
    if res.select():
        ranked.figures.append(
            Figure("Ranking", plot_ranking(res, plots / "ranking.png"), "mean ± 95% CI")
        )
    sections.append(ranked)
    sections.append(separation_section(res))  # is there something to forget?
    eff = Section("Run-time efficiency", tables=[rte_table(res)])
    if res.select():
        eff.figures.append(
            Figure(
                "Accuracy against time",
                plot_accuracy_time(res, plots / "accuracy_time.png"),
                "test accuracy against the method's time",
            )
        )
    sections.append(eff)
    flags = original_flags(res)
    sections.append(
        Section("Ranks per setting", tables=[rank_table(res, flags), flag_table(flags)])
    )
    sections.append(headline_section(res))  # Deep Unlearn's claims, with verdicts
    sections.append(
        Section("Per-setting results", tables=[setting_table(res, s) for s in res.settings()])
    )
    hp = Section("Hyper-parameters", tables=[selection_table(res)])
    for i, setting in enumerate(dict.fromkeys(s for s, _ in res.curves)):
        path = plot_convergence(res.curves, setting, plots / f"convergence_{i}.png")
        hp.figures.append(Figure(f"Search convergence, {setting}", path, CONVERGENCE))
    sections.append(hp)
    if res.ulira:
        ul = Section("U-LiRA", tables=ulira_tables(res))
        for i, (setting, info) in enumerate(res.ulira.items()):
            curves = json.loads(Path(info["curves"]).read_text())
            path = plot_roc_loglog(
                {k: (v["fpr"], v["tpr"]) for k, v in curves.items()},
                plots / f"ulira_roc_{i}.png",
                title=f"U-LiRA ROC, {setting}",
            )
            ul.figures.append(Figure(f"U-LiRA ROC, {setting}", path))
        sections.append(ul)
    oracle = oracle_tables(res.root, exp)  # KLoM / pool U-LiRA, replaced references
    if oracle:
        sections.append(Section("Oracle audits and replaced references", tables=oracle))
    runs = Section("Runs", tables=[status_table(res), environment_table(res)])
    if res.failures:
        runs.tables.append(
            Table(
                "Failed runs",
                ["stage", "key", "error"],
                [[s, k, e[:200]] for s, k, e in res.failures[:50]],
            )
        )
    sections.append(runs)
    return sections


def write_report(root: str | Path, level: float = 0.95) -> Path:
    """Write ``report.md``, ``report.html``, ``plots/*.png`` (+ ``.json``) and every table as
    ``tables/NN-<title>.csv`` and ``.tex`` (:mod:`unlearnkit.bench.tables`) in ``root``.

    Returns the HTML path.
    """
    root = Path(root)
    res = collect(root, level)
    sections = build_sections(res, root / "plots")
    export_tables([t for sec in sections for t in sec.tables], root / "tables")
    title = f"unlearnkit benchmark: {res.exp.name}"
    atomic_write_bytes(root / "report.md", to_markdown(title, sections, root).encode())
    out = root / "report.html"
    atomic_write_bytes(out, to_html(title, sections).encode())
    return out
