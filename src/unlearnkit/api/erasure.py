"""``prepare`` and ``erase``: SSSE with sample ids, a retrain-free ε and a utility budget.

:func:`prepare` builds the erasure state once (:class:`~unlearnkit.ssse.ErasureState`) and
keeps the training data beside it, so that later requests name sample ids only
(:meth:`Prepared.erase`). Each request:

1. validates the ids and the model against the state and computes the direction Δ = F⁻¹v
   (:meth:`ErasureState.request`; nothing changes yet);
2. picks ε: a number, or ``"auto"``, the guarded loss-matching rule
   (:func:`~unlearnkit.ssse.eps.loss_matching_rule`: ε minimising the KS distance between the
   erased samples' losses and the losses of held-out samples of the same classes, among the
   ε that keep accuracy on a retain sample within 1 point of ε = 0). No retrained model.
3. measures accuracy before and after on the retained data (a seeded sample of at most
   1000) and on the held-out data of the classes that still have training samples, and
   refuses the step (:class:`~unlearnkit.errors.UtilityBudgetError`, nothing returned, the
   state unchanged) when either drops by more than ``utility_budget`` unless
   ``allow_utility_loss``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.api.inputs import Split, as_dataset, resolve_device
from unlearnkit.api.models import params_device
from unlearnkit.api.saved import Saved
from unlearnkit.data.base import ArrayDataset
from unlearnkit.data.forget import make_forget_spec, select_forget
from unlearnkit.errors import ConfigError, DataError, UtilityBudgetError
from unlearnkit.ssse import ErasureConfig, ErasureState
from unlearnkit.ssse.eps import DEFAULT_GRID, guard_sample, loss_matching_rule, matched_holdout
from unlearnkit.training import evaluate_accuracy

#: largest accepted drop of retained / held-out accuracy (absolute, 0.02 = 2 points)
DEFAULT_UTILITY_BUDGET = 0.02
#: the ε rule's own guard: retained accuracy within this much of ε = 0
AUTO_MAX_RETAIN_DROP = 0.01


@dataclass(frozen=True)
class Prepared:
    """An erasure state, the training data it was prepared on, and held-out data for ε."""

    state: ErasureState
    data: ArrayDataset
    holdout: ArrayDataset | None = None

    @property
    def remaining_ids(self) -> torch.Tensor:
        """Training ids not erased yet."""
        return self.state.sample_ids[~self.state.erased]

    def remaining(self) -> ArrayDataset:
        return self.data.subset(self.remaining_ids)

    def select(self, forget: str, seed: int = 0) -> torch.Tensor:
        """The ids a forget spec (``class:3``, ``random:0.1``) names in the training data."""
        return select_forget(self.data, make_forget_spec(forget), seed=seed).forget_ids

    def erase(self, model: nn.Module, ids: Any, **kwargs: Any) -> Erased:
        """Erase the samples ``ids`` from ``model`` (see :func:`erase`)."""
        return erase(model, self, ids, **kwargs)

    def save(self, path: str | Path) -> Path:
        return self.state.save(path)


@dataclass
class Erased:
    """The erased model, the prepared state after the request, ε and the utility check."""

    model: nn.Module
    prepared: Prepared
    eps: float
    eps_rule: str
    accuracy: dict[str, dict[str, float]]
    entry: dict[str, Any]
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def state(self) -> ErasureState:
        return self.prepared.state

    def manifest(self) -> dict[str, Any]:
        return {"role": "ssse", "ssse": self.record}


def prepare(
    model: nn.Module,
    data: Split | Any,
    config: ErasureConfig | dict[str, Any] | None = None,
    *,
    holdout: Any = None,
    device: str | torch.device | None = None,
) -> Prepared:
    """Compute and invert the curvature of ``model``'s training data (once).

    ``data``: a :class:`Split` (its training data; its val / test become the held-out data
    for ``eps="auto"``) or the user's own training data (Dataset, DataLoader, tensors).
    ``device``: where the state is computed (default: the model's device).
    """
    if isinstance(data, Split):
        train, hold = data.train, data.holdout
    else:
        train, hold = as_dataset(data, name="train"), None
    if holdout is not None:
        hold = as_dataset(holdout, task=train.task, classes=train.classes, name="holdout")
    cfg = config if isinstance(config, ErasureConfig) else ErasureConfig(**(config or {}))
    if "task" not in (config or {}) and not isinstance(config, ErasureConfig):
        cfg = cfg.model_copy(update={"task": train.task})
    dev = resolve_device(device) if device is not None else params_device(model)
    work = model if dev == params_device(model) else copy.deepcopy(model).to(dev)
    state = ErasureState.prepare(work, train, cfg)
    return Prepared(state, train, hold)


def _utility_sets(
    prepared: Prepared, forget: ArrayDataset, seed: int
) -> tuple[ArrayDataset, ArrayDataset | None]:
    """A retain sample and the held-out samples of classes that keep training samples."""
    left = prepared.remaining_ids
    keep = left[~torch.isin(left, forget.ids)]
    retain = guard_sample(prepared.data.subset(keep), seed=seed)
    hold = prepared.holdout
    if hold is not None and hold.task == "multiclass":
        kept = torch.isin(hold.y, torch.unique(prepared.data.subset(keep).y))
        hold = hold.subset(hold.ids[kept]) if bool(kept.any()) else None
    return retain, hold


def erase(
    model: nn.Module,
    prepared: Prepared,
    ids: Any,
    *,
    eps: float | str = "auto",
    utility_budget: float | None = DEFAULT_UTILITY_BUDGET,
    allow_utility_loss: bool = False,
    seed: int = 0,
) -> Erased:
    """Erase the training samples ``ids`` from ``model`` with one SSSE step.

    Returns the erased model and the new state; ``model`` and ``prepared`` are unchanged,
    also when the request is refused (unknown or already erased ids, another model, a step
    over the utility budget).
    """
    ids_t = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids_t.numel() == 0:
        raise ConfigError("no sample ids to erase")
    forget = prepared.data.subset(ids_t, name="erased")
    request = prepared.state.request(model, forget)
    retain, hold = _utility_sets(prepared, forget, seed)
    if eps == "auto":
        if prepared.holdout is None or not len(prepared.holdout):
            raise DataError(
                "eps='auto' compares the erased samples' losses with held-out samples: give "
                "held-out data (a split with val/test, or holdout=) or a number for eps"
            )
        match = matched_holdout(forget, prepared.holdout)
        choice = loss_matching_rule(
            request,
            forget,
            match if len(match) else prepared.holdout,
            DEFAULT_GRID,
            retain=retain,
            max_retain_drop=AUTO_MAX_RETAIN_DROP,
        )
        eps_value, rule = choice.eps, "auto (loss matching, guarded)"
    elif isinstance(eps, int | float) and not isinstance(eps, bool):
        eps_value, rule = float(eps), "given"
    else:
        raise ConfigError(f"eps must be a number or 'auto', got {eps!r}")
    candidate = request.apply(eps_value)
    sets = {"retain": retain, "holdout": hold, "erased": forget}
    acc = {
        k: {"before": evaluate_accuracy(model, d), "after": evaluate_accuracy(candidate, d)}
        for k, d in sets.items()
        if d is not None and len(d)
    }
    if utility_budget is not None and not allow_utility_loss:
        over = {
            k: a["before"] - a["after"]
            for k, a in acc.items()
            if k != "erased" and a["before"] - a["after"] > utility_budget
        }
        if over:
            lost = ", ".join(f"{k} accuracy drops by {100 * d:.1f} points" for k, d in over.items())
            raise UtilityBudgetError(
                f"erasing with ε = {eps_value:g} costs more than the utility budget of "
                f"{100 * utility_budget:.1f} points ({lost}); nothing was changed. Pass a "
                "smaller eps, raise the budget, or allow the loss explicitly "
                "(--allow-utility-loss, allow_utility_loss=True)"
            )
    new_model, new_state = request.commit(eps_value)
    entry = dict(new_state.ledger[-1])
    return Erased(
        new_model,
        Prepared(new_state, prepared.data, prepared.holdout),
        eps_value,
        rule,
        acc,
        entry,
        {"eps": eps_value, "eps_rule": rule, "k": entry["k"], "request": entry["request"]},
    )


def load_prepared(path: str | Path, model: Saved) -> Prepared:
    """The erasure state saved at ``path`` for the saved ``model`` (checked to apply to it),
    with the model's training data and held-out data (from its manifest)."""
    state = ErasureState.load(path, model.model)
    return Prepared(state, model.fit_on, model.split.holdout)
