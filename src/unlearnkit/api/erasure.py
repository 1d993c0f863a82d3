"""``prepare`` and ``erase``: SSSE with sample ids, the retrain-free ε and the utility budget.

:func:`prepare` builds the erasure state once (:class:`~unlearnkit.ssse.ErasureState`, with
:class:`~unlearnkit.ssse.ErasureConfig`'s defaults unless told otherwise) and keeps the
training data and held-out data beside it, so that later requests name sample ids only
(:meth:`Prepared.erase`). Each request is the engine's
(:meth:`ErasureState.erase`): the direction Δ = F⁻¹v, ε (``"auto"`` by default: the guarded
retrain-free rule, no retrained model), and the utility budget: accuracy on a retained sample
and on held-out data of the kinds not erased may drop by at most ``utility_budget`` (0.02),
else :class:`~unlearnkit.errors.UtilityBudgetError` and nothing changes. ε's rule, search and
the accuracies before / after are recorded in the state's ledger entry.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.api.inputs import as_dataset, ids_spec, resolve_device, sample_ids
from unlearnkit.api.models import params_device
from unlearnkit.api.saved import Saved, derived_provenance
from unlearnkit.api.training import fitted_split
from unlearnkit.data.base import DatasetLike
from unlearnkit.data.forget import make_forget_spec, select_forget
from unlearnkit.data.plan import Split
from unlearnkit.errors import ConfigError
from unlearnkit.manifest import Provenance
from unlearnkit.ssse import ErasureConfig, load_state, prepare_state
from unlearnkit.ssse.eps import guard_sample
from unlearnkit.ssse.request import DEFAULT_AUTO_RULE, DEFAULT_UTILITY_BUDGET, auto_rule_for
from unlearnkit.ssse.structure import AnyState
from unlearnkit.training import evaluate_accuracy


@dataclass(frozen=True)
class Prepared:
    """An erasure state, the training data it was prepared on, and held-out data for ε."""

    state: AnyState  # ErasureState (rows) or KroneckerState (kfac / ekfac)
    data: DatasetLike
    holdout: DatasetLike | None = None

    @property
    def remaining_ids(self) -> torch.Tensor:
        """Training ids not erased yet."""
        return self.state.sample_ids[~self.state.erased]

    def remaining(self) -> DatasetLike:
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
    """The erased model, the prepared state after the request, ε and the ledger entry."""

    model: nn.Module
    prepared: Prepared
    source: nn.Module | Saved
    entry: dict[str, Any] = field(default_factory=dict)
    erased_accuracy: dict[str, float] = field(default_factory=dict)

    @property
    def state(self) -> AnyState:
        return self.prepared.state

    @property
    def eps(self) -> float:
        return float(self.entry["eps"])

    @property
    def eps_rule(self) -> str:
        return str(self.entry["eps_rule"])

    @property
    def accuracy(self) -> dict[str, dict[str, float]]:
        """Accuracy before / after on the retained sample, the held-out data (all, and the
        kinds not erased that the budget checks) and the erased samples themselves."""
        out = dict(self.entry.get("utility") or {})
        if self.erased_accuracy:
            out["erased"] = self.erased_accuracy
        return out

    def save_args(self) -> tuple[Split | None, Provenance, dict[str, Any], Path | None]:
        """Data: the source's split with this request's ids removed (for a saved source:
        the plan of a model they were removed from), provenance ``erase`` with ε."""
        prov = derived_provenance("erase", self.source, method="ssse", eps=self.eps)
        data = None
        if isinstance(self.source, Saved):
            erased = self.source.split.with_forget(ids_spec(self.entry["ids"]))
            data = fitted_split(erased, "retain")
        record = {k: v for k, v in self.entry.items() if k != "ids"}
        parent = self.source.path if isinstance(self.source, Saved) else None
        return data, prov, {"erasure": record}, parent


def prepare(
    model: nn.Module | Saved,
    data: Split | Any = None,
    config: ErasureConfig | dict[str, Any] | None = None,
    *,
    holdout: Any = None,
    device: str | torch.device | None = None,
) -> Prepared:
    """Compute and invert the curvature of ``model``'s training data (once).

    ``data``: a :class:`~unlearnkit.data.plan.Split` (the data the model was fit to; its val /
    test become the held-out data for ``eps="auto"``), the user's own training data (Dataset,
    DataLoader, tensors; streamed when large), or nothing for a saved model (its manifest's
    split). ``device``: where the state is computed (default: the model's device).
    ``config={"structure": "kfac"}`` (or ``ekfac``, ``auto``) keeps Kronecker factor sums
    instead of rows (:mod:`unlearnkit.ssse.structure`).
    """
    net = model.model if isinstance(model, Saved) else model
    if data is None:
        if not isinstance(model, Saved):
            raise ConfigError("prepare needs the model's training data (or a saved model)")
        data = model.split
    if isinstance(data, Split):
        train, hold = data.fit_on, data.holdout
    else:
        train, hold = as_dataset(data, name="train"), None
    if holdout is not None:
        hold = as_dataset(holdout, task=train.task, classes=train.classes, name="holdout")
    if isinstance(config, ErasureConfig):
        given = config.model_dump(exclude_unset=True)
    else:
        given = dict(config or {})
    cfg = ErasureConfig(**{"task": train.task, **given})
    if cfg.group_size > len(train):
        raise ConfigError(
            f"group_size={cfg.group_size} is larger than the {len(train)} training samples; "
            "use a group size of at most the number of samples"
        )
    dev = resolve_device(device) if device is not None else params_device(net)
    work = net if dev == params_device(net) else copy.deepcopy(net).to(dev)
    return Prepared(prepare_state(work, train, cfg), train, hold)


def erase(
    model: nn.Module | Saved,
    prepared: Prepared,
    ids: Any,
    *,
    eps: float | str = "auto",
    utility_budget: float = DEFAULT_UTILITY_BUDGET,
    allow_utility_loss: bool = False,
    seed: int = 0,
) -> Erased:
    """Erase the training samples ``ids`` from ``model`` with one SSSE step.

    Returns the erased model and the new state; ``model`` and ``prepared`` are unchanged, also
    when the request is refused (unknown or already erased ids, another model, no held-out
    data for ``eps="auto"``, a step over the utility budget).
    """
    net = model.model if isinstance(model, Saved) else model
    ids_t = sample_ids(ids)
    if ids_t.numel() == 0:
        raise ConfigError("no sample ids to erase")
    state = prepared.state
    forget = prepared.data.subset(ids_t, name="erased")
    left = state.sample_ids[~state.erased]
    keep = left[~torch.isin(left, ids_t)]
    kept = prepared.data.subset(keep) if keep.numel() else None
    retain = guard_sample(kept, seed=seed) if kept is not None else None
    new_model, new_state = state.erase(
        net,
        forget,
        eps,
        holdout=prepared.holdout,
        retain_sample=retain,
        utility_budget=utility_budget,
        allow_utility_loss=allow_utility_loss,
        auto_rule=auto_rule_for(forget, kept) if kept is not None else DEFAULT_AUTO_RULE,
    )
    after = Prepared(new_state, prepared.data, prepared.holdout)
    erased = {
        "before": evaluate_accuracy(net, forget),
        "after": evaluate_accuracy(new_model, forget),
    }
    return Erased(new_model, after, model, dict(new_state.ledger[-1]), erased)


def load_prepared(path: str | Path, model: Saved) -> Prepared:
    """The erasure state saved at ``path`` for the saved ``model`` (checked to apply to it),
    with the model's training data and held-out data (from its manifest)."""
    state = load_state(path, model.model)
    split = model.split  # the state's samples all lie in the split's train part
    return Prepared(state, split.train.subset(state.sample_ids), split.holdout)
