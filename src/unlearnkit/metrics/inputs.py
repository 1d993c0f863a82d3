"""What a registered metric reads: a model's outputs on named splits, and its references.

One input convention for every metric of the suite (:mod:`unlearnkit.evaluation.suite`):

* logits are float64, computed once per (model, split) in eval mode;
* a sample whose logit row is not finite (a diverged model) is predicted as class ``-1``
  (never correct, multiclass) or as all-wrong attributes (multilabel), and its per-sample
  loss is :data:`LOSS_CAP`;
* the per-sample loss is the task's training loss (:func:`unlearnkit.tasks.per_sample_loss`:
  cross-entropy for ``multiclass``, summed binary cross-entropy for ``multilabel``), capped at
  :data:`LOSS_CAP`. Every MIA attacks these losses.

A metric names what it needs with the strings of :meth:`MetricInputs.available`:
``"model:<split>"``, ``"original:<split>"``, ``"retrain:<split>"`` (logits on a split),
``"model:params"``, ``"original:params"``, ``"retrain:params"``, ``"seconds"``,
``"retrain_seconds"`` and ``"task:<task>"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unlearnkit.errors import DataError
from unlearnkit.tasks import per_sample_loss

#: Per-sample losses above this value (and those of non-finite logits) are set to it.
LOSS_CAP = 1e4
#: Split names the suite knows, in Deep Unlearn's reporting order.
SPLITS = ("retain", "forget", "val", "test")
#: Roles of the models an evaluation compares.
ROLES = ("model", "original", "retrain")


@dataclass
class ModelOutputs:
    """Float64 logits of one model on named splits, with the labels and the task type."""

    logits: Mapping[str, torch.Tensor]
    labels: Mapping[str, torch.Tensor]
    task: str
    parameters: Any = None  # an nn.Module, a parameter list or a state dict

    def __post_init__(self) -> None:
        for part, z in self.logits.items():
            if part not in self.labels or len(self.labels[part]) != len(z):
                raise DataError(f"split {part!r}: {len(z)} logits without as many labels")

    def finite(self, part: str) -> torch.Tensor:
        """Bool (n,): samples whose logit row is finite."""
        return torch.isfinite(self.logits[part]).all(dim=1)

    def predictions(self, part: str) -> torch.Tensor:
        """Arg-max class (multiclass; ``-1`` for a non-finite row) or ``1[z > 0]`` (multilabel,
        a non-finite row gets the complement of its labels: every attribute wrong)."""
        z = self.logits[part]
        ok = self.finite(part)
        if self.task == "multilabel":
            pred = (torch.nan_to_num(z) > 0).to(torch.float64)
            wrong = 1.0 - self.labels[part].to(torch.float64)
            return torch.where(ok[:, None], pred, wrong)
        return torch.where(ok, torch.nan_to_num(z).argmax(dim=1), -1)

    def losses(self, part: str) -> np.ndarray:
        """Per-sample task loss in float64, capped at :data:`LOSS_CAP` (see the module doc)."""
        z = self.logits[part]
        ok = self.finite(part)
        clean = torch.where(torch.isfinite(z), z, torch.zeros_like(z))
        loss = per_sample_loss(self.task, clean, self.labels[part]).double().numpy().copy()
        loss[~ok.numpy()] = LOSS_CAP
        return np.minimum(np.nan_to_num(loss, nan=LOSS_CAP, posinf=LOSS_CAP), LOSS_CAP)


@dataclass
class MetricInputs:
    """The model under evaluation, its optional references and timings."""

    model: ModelOutputs
    original: ModelOutputs | None = None
    retrain: ModelOutputs | None = None
    seconds: float | None = None
    retrain_seconds: float | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def outputs(self, role: str) -> ModelOutputs:
        """The outputs of ``role`` (``model``, ``original``, ``retrain``)."""
        out = getattr(self, role) if role in ROLES else None
        if out is None:
            raise DataError(f"no {role!r} outputs were given")
        return out

    def available(self) -> set[str]:
        """The need-strings these inputs satisfy (see the module docstring)."""
        have = {f"task:{self.model.task}"}
        for role in ROLES:
            out = getattr(self, role)
            if out is None:
                continue
            have.update(f"{role}:{part}" for part in out.logits)
            if out.parameters is not None:
                have.add(f"{role}:params")
        if self.seconds is not None:
            have.add("seconds")
        if self.retrain_seconds is not None:
            have.add("retrain_seconds")
        return have
