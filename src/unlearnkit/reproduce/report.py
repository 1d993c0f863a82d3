"""Markdown summaries of the paper reproductions (written beside results.json)."""

from __future__ import annotations

from typing import Any


def convex_markdown(res: dict[str, Any]) -> str:
    """Table per variant and removal fraction: best ε, mean γ_S there, distance there, the
    minimum distance, and the retrain-free rule's γ_S and distance."""
    lines = [
        f"# SSSE convex reproduction ({res['dataset']}, pooled {res['input_shape']})",
        "",
        f"n_train = {res['n_train']}, λ = ℓ2 = {res['l2']:g}, {len(res['attributes'])} attributes of "
        f"frequency ≤ 20%, ε grid {res['eps_grid'][0]:g} … {res['eps_grid'][-1]:g} "
        f"({len(res['eps_grid'])} points). θ* reached ‖∇J‖ = {res['train_grad_norm']:.1e}; every "
        f"retrain ≤ {res['max_retrain_grad_norm']:.1e}. Total {res['total_seconds']:.0f} s.",
        "",
        "| variant | removed | best ε (max mean γ_S) | mean γ_S at best ε | mean distance at best ε "
        "| min mean distance (at ε) | loss-matching γ_S | loss-matching distance |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for v, per in res["summary"].items():
        for f, s in per.items():
            lines.append(
                f"| {v} | {float(f):.0%} | {s['best_eps']:g} | {s['best_gamma_mean']:.3f} | "
                f"{s['distance_at_best_eps']:.3f} | {s['min_distance_mean']:.3f} ({s['eps_min_distance']:g}) | "
                f"{s['loss_matching_gamma_mean']:.3f} | {s['loss_matching_distance_mean']:.3f} |"
            )
    lines += _convex_rules(res)
    lines += ["", "![γ_S](fig1_gamma.png)", "", "![distance](fig1_distance.png)", ""]
    return "\n".join(lines)


def _convex_rules(res: dict[str, Any]) -> list[str]:
    """Retrain-free rules per variant and fraction: mean γ_S, mean distance, median ε, records
    near the oracle γ_S (within 0.05 of max_ε γ_S) and with distance < 1."""
    rules = [
        r
        for r in ("loss_matching", "retained_loss", "retained_loss_all")
        if any(
            f"{r}_near_oracle_gamma" in s for per in res["summary"].values() for s in per.values()
        )
    ]
    if not rules:
        return []
    lines = [
        "",
        "Retrain-free rules: mean γ_S / mean distance / median ε / γ_S within 0.05 of the "
        "record's max / distance < 1:",
        "",
        "| variant | removed | oracle max mean γ_S | " + " | ".join(f"`{r}`" for r in rules) + " |",
        "|---|---|---|" + "---|" * len(rules),
    ]
    for v, per in res["summary"].items():
        for f, s in per.items():
            cells = [
                f"{s[f'{r}_gamma_mean']:.3f} / {s[f'{r}_distance_mean']:.3f} / "
                f"{s[f'{r}_eps_median']:.3g} / {s[f'{r}_near_oracle_gamma']} / "
                f"{s[f'{r}_distance_below_1']}"
                for r in rules
            ]
            lines.append(
                f"| {v} | {float(f):.0%} | {s['best_gamma_mean']:.3f} | " + " | ".join(cells) + " |"
            )
    return lines


def _gaps(g: dict[str, float]) -> str:
    return f"{100 * g['retain']:.1f} / {100 * g['forget']:.1f} / {100 * g['test']:.1f}"


def _met(s: dict[str, Any]) -> str:
    missed = [k for k, ok in s["targets_met"].items() if not ok]
    if missed:
        return "no (" + ", ".join(missed) + ")"
    lo, hi = s["met_interval"]
    return f"yes, ε {lo:.4g}–{hi:.4g} (×{hi / lo:.2f})"


def deep_markdown(res: dict[str, Any]) -> str:
    """Per dataset: a summary per (variant, scenario), then original and retrain accuracies,
    the gaps at the oracle best ε (primary criterion and summed gap) and at the retrain-free ε."""
    tol = res.get("tolerance", {})
    tol_txt = "; ".join(
        f"{kind}: " + " / ".join(f"{100 * t[k]:g}" for k in ("retain", "forget", "test"))
        for kind, t in tol.items()
    )
    lines = [
        f"# SSSE deep reproduction ({res['model']}, groups of {res['group_size']}, λ = {res['damping']:g}, "
        f"blocks {res['blocks']})",
        "",
        f"ε grid {res['eps_grid'][0]:g} … {res['eps_grid'][-1]:g} ({len(res['eps_grid'])} points), refined by "
        f"{res.get('refine', 0)} points inside the bracket around each coarse best. Best ε: argmin of "
        f"`{res.get('criterion', 'sum')}` over the union (`worst_split` = max over splits of |gap| / tolerance; "
        f"tolerances retain / forget / test in points, {tol_txt}); `sum` = argmin of the summed |gap|. "
        'Gaps are |Acc(SSSE) − Acc(retrain)| in points, retain / forget / test; "original |gap|" is '
        'that of the model before erasure (ε = 0); "ε range": the consecutive evaluated ε around the best '
        "at which every target holds."
        + (f" Total {res['total_seconds']:.0f} s." if "total_seconds" in res else ""),
        "",
    ]
    for name, d in res["datasets"].items():
        lines += [
            f"## {name}",
            "",
            f"n_train = {d['n_train']}, Original test accuracy {d['original_test_accuracy']:.4f}, "
            f"training {d['train_seconds']:.0f} s, prepare "
            + ", ".join(f"{k} {v:.1f} s" for k, v in d["prepare_seconds"].items()),
            "",
            "| variant | scenario | mean \\|gap\\| at best ε | max \\|gap\\| | mean forget acc | targets met |",
            "|---|---|---|---|---|---|",
        ]
        for key, m in d["summary"].items():
            v, kind = key.split("/")
            lines.append(
                f"| {v} | {kind} | {_gaps(m['mean_gap_at_best'])} | {_gaps(m['max_gap_at_best'])} | "
                f"{100 * m['mean_forget_accuracy_at_best']:.1f}% | {m['targets_met']} |"
            )
        lines += [
            "",
            "| variant | scenario | class | k | retrain acc (retain/forget/test) | original \\|gap\\| | "
            "SSSE acc at best ε | \\|gap\\| at best ε | best ε (coarse) | targets met (ε range) | "
            "`sum` oracle: ε, \\|gap\\| | retrain-free rule: ε, \\|gap\\| |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in d["scenarios"]:
            r, a = s["retrain"], s["accuracy_at_best"]
            sm = s["by_criterion"]["sum"]
            lines.append(
                f"| {s['variant']} | {s['kind']} | {s['class']} | {s['k']} | "
                f"{r['retain']:.3f} / {r['forget']:.3f} / {r['test']:.3f} | "
                f"{_gaps({k: abs(s['original'][k] - r[k]) for k in r})} | "
                f"{a['retain']:.3f} / {a['forget']:.3f} / {a['test']:.3f} | "
                f"{_gaps(s['gap_at_best'])} | {s['best_eps']:.4g} ({s['coarse_best_eps']:.4g}) | {_met(s)} | "
                f"{sm['eps']:.4g}, {_gaps(sm['gap'])} | "
                f"{s['free_rule']}: {s['free_eps']:.4g}, {_gaps(s['gap_at_free'])} |"
            )
        lines += _rules_table(d["scenarios"])
        lines += ["", f"![Figure 2, {name}](fig2_{name}.png)", ""]
    return "\n".join(lines)


def _rules_table(scen: list[dict[str, Any]]) -> list[str]:
    """Per scenario: the oracle and every compared retrain-free rule: ε, gaps, target met."""
    names = sorted({n for s in scen for n in s.get("rules", {})})
    if not names:
        return []
    lines = [
        "",
        "Retrain-free rules (ε, |gap| retain / forget / test, all targets met):",
        "",
        "| variant | scenario | class | oracle | " + " | ".join(f"`{n}`" for n in names) + " |",
        "|---|---|---|---|" + "---|" * len(names),
    ]
    for s in scen:
        cells = [f"{s['best_eps']:.4g}, {_gaps(s['gap_at_best'])}, {_yes(s['all_targets_met'])}"]
        for n in names:
            r = s["rules"].get(n)
            cells.append(
                "–"
                if r is None
                else f"{r['eps']:.4g}, {_gaps(r['gap'])}, {_yes(r['all_targets_met'])}"
            )
        lines.append(f"| {s['variant']} | {s['kind']} | {s['class']} | " + " | ".join(cells) + " |")
    met = {n: sum(s["rules"][n]["all_targets_met"] for s in scen if n in s["rules"]) for n in names}
    lines += [
        "",
        f"Targets met: oracle {sum(s['all_targets_met'] for s in scen)}/{len(scen)}, "
        + ", ".join(f"`{n}` {met[n]}/{sum(n in s['rules'] for s in scen)}" for n in names)
        + ".",
    ]
    return lines


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"
