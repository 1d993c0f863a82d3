"""ROC, TPR at FPR, AUC and balanced accuracy on a hand-built example; the log-log plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from unlearnkit.errors import DataError
from unlearnkit.metrics.roc import (
    attack_metrics,
    balanced_accuracy,
    plot_roc_loglog,
    roc,
    tpr_at_fpr,
)

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
LABELS = np.array([1, 0, 1, 1, 0, 0, 1, 0])


def test_roc_points_by_hand() -> None:
    fpr, tpr, _ = roc(SCORES, LABELS)
    # Thresholds 0.9 … 0.2 (plus the (0, 0) start): (FP, TP) counts out of 4 each.
    assert np.allclose(fpr, [0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 0.75, 1.0])
    assert np.allclose(tpr, [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0])
    assert tpr_at_fpr(fpr, tpr, 0.0) == 0.25
    assert tpr_at_fpr(fpr, tpr, 0.1) == 0.25
    assert tpr_at_fpr(fpr, tpr, 0.25) == 0.75
    assert tpr_at_fpr(fpr, tpr, 0.5) == 0.75
    assert tpr_at_fpr(fpr, tpr, 0.75) == 1.0


def test_attack_metrics_by_hand() -> None:
    # AUC: ordered (pos, neg) pairs: 0.9 beats 4, 0.7 beats 3, 0.6 beats 3, 0.3 beats 1 -> 11/16.
    m = attack_metrics(SCORES, LABELS, threshold=0.55, fprs=(0.25, 0.1))
    assert m.auc == pytest.approx(11 / 16)
    assert m.balanced_accuracy == pytest.approx(0.75)  # TPR 3/4, TNR 3/4
    assert m.best_balanced_accuracy == pytest.approx(0.75)
    assert m.tpr_at_fpr == {0.25: 0.75, 0.1: 0.25}
    assert m.supported == {0.25: True, 0.1: False}  # 4 negatives cannot resolve FPR 0.1
    assert balanced_accuracy(SCORES, LABELS, threshold=1.0) == 0.5
    assert m.as_dict()["tpr@0.25"] == 0.75
    with pytest.raises(DataError):
        attack_metrics(SCORES, np.ones(8))


def test_plot_writes_png_and_data(tmp_path) -> None:
    fpr, tpr, _ = roc(SCORES, LABELS)
    out = plot_roc_loglog({"method": (fpr, tpr)}, tmp_path / "roc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "roc.json").read_text())
    assert np.allclose(data["method"]["tpr"], tpr)
