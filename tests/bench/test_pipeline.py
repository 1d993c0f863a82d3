"""The whole pipeline in-process (inline executor): stages, unsupported methods, U-LiRA,
the report, resumption and key chaining."""

from pathlib import Path

import pytest
import torch
from _bench_helpers import db_rows, tiny_config

from unlearnkit.artifacts import load_model
from unlearnkit.bench import Store, parse_experiment, run_benchmark
from unlearnkit.bench.context import make_context
from unlearnkit.bench.results import collect

ULIRA = {"methods": ["ft", "ct"], "shadows": 4, "target_fraction": 0.2}


@pytest.fixture(scope="module")
def bench_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipeline")
    exp = parse_experiment(tiny_config(methods=["ft", "ct"], ulira=ULIRA))
    summary = run_benchmark(exp, out, show_progress=False)
    assert summary.failed == 0
    return out


def test_every_stage_finishes_and_ct_is_unsupported_on_an_mlp(bench_dir: Path):
    rows = db_rows(bench_dir)
    by_stage: dict[str, set[str]] = {}
    for r in rows.values():
        by_stage.setdefault(r["stage"], set()).add(r["status"])
    assert set(by_stage) == {
        "split",
        "init",
        "train",
        "search",
        "select",
        "unlearn",
        "evaluate",
        "ulira",
    }
    ct = [r for r in rows.values() if r["method"] == "ct"]
    assert ct and {r["status"] for r in ct} == {"unsupported"}
    assert all(r["status"] == "done" for r in rows.values() if r["method"] != "ct")
    # 2 seeds x (O, R) trained once each; evaluations of O, R, FT (CT unsupported) x 2 seeds
    assert sum(r["stage"] == "train" for r in rows.values()) == 4
    assert sum(r["stage"] == "evaluate" and r["status"] == "done" for r in rows.values()) == 6


def test_reference_rows_and_artifacts(bench_dir: Path):
    res = collect(bench_dir)
    for rec in res.select(row="retrain"):
        assert rec.values["RetDev"] == 0.0 and rec.values["dist_to_retrain"] == 0.0
        assert rec.values["RR"] == rec.values["FR"] == rec.values["TR"] == 1.0
    for rec in res.select(row="original"):
        assert rec.values["dist_to_retrain"] == pytest.approx(1.0)
        assert rec.seconds is None
    ft = res.select(row="ft")
    assert len(ft) == 2 and all(r.seconds and r.seconds > 0 for r in ft)
    with Store(bench_dir, create=False) as store:
        for run in store.runs():
            if run.status == "done" and run.stage in ("train", "unlearn", "init"):
                assert (bench_dir / f"{run.artifact}.safetensors").is_file()
                assert (bench_dir / f"{run.artifact}.json").is_file()
            if run.status == "done":
                env = store.environment(run.env)
                assert env["packages"]["torch"] and env["device"] == "cpu"
                assert store.params(run.key)["inputs"]["device"] == "cpu"  # inputs recorded
            if run.status == "done" and run.stage == "train":
                # each seed trains with its own data-order seed: train_seed + seed
                assert store.params(run.key)["inputs"]["train_seed"] == 123 + run.seed
    assert set(res.ulira) == {"digits / mlp"}
    m = res.ulira["digits / mlp"]["metrics"]
    assert {"original.auc", "retrain.auc", "ft.auc"} <= set(m)
    assert "ct.auc" not in m  # unsupported rows drop out of the audit


def test_report_is_self_contained(bench_dir: Path):
    html = (bench_dir / "report.html").read_text()
    md = (bench_dir / "report.md").read_text()
    # ranking, accuracy-time, search convergence, U-LiRA ROC
    assert html.count("data:image/png;base64,") == 4
    assert "src='plots" not in html and 'src="plots' not in html
    for name in ("ranking", "accuracy_time", "convergence_0", "ulira_roc_0"):
        assert f"](plots/{name}.png)" in md
        assert (bench_dir / "plots" / f"{name}.png").stat().st_size > 1000
        assert (bench_dir / "plots" / f"{name}.json").is_file()
    for table in ("Table 1. Ranking", "Table 2. Run-time", "Table 3. digits / mlp", "U-LiRA"):
        assert table in md and table in html
    ct_lines = [ln for ln in md.splitlines() if ln.startswith(("| ct |", "| — | ct |"))]
    assert len(ct_lines) == 4  # ranking, RTE, ranks per setting, per-setting table
    assert all("unsupported" in ln for ln in ct_lines)
    assert "| ft | 1 | 1 | 1 | 1/1 |" in md  # the one method that ran ranks first
    assert "indistinguishable from the Original" in md
    # every table as CSV and LaTeX, in report order
    tables = sorted(p.name for p in (bench_dir / "tables").iterdir())
    n_tables = sum(ln.startswith("|---|") for ln in md.splitlines())
    assert n_tables >= 8 and len(tables) == 2 * n_tables
    assert tables[0] == "01-table-1-ranking-by-retdev-lower-is-better-then-indisc-higher.csv"
    csv_text = (bench_dir / "tables" / tables[0]).read_text()
    assert csv_text.splitlines()[0] == "rank,method,RetDev,Indisc,settings"
    assert "\\begin{tabular}{lrrrr}" in (bench_dir / "tables" / tables[1]).read_text()


def test_rerun_recomputes_nothing_and_a_changed_method_only_its_runs(bench_dir: Path):
    before = db_rows(bench_dir)
    exp = parse_experiment(tiny_config(methods=["ft", "ct"], ulira=ULIRA))
    again = run_benchmark(exp, bench_dir, show_progress=False, report=False)
    # the U-LiRA pools' members are tracked jobs too (stage "ulira"): 4 shadow originals,
    # 4 retrains and 4 FT-unlearned members, reused from their cache, not re-planned
    members = [k for k, r in before.items() if k.startswith(("member-", "unlearned-"))]
    assert len(members) == 12 and all(before[k]["stage"] == "ulira" for k in members)
    assert not again.ran and sum(again.reused.values()) == len(before) - len(members)
    assert db_rows(bench_dir) == before

    # a fixed value the search overrides: new studies, the same chosen config, nothing else
    shadowed = parse_experiment(
        tiny_config(methods=[{"name": "ft", "config": {"momentum": 0.5}}, "ct"], ulira=ULIRA)
    )
    third = run_benchmark(shadowed, bench_dir, show_progress=False, report=False)
    assert dict(third.ran) == {("search", "done"): 1, ("select", "done"): 1}
    # FT without search: its defaults, so new final runs, evaluations and U-LiRA audit only
    unsearched = parse_experiment(
        tiny_config(methods=[{"name": "ft", "search": False}, "ct"], ulira=ULIRA)
    )
    fourth = run_benchmark(unsearched, bench_dir, show_progress=False, report=False)
    assert dict(fourth.ran) == {
        ("select", "done"): 1,
        ("unlearn", "done"): 2,
        ("evaluate", "done"): 2,
        ("ulira", "done"): 1,
    }
    assert fourth.reused["train"] == 4 and fourth.reused["split"] == 1
    assert fourth.reused["evaluate"] == 6  # O, R (done) and CT (unsupported) x 2 seeds
    after = db_rows(bench_dir)
    for key, row in before.items():  # nothing finished was run again
        assert after[key]["attempts"] == row["attempts"]
        assert after[key]["finished"] == row["finished"]


def test_a_labelled_entry_runs_its_method_as_a_row_of_its_own(bench_dir: Path):
    """``label`` runs a method twice under two row names: FT with its defaults as row "ft"
    and again as row "ft-defaults" give bit-identical weights (same Original, seed and
    config), while each row has its own runs and its own records."""
    exp = parse_experiment(
        tiny_config(
            methods=[
                {"name": "ft", "search": False},
                {"name": "ft", "label": "ft-defaults", "search": False},
            ]
        )
    )
    assert exp.method_names() == ["ft", "ft-defaults"]
    summary = run_benchmark(exp, bench_dir, show_progress=False, report=False)
    assert summary.failed == 0
    with Store(bench_dir) as store:
        ctx = make_context(exp, bench_dir, store)
        ((d, m),) = ctx.settings()
        for seed in exp.seeds:
            keys = [ctx.model_key(d, m, row, seed) for row in ("ft", "ft-defaults")]
            assert keys[0] != keys[1] and all(store.status(k) == "done" for k in keys)
            a, b = (load_model(bench_dir / "models" / k)[0].state_dict() for k in keys)
            assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    rows = {r.row for r in collect(bench_dir).records if r.status == "done"}
    assert {"ft", "ft-defaults"} <= rows
