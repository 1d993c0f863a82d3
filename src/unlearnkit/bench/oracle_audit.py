"""The ``klom`` stage: KLoM and a pool-based U-LiRA per row, against the oracle pool.

For one setting and one row (Original, Retrain or a method), the row's models over the
benchmark seeds (U of them, one per seed) are compared with the M retrained members of the
oracle pool (:mod:`unlearnkit.bench.oracles`), on the forget, retain and val parts:

* **KLoM** (:mod:`unlearnkit.metrics.klom`, Georgiev et al. 2024): per example, the binned
  KL divergence between the U margins of the row and the M margins of the pool; summaries:
  95th percentile, median, and the mean with its t-interval over examples. Lower is better.
* **U-LiRA, pool version** (Hayes et al. 2024 with one retrain pool for every method; the
  ``offline_pdf`` score of :mod:`unlearnkit.metrics.ulira`): on the forget set, LiRA's φ
  (equal to the margin for multiclass logits) of each pool member defines per-example
  Gaussians N(μ_out, σ_out²) (median; per-example σ when M ≥ 32, else the pooled σ; floor
  1e-3). Positives: the row's U models on the forget examples, scored against the whole
  pool; negatives: each pool member scored against the other M − 1 (leave one out). The
  score −log N(φ; μ_out, σ_out²) flags a forget example whose φ is unusual for a retrained
  model in either direction (under- or over-forgetting). AUC per seed (that seed's model
  against all negatives), mean ± t-interval over seeds, and the pooled AUC. Closer to 0.5
  is better.

**Calibration** (the ``retrain`` row, whose models are retrains outside the pool): the audits
pass when the benchmark's held-out retrains look like the pool. The null level of KLoM is
measured inside the pool: R = min(⌊M/U⌋, 8) disjoint blocks of U members, each compared
with the other M − U; the retrain row passes KLoM when each summary (p95 and mean on every
part) is at most the upper end of the 95 % prediction interval of one more null replicate,
x̄ + t₀.₉₇₅,R₋₁ · s · √(1 + 1/R). (The row is compared with all M members and the null
blocks with M − U, which makes the test slightly conservative.) It passes U-LiRA when 0.5
lies in its AUC interval over seeds (with one seed: within 1.96 Hanley–McNeil standard
errors of the pooled AUC). A failure means the audit is miscalibrated, and the report says
so. The same row also stores the level of doing nothing: U pool originals against the pool.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats as sps

from unlearnkit.artifacts import load_model
from unlearnkit.bench.splits import read_split
from unlearnkit.bench.stats import mean_ci
from unlearnkit.bench.task_registry import TASKS, Output, Task
from unlearnkit.io import load_tensors
from unlearnkit.metrics.klom import klom, margins
from unlearnkit.metrics.roc import attack_metrics
from unlearnkit.metrics.ulira import GaussianFit, LiraFitConfig, lira_scores
from unlearnkit.training import predict_logits

#: the null replicates used at most
NULL_REPLICATES = 8

#: the parts whose margins the pools provide (KLoM is reported on each)
PARTS: tuple[str, ...] = ("forget", "retain", "val")


# ----------------------------------------------------------------------------- statistics


def klom_summary(values: np.ndarray) -> dict[str, float]:
    """p95, median, mean and its 95 % t-interval over examples (clipped at 0)."""
    est = mean_ci(values.tolist(), bounds=(0.0, math.inf))
    return {
        "klom_p95": float(np.percentile(values, 95)),
        "klom_median": float(np.median(values)),
        "klom_mean": float(values.mean()),
        "klom_mean_lo": est.low,
        "klom_mean_hi": est.high,
    }


def out_fit(stat: np.ndarray, config: LiraFitConfig | None = None) -> GaussianFit:
    """Per-example N(μ_out, σ_out²) of an (M, n) OUT pool (the IN side mirrors it, unused by
    the offline scores): median location; per-example σ (ddof 0) when M ≥
    ``min_models_per_side``, else the pooled within-example σ; σ ≥ ``std_floor``."""
    cfg = config or LiraFitConfig()
    m = stat.shape[0]
    mu = np.median(stat, axis=0)
    if m >= cfg.min_models_per_side:
        sd = stat.std(axis=0)
    else:
        sd = np.full(stat.shape[1], float(np.sqrt(np.mean((stat - stat.mean(0)) ** 2))))
    sd = np.maximum(sd, cfg.std_floor)
    n = np.full(stat.shape[1], m)
    return GaussianFit(mu, sd, mu, sd, n, n, m >= cfg.min_models_per_side)


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982), trials taken as independent."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)
    return math.sqrt(max(var, 0.0) / (n_pos * n_neg))


def pool_ulira(target: np.ndarray, pool: np.ndarray) -> dict[str, Any]:
    """Per-seed and pooled AUC of the offline_pdf attack (module docstring).

    ``target``: (U, n) φ of the row's models on the forget set; ``pool``: (M, n), M ≥ 3.
    """
    full = out_fit(pool)
    pos = lira_scores(target, full, "offline_pdf")
    neg = np.empty_like(pool)
    for j in range(pool.shape[0]):
        rest = np.delete(pool, j, axis=0)
        neg[j] = lira_scores(pool[j], out_fit(rest), "offline_pdf")
    negatives = neg.ravel()
    per_seed = []
    for row in pos:
        s = np.concatenate([row, negatives])
        y = np.r_[np.ones(row.size, bool), np.zeros(negatives.size, bool)]
        per_seed.append(attack_metrics(s, y, threshold=None).auc)
    s = np.concatenate([pos.ravel(), negatives])
    y = np.r_[np.ones(pos.size, bool), np.zeros(negatives.size, bool)]
    pooled = attack_metrics(s, y, threshold=None)
    return {
        "per_seed": per_seed,
        "auc": pooled.auc,
        "auc_se": hanley_mcneil_se(pooled.auc, pooled.n_pos, pooled.n_neg),
        "tpr@0.01": pooled.tpr_at_fpr.get(0.01, float("nan")),
    }


def null_klom(pool: np.ndarray, u: int, bins: int) -> list[dict[str, float]]:
    """KLoM summaries of R disjoint blocks of ``u`` pool members against the rest."""
    m = pool.shape[0]
    reps = min(m // u, NULL_REPLICATES) if u < m else 0
    out = []
    for r in range(reps):
        block = np.arange(r * u, (r + 1) * u)
        rest = np.setdiff1d(np.arange(m), block)
        out.append(klom_summary(klom(pool[block], pool[rest], bins=bins)))
    return out


def prediction_upper(values: list[float], level: float = 0.95) -> float:
    """x̄ + t · s · √(1 + 1/R): upper end of the prediction interval of one more replicate."""
    r = len(values)
    if r < 2:
        return float("nan")
    t = float(sps.t.ppf(0.5 + level / 2, r - 1))
    return float(np.mean(values) + t * np.std(values, ddof=1) * math.sqrt(1 + 1 / r))


# ----------------------------------------------------------------------------- stage


def _row_margins(task: Task, split: Any) -> dict[str, np.ndarray]:
    out: dict[str, list[torch.Tensor]] = {p: [] for p in PARTS if len(split.part(p))}
    for rel in task.payload["models"]:
        model, _ = load_model(task.path(rel))
        for name in out:
            data = split.part(name)
            out[name].append(
                margins(predict_logits(model, data).double(), data.targets_for_class())
            )
    return {k: torch.stack(v).numpy() for k, v in out.items()}


@TASKS.register("klom")
def klom_stage(task: Task) -> Output:
    """KLoM and pool U-LiRA of one row; the calibration checks for the retrain row."""
    p = task.payload
    pools = {k: v.numpy() for k, v in load_tensors(task.path(p["oracles"]), p["sha256"]).items()}
    split = read_split(str(task.path(p["split"])))
    rows = _row_margins(task, split)
    bins = int(p["bins"])
    metrics: dict[str, float] = {}
    params: dict[str, Any] = {}
    for part, u in rows.items():
        for name, v in klom_summary(klom(u, pools[f"retrain.{part}"], bins=bins)).items():
            metrics[f"{part}.{name}"] = v
    ul = pool_ulira(rows["forget"], pools["retrain.forget"])
    est = mean_ci(ul["per_seed"], bounds=(0.0, 1.0))
    metrics.update(
        {
            "ulira.auc": ul["auc"],
            "ulira.auc_se": ul["auc_se"],
            "ulira.auc_seed_mean": est.mean,
            "ulira.auc_seed_lo": est.low,
            "ulira.auc_seed_hi": est.high,
            "ulira.tpr@0.01": ul["tpr@0.01"],
        }
    )
    params["ulira_auc_per_seed"] = ul["per_seed"]
    if p["calibration"]:
        metrics.update(_calibration(rows, pools, bins, metrics))
    return Output(params=params, metrics=metrics)


def _calibration(
    rows: dict[str, np.ndarray], pools: dict[str, np.ndarray], bins: int, row: dict[str, float]
) -> dict[str, float]:
    """Null levels, the do-nothing level and the pass flags (module docstring)."""
    u = next(iter(rows.values())).shape[0]
    out: dict[str, float] = {}
    klom_ok = True
    for part in rows:
        null = null_klom(pools[f"retrain.{part}"], u, bins)
        for stat in ("klom_p95", "klom_mean"):
            vals = [n[stat] for n in null]
            upper = prediction_upper(vals)
            out[f"null.{part}.{stat}"] = float(np.mean(vals)) if vals else float("nan")
            out[f"null.{part}.{stat}_upper"] = upper
            if math.isfinite(upper) and row[f"{part}.{stat}"] > upper:
                klom_ok = False
        originals = pools.get(f"original.{part}")
        if originals is not None and originals.shape[0] >= u:
            level = klom(originals[:u], pools[f"retrain.{part}"], bins=bins)
            out[f"nothing.{part}.klom_mean"] = float(level.mean())
            out[f"nothing.{part}.klom_p95"] = float(np.percentile(level, 95))
    if u >= 2:
        lo, hi = row["ulira.auc_seed_lo"], row["ulira.auc_seed_hi"]
    else:
        half = 1.96 * row["ulira.auc_se"]
        lo, hi = row["ulira.auc"] - half, row["ulira.auc"] + half
    out["calibration.klom_pass"] = float(klom_ok)
    out["calibration.ulira_pass"] = float(lo <= 0.5 <= hi)
    return out
