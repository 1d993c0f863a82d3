"""Population membership-inference attacks used by unlearning papers, and indiscernibility.

These are cheap *diagnostics*: population attacks overstate privacy (Hayes et al. 2024).
Use :mod:`unlearnkit.metrics.ulira` for the headline per-example attack. In every case
the reference is the retrained model's value on the same sets, not 0 or 0.5
(docs/evaluation.md).

* :func:`population_mia`: the loss-LR attack of the NeurIPS 2023 starting kit, SCRUB and
  Deep Unlearn (docs/evaluation.md, "Deep Unlearn's own evaluation" §3.3). Against the
  validation set it gives "Val MIA", against the test set "Test MIA". Ideal ≈ 0.5 (retrain's
  value). ``faithful=True`` (the default) draws the balanced sample exactly as the released
  code does (:func:`population_mia_sample`).
* :func:`indiscernibility` = 1 − |2·MIA − 1| (Deep Unlearn §3.4). Higher is better, 1 = chance.
* :func:`svc_mia_efficacy`: Unlearn-Sparse / SalUn's SVC attack, MIA-efficacy = TN / |D_f|
  (spec §3.2). *Closer to retrain's value is better*; SalUn reads larger as more forgetting.
* :func:`entropy_lr_member_rate`: SSD / Bad Teacher's entropy attack. It reports the fraction of
  D_f predicted "member". *Closer to retrain is better*.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC

import unlearnkit.metrics.signals as signals
from unlearnkit.errors import DataError, NumericalError
from unlearnkit.metrics._arrays import as_float
from unlearnkit.metrics.inputs import MetricInputs
from unlearnkit.metrics.registry import Direction, metric
from unlearnkit.registry import Registry

#: Deep Unlearn's seed for the loss shuffles and the StratifiedShuffleSplit.
DEEP_UNLEARN_SEED = 123

#: Signals for the SVC / LR attacks: name -> f(outputs (n, C), labels (n,)) -> (n,).
MIA_SIGNALS: Registry[Callable[[Any, Any], np.ndarray]] = Registry("MIA signal")
MIA_SIGNALS.register("confidence")(signals.true_class_confidence)
MIA_SIGNALS.register("entropy")(signals.entropy)
MIA_SIGNALS.register("m_entropy")(signals.modified_entropy)
MIA_SIGNALS.register("correctness")(signals.correctness)
MIA_SIGNALS.register("loss")(signals.cross_entropy)


def population_mia_sample(
    forget_losses: Any,
    holdout_losses: Any,
    *,
    seed: int = DEEP_UNLEARN_SEED,
    faithful: bool = True,
    rng: np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The attack's balanced input ``(x (2m, 1), y (2m,))``, m = min(|F|, |H|).

    ``faithful=True`` (default): Deep Unlearn's released code
    (``munl/evaluation/membership_inference_attack.py``, ``evaluate_mia_on_pointwise_losses``
    called as ``(holdout_losses, forget_losses)``): shuffle a copy of the **hold-out** losses,
    then a copy of the forget losses, with one legacy ``RandomState(seed)`` stream (their
    ``np.random.seed(123)``); keep the first m of each; x = [forget[:m], hold-out[:m]],
    y = [0]*m + [1]*m (forget labelled 0, hold-out 1: their variable names are swapped, which
    does not change an accuracy but does change the sample and the folds).

    ``faithful=False``: the order of the earlier unlearnkit releases: forget shuffled first,
    x = [hold-out[:m], forget[:m]], y = [0]*m + [1]*m (forget labelled 1). Same attack, other
    draws: fold accuracies differ from the released code's by sampling noise (up to ~0.1 on
    small sets).

    ``rng`` continues an existing stream instead of starting one from ``seed`` (Deep
    Unlearn's Test MIA follows its Val MIA on the same stream: :func:`val_test_mia`). The
    inputs and NumPy's global RNG are left untouched.
    """
    f = as_float(forget_losses, "forget_losses", ndim=1).copy()
    h = as_float(holdout_losses, "holdout_losses", ndim=1).copy()
    m = min(f.size, h.size)
    if m < 5:
        raise DataError(f"population MIA needs at least 5 samples per side; got {m}")
    r = np.random.RandomState(seed) if rng is None else rng
    zeros, ones = np.zeros(m, dtype=np.int64), np.ones(m, dtype=np.int64)
    if faithful:
        r.shuffle(h)
        r.shuffle(f)
        return np.concatenate([f[:m], h[:m]])[:, None], np.concatenate([zeros, ones])
    r.shuffle(f)
    r.shuffle(h)
    return np.concatenate([h[:m], f[:m]])[:, None], np.concatenate([zeros, ones])


def population_mia_folds(
    forget_losses: Any,
    holdout_losses: Any,
    *,
    n_splits: int = 10,
    seed: int = DEEP_UNLEARN_SEED,
    faithful: bool = True,
    rng: np.random.RandomState | None = None,
) -> np.ndarray:
    """Fold accuracies of the loss-LR population MIA (Deep Unlearn §3.3; NeurIPS'23 kit).

    Steps:
      1. The balanced sample of :func:`population_mia_sample` (shuffles from a legacy
         ``RandomState(seed)``; ``faithful`` picks the released code's order and labels).
      2. ``LogisticRegression()`` with default settings on the scalar losses, scored by
         accuracy over ``StratifiedShuffleSplit(n_splits, random_state=seed)`` (default 10 %
         test split), as ``simple_mia`` of the released code.

    Args:
        forget_losses: per-sample CE losses of the model on D_f, shape (|F|,).
        holdout_losses: per-sample CE losses on the non-member set (D_v or D_t).
    """
    if n_splits < 1:
        raise DataError("n_splits must be positive")
    x, y = population_mia_sample(
        forget_losses, holdout_losses, seed=seed, faithful=faithful, rng=rng
    )
    cv = StratifiedShuffleSplit(n_splits=n_splits, random_state=seed)
    return cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")


def population_mia(
    forget_losses: Any,
    holdout_losses: Any,
    *,
    n_splits: int = 10,
    seed: int = DEEP_UNLEARN_SEED,
    faithful: bool = True,
) -> float:
    """MIA = mean accuracy of :func:`population_mia_folds`. Ideal: retrain's value (≈ 0.5).

    With the defaults this is Deep Unlearn's "Val MIA" exactly (its evaluation seeds the
    stream just before the validation attack).
    """
    folds = population_mia_folds(
        forget_losses, holdout_losses, n_splits=n_splits, seed=seed, faithful=faithful
    )
    return float(np.mean(folds))


def val_test_mia(
    forget_losses: Any,
    val_losses: Any,
    test_losses: Any,
    *,
    seed: int = DEEP_UNLEARN_SEED,
    faithful: bool = True,
) -> dict[str, float]:
    """Deep Unlearn's two columns: {"val_mia": MIA vs D_v, "test_mia": MIA vs D_t}.

    ``faithful=True``: as ``evaluate_model`` of the released code: one stream seeded once, the
    validation attack first, the test attack continuing the same stream (so Test MIA depends
    on |D_v| and |D_f|). ``faithful=False``: each attack starts its own stream from ``seed``.
    The suite's ``test_mia`` metric is :func:`population_mia` on a fresh stream (it must not
    depend on whether the validation attack ran); use this function to reproduce the
    released Test MIA column draw for draw.
    """
    rng = np.random.RandomState(seed) if faithful else None
    val = population_mia_folds(forget_losses, val_losses, seed=seed, faithful=faithful, rng=rng)
    test = population_mia_folds(forget_losses, test_losses, seed=seed, faithful=faithful, rng=rng)
    return {"val_mia": float(np.mean(val)), "test_mia": float(np.mean(test))}


def indiscernibility(mia: float) -> float:
    """Indisc = 1 − |MIA − 0.5| / 0.5 = 1 − |2·MIA − 1| ∈ [0, 1] (Deep Unlearn §3.4).

    1 means the attack is at chance. Over-forgetting (MIA < 0.5) is penalised the same as
    under-forgetting. Higher is better.
    """
    mia = float(mia)
    if not 0.0 <= mia <= 1.0 or not np.isfinite(mia):
        raise NumericalError(f"an MIA accuracy must lie in [0, 1], got {mia}")
    return 1.0 - abs(2.0 * mia - 1.0)


def _features(x: Any, name: str) -> np.ndarray:
    arr = as_float(x, name, ndim=(1, 2))
    return arr.reshape(arr.shape[0], -1)


def _balanced_shadow(member: Any, nonmember: Any) -> tuple[np.ndarray, np.ndarray]:
    r = _features(member, "retain_signal")
    t = _features(nonmember, "test_signal")
    if r.shape[1] != t.shape[1]:
        raise DataError(f"signal widths differ: retain {r.shape[1]}, test {t.shape[1]}")
    n = min(r.shape[0], t.shape[0])
    x = np.concatenate([r[:n], t[:n]])
    y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])
    return x, y


def svc_mia_efficacy(
    retain_signal: Any,
    test_signal: Any,
    forget_signal: Any,
    *,
    c: float = 3.0,
    gamma: str | float = "auto",
) -> float:
    """SalUn / Unlearn-Sparse MIA-efficacy = TN / |D_f|.

    An RBF ``SVC(C=3, gamma="auto")`` is trained on D_r (members, label 1) against D_t
    (non-members, 0). The sets are balanced by keeping the first n = min(|D_r|, |D_t|) of
    each (SalUn takes the first |D_t| retain samples). It is then applied to D_f.
    MIA-efficacy is the fraction of D_f predicted non-member. Signals are (n,) or (n, k)
    arrays, e.g. ``MIA_SIGNALS.get("confidence")(logits, labels)``, the reported variant.
    Direction: *closer to retrain's value is better*. SalUn reads larger values as more
    forgetting.
    """
    x, y = _balanced_shadow(retain_signal, test_signal)
    f = _features(forget_signal, "forget_signal")
    if f.shape[1] != x.shape[1]:
        raise DataError("forget_signal has a different width from the shadow signals")
    if x.shape[0] < 2:
        raise DataError("the SVC attack needs at least one retain and one test sample")
    clf = SVC(C=c, gamma=gamma, kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(f).mean())


def entropy_lr_member_rate(retain_entropy: Any, test_entropy: Any, forget_entropy: Any) -> float:
    """Entropy-LR MIA (SSD, Bad Teacher, SUPREME): the fraction of D_f predicted "member".

    A ``LogisticRegression(class_weight="balanced")`` is fit on output entropy, D_r = 1 vs
    D_t = 0, and applied to D_f. Closer to the retrained model's value is better.
    """
    r = _features(retain_entropy, "retain_entropy")
    t = _features(test_entropy, "test_entropy")
    f = _features(forget_entropy, "forget_entropy")
    x = np.concatenate([r, t])
    y = np.concatenate([np.ones(r.shape[0], dtype=np.int64), np.zeros(t.shape[0], dtype=np.int64)])
    clf = LogisticRegression(class_weight="balanced").fit(x, y)
    return float(clf.predict(f).mean())


def _mia_metrics(holdout: str) -> None:
    short = holdout[0]

    def mia(x: MetricInputs) -> float:
        key = f"mia:{holdout}"
        if key not in x.cache:
            x.cache[key] = population_mia(x.model.losses("forget"), x.model.losses(holdout))
        return float(x.cache[key])

    def indisc(x: MetricInputs) -> float:
        return indiscernibility(mia(x))

    mia.__doc__ = (
        f"{holdout.capitalize()} MIA: loss-LR population attack, forget vs {holdout} losses "
        "(:func:`population_mia`, Deep Unlearn §3.3). Closer to retrain's value (≈ 0.5)."
    )
    indisc.__doc__ = f"1 − |2·{short.upper()}al MIA − 1| (Deep Unlearn §3.4). Higher is better."
    needs = ("model:forget", f"model:{holdout}")
    metric(
        f"{holdout}_mia",
        label=f"{holdout} MIA",
        direction=Direction.CLOSER_TO_RETRAIN,
        needs=needs,
        group="mia",
    )(mia)
    metric(
        f"{holdout}_indisc",
        label=f"{holdout} indisc",
        direction=Direction.HIGHER,
        needs=needs,
        group="derived",
    )(indisc)


_mia_metrics("val")
_mia_metrics("test")


@metric(
    "svc_mia_efficacy",
    label="SVC MIA-efficacy",
    direction=Direction.CLOSER_TO_RETRAIN,
    needs=("task:multiclass", "model:retain", "model:test", "model:forget"),
    group="mia_svc",
)
def svc_mia_metric(x: MetricInputs) -> float:
    """SalUn's SVC MIA-efficacy on the true-class confidence p_y: shadow retain vs test, TN /
    |D_f| on the forget set (:func:`svc_mia_efficacy`). Closer to retrain's value."""
    m = x.model
    sig = {
        p: signals.true_class_confidence(torch.nan_to_num(m.logits[p]), m.labels[p])
        for p in ("retain", "test", "forget")
    }
    return svc_mia_efficacy(sig["retain"], sig["test"], sig["forget"])
