"""The headline, stated: do Deep Unlearn's main findings hold in this benchmark?

Deep Unlearn (Cadet et al., arXiv 2410.01276) reports that **MSG and CT rank first** and that
**NG+ beats GA and SRL**. Each claim gets a verdict, ``reproduced``, ``partly`` or ``not``,
with its reason, from rank *intervals* rather than point ranks:

* Ranks per seed: the within-setting rank of :func:`unlearnkit.bench.ranks.setting_ranks`
  (mean RetDev, ties by Indisc; 1 = best), applied to each seed's records alone.
* Paired rank difference of methods a and b: per seed, the mean over the settings where both
  have a rank of ``rank_a − rank_b``; then mean ± t-interval over seeds
  (:func:`unlearnkit.bench.stats.mean_ci`). Negative = a ranks better. a **clearly** beats b
  when the whole interval is below 0; it beats b **on the point** when the mean is below 0.

Verdicts:

* "X ranks first" (X = MSG, CT): ``reproduced`` when every claimed method has results in every
  setting and clearly beats every other method; ``partly`` when some claimed method beats
  every other method on the point but not all of the above hold (intervals that include 0,
  a claimed method unsupported or missing in some setting, one claimed method behind);
  ``not`` when no claimed method beats every other on the point (or none has results).
* "a beats b₁, b₂" (NG+ over GA, SRL): ``reproduced`` when every comparison is clear and made
  on every setting; ``not`` when a beats none on the point (or cannot be compared);
  ``partly`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from unlearnkit.bench.config import REFERENCE_ROWS
from unlearnkit.bench.ranks import setting_ranks
from unlearnkit.bench.render import Section
from unlearnkit.bench.results import Results
from unlearnkit.bench.stats import Estimate, mean_ci
from unlearnkit.bench.tables import Table

FIRST: tuple[str, ...] = ("msg", "ct")
BEATS: tuple[str, tuple[str, ...]] = ("ngplus", ("ga", "srl"))
NAMES = {"msg": "MSG", "ct": "CT", "ngplus": "NG+", "ga": "GA", "srl": "SRL", "salun": "SalUn"}


def _n(m: str) -> str:
    return NAMES.get(m, m.upper())


@dataclass
class Verdict:
    """One claim's outcome: ``reproduced``, ``partly`` or ``not``, and why."""

    claim: str
    outcome: str
    reasons: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "every condition holds"


def seed_ranks(res: Results) -> dict[int, dict[str, dict[str, float]]]:
    """``{seed: {setting: {method: rank}}}``: :func:`setting_ranks` on each seed alone."""
    seeds = sorted({r.seed for r in res.records})
    return {
        s: setting_ranks(replace(res, records=[r for r in res.records if r.seed == s]))
        for s in seeds
    }


def _ran(res: Results, method: str) -> list[str]:
    return [s for s in res.settings() if res.select(s, method)]


def _missing(res: Results, method: str) -> str:
    """Where ``method`` has no result, with the stored status (e.g. unsupported)."""
    out = [f"{s} ({res.status(s, method)})" for s in res.settings() if not res.select(s, method)]
    return ", ".join(out)


def rank_interval(res: Results, method: str, ranks: dict | None = None) -> Estimate:
    """Mean ± CI over seeds of the method's per-seed mean rank over the settings it ran in."""
    ranks = ranks if ranks is not None else seed_ranks(res)
    per_seed = []
    for by_setting in ranks.values():
        vals = [r[method] for r in by_setting.values() if math.isfinite(r.get(method, math.nan))]
        per_seed.append(sum(vals) / len(vals) if vals else math.nan)
    return mean_ci(per_seed, res.level)


def rank_difference(
    res: Results, a: str, b: str, ranks: dict | None = None
) -> tuple[Estimate, int]:
    """The paired rank difference a − b (module docstring) and the number of settings in
    which both have a rank for some seed."""
    ranks = ranks if ranks is not None else seed_ranks(res)
    per_seed, common = [], set()
    for by_setting in ranks.values():
        diffs = []
        for setting, r in by_setting.items():
            ra, rb = r.get(a, math.nan), r.get(b, math.nan)
            if math.isfinite(ra) and math.isfinite(rb):
                diffs.append(ra - rb)
                common.add(setting)
        per_seed.append(sum(diffs) / len(diffs) if diffs else math.nan)
    return mean_ci(per_seed, res.level), len(common)


def _fmt(e: Estimate) -> str:
    if e.n == 0:
        return "n/a"
    if e.n == 1 or not math.isfinite(e.half):
        return f"{e.mean:+.2f} (one seed: no interval)"
    return f"{e.mean:+.2f} [{e.mean - e.half:+.2f}, {e.mean + e.half:+.2f}]"


def _clear(e: Estimate) -> bool:
    return e.n > 1 and math.isfinite(e.half) and e.mean + e.half < 0


def _methods(res: Results) -> list[str]:
    return [r for r in res.rows() if r not in REFERENCE_ROWS and res.select(row=r)]


def verdict_first(res: Results, claimed: tuple[str, ...] = FIRST) -> Verdict:
    """ "MSG and CT rank first" (module docstring)."""
    claim = f"{' and '.join(map(_n, claimed))} rank first"
    ranks, present = seed_ranks(res), _methods(res)
    have = [c for c in claimed if c in present]
    reasons = [f"{_n(c)} has no result in any setting" for c in claimed if c not in present]
    if not have:
        return Verdict(claim, "not", reasons)
    others = [o for o in present if o not in claimed]
    point_first, all_clear = [], len(have) == len(claimed)
    for c in have:
        if _missing(res, c):
            reasons.append(f"{_n(c)} has no result in {_missing(res, c)}")
            all_clear = False
        behind = []
        for o in others:
            d, common = rank_difference(res, c, o, ranks)
            if common == 0:
                continue
            if not d.mean < 0:
                behind.append(f"{_n(o)} ranks at least as well as {_n(c)} (difference {_fmt(d)})")
            elif not _clear(d):
                reasons.append(f"{_n(c)} − {_n(o)} rank difference {_fmt(d)} includes 0")
            if not _clear(d):
                all_clear = False
        reasons.extend(behind)
        if not behind:
            point_first.append(c)
    if all_clear:
        return Verdict(claim, "reproduced", [])
    return Verdict(claim, "partly" if point_first else "not", reasons)


def verdict_beats(res: Results, a: str = BEATS[0], others: tuple[str, ...] = BEATS[1]) -> Verdict:
    """ "NG+ beats GA and SRL" (module docstring)."""
    claim = f"{_n(a)} beats {' and '.join(map(_n, others))}"
    ranks, present = seed_ranks(res), _methods(res)
    if a not in present:
        return Verdict(claim, "not", [f"{_n(a)} has no result in any setting"])
    n_settings = len(res.settings())
    reasons, wins, all_clear = [], 0, True
    for o in others:
        d, common = rank_difference(res, a, o, ranks) if o in present else (mean_ci([]), 0)
        if common == 0:
            reasons.append(f"{_n(a)} and {_n(o)} never ran in the same setting")
            all_clear = False
            continue
        if common < n_settings:
            reasons.append(f"compared with {_n(o)} on {common} of {n_settings} settings only")
            all_clear = False
        if d.mean < 0:
            wins += 1
            if not _clear(d):
                reasons.append(f"{_n(a)} − {_n(o)} rank difference {_fmt(d)} includes 0")
        else:
            reasons.append(f"{_n(o)} ranks at least as well as {_n(a)} (difference {_fmt(d)})")
        all_clear = all_clear and _clear(d)
    if all_clear:
        return Verdict(claim, "reproduced", [])
    return Verdict(claim, "partly" if wins else "not", reasons)


def headline(res: Results) -> list[Verdict]:
    """Both claims' verdicts."""
    return [verdict_first(res), verdict_beats(res)]


def headline_tables(res: Results) -> list[Table]:
    """The verdicts, and the rank intervals of the methods the claims name."""
    verdicts = headline(res)
    ranks = seed_ranks(res)
    n = len(res.settings())
    named = [m for m in (*FIRST, BEATS[0], *BEATS[1]) if m in _methods(res)]
    rows = [
        [_n(m), _fmt(rank_interval(res, m, ranks)).lstrip("+"), f"{len(_ran(res, m))}/{n}"]
        for m in named
    ]
    return [
        Table(
            "The headline, stated",
            ["claim (Deep Unlearn)", "verdict", "reason"],
            [[v.claim, v.outcome, v.reason] for v in verdicts],
            "Paired rank differences (a − b, negative = a better): per seed, the mean over the "
            "settings where both ran of the within-setting rank difference; mean [95% CI] over "
            "seeds. Clear = the whole interval below 0 (unlearnkit.bench.headline).",
        ),
        Table(
            "Rank intervals of the methods the claims name",
            ["method", "mean rank [95% CI]", "settings"],
            rows or [["(none ran)", "", ""]],
            "Per seed, the mean within-setting rank over the settings the method ran in; "
            "mean [95% CI] over seeds.",
        ),
    ]


def headline_section(res: Results) -> Any:
    """The report section (:class:`unlearnkit.bench.render.Section`)."""

    text = " ".join(f"{v.claim}: **{v.outcome}** ({v.reason})." for v in headline(res))
    return Section("The headline, stated", text, headline_tables(res))
