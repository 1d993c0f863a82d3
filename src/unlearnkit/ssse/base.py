"""What every erasure state shares, whatever stores its curvature: the sample ids and the
erased mask, the model the state applies to, request validation and the save's
compare-and-swap. Used by :class:`~unlearnkit.ssse.state.ErasureState` (exact rows) and
:class:`~unlearnkit.ssse.kronecker.KroneckerState` (Kronecker factors).

A state class using :class:`StateBase` has the fields ``layout`` (:class:`ParamLayout`),
``sample_ids`` ((n,) int64), ``erased`` ((n,) bool), ``fingerprint``, ``ledger`` and
``state_id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from unlearnkit.curvature.layout import ParamLayout
from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import (
    AlreadyErasedError,
    ConfigError,
    StateMismatchError,
    UnknownIdsError,
)
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse.eps import DEFAULT_GRID
from unlearnkit.ssse.request import (
    DEFAULT_AUTO_RULE,
    DEFAULT_UTILITY_BUDGET,
    Eps,
    ErasureRequest,
    check_auto_inputs,
)
from unlearnkit.ssse.rows import SampleData


def canonical(entry: Any) -> str:
    """A ledger entry as canonical JSON (in memory and read back compare equal)."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), default=str)


class StateBase:
    """Ids, ledger mask and model checks of an erasure state (a mixin of frozen dataclasses)."""

    layout: ParamLayout
    sample_ids: Tensor
    erased: Tensor
    fingerprint: str
    ledger: tuple[dict[str, Any], ...]
    state_id: str

    @property
    def n(self) -> int:
        return int(self.sample_ids.numel())

    def request(self, model: nn.Module, forget: SampleData) -> ErasureRequest:
        raise NotImplementedError  # each state kind builds its own direction

    def erase(
        self,
        model: nn.Module,
        forget: SampleData,
        eps: Eps = "auto",
        *,
        holdout: ArrayDataset | None = None,
        retain_sample: ArrayDataset | None = None,
        utility_budget: float = DEFAULT_UTILITY_BUDGET,
        allow_utility_loss: bool = False,
        grid: Sequence[float] = DEFAULT_GRID,
        auto_rule: str = DEFAULT_AUTO_RULE,
    ) -> tuple[nn.Module, Any]:
        """Erase ``forget``: returns (new model, new state of the same kind); inputs unchanged.

        ``eps="auto"`` (default) needs ``holdout`` and ``retain_sample``; the step is refused
        (:class:`~unlearnkit.errors.UtilityBudgetError`) when it costs more accuracy than
        ``utility_budget`` unless ``allow_utility_loss`` (see
        :meth:`~unlearnkit.ssse.request.ErasureRequest.commit`).
        """
        check_auto_inputs(eps, holdout, retain_sample)  # before the (costly) direction
        return self.request(model, forget).commit(
            eps,
            holdout=holdout,
            retain_sample=retain_sample,
            utility_budget=utility_budget,
            allow_utility_loss=allow_utility_loss,
            grid=grid,
            auto_rule=auto_rule,
        )

    @property
    def n_remaining(self) -> int:
        return int((~self.erased).sum())

    @property
    def erased_ids(self) -> Tensor:
        return self.sample_ids[self.erased]

    def check_model(self, model: nn.Module) -> None:
        """The model must have this state's layout and be the model the state applies to."""
        try:
            layout = ParamLayout.from_model(model)
        except Exception as e:  # noqa: BLE001 - reported as a mismatch
            raise StateMismatchError(f"model does not match the erasure state: {e}") from None
        if layout != self.layout:
            raise StateMismatchError(
                "model parameters do not match the erasure state (different architecture or "
                f"parameter shapes: state has {len(self.layout.names)} tensors, d={self.layout.d}; "
                f"model has {len(layout.names)}, d={layout.d})"
            )
        fp = model_fingerprint(model)
        if fp != self.fingerprint:
            raise StateMismatchError(
                "this model is not the one the erasure state applies to (weights fingerprint "
                f"{fp[:12]} ≠ {self.fingerprint[:12]}); load the model that the last erase "
                "returned, or prepare a new state for this model"
            )

    def positions(self, ids: Tensor) -> Tensor:
        """Positions of ``ids`` among the training ids; unknown, repeated or erased ids raise."""
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if ids.numel() == 0:
            raise ConfigError("an erasure request needs at least one sample id")
        if torch.unique(ids).numel() != ids.numel():
            raise ConfigError("the erasure request repeats sample ids")
        order = torch.argsort(self.sample_ids)
        sorted_ids = self.sample_ids[order]
        idx = torch.searchsorted(sorted_ids, ids).clamp(max=self.n - 1)
        found = sorted_ids[idx] == ids
        if not bool(found.all()):
            raise UnknownIdsError(
                f"{int((~found).sum())} id(s) are not training samples of this state: "
                f"{ids[~found][:10].tolist()}"
            )
        pos = order[idx]
        already = self.erased[pos]
        if bool(already.any()):
            raise AlreadyErasedError(
                f"{int(already.sum())} id(s) were already erased: {ids[already][:10].tolist()}"
            )
        if int(ids.numel()) >= self.n_remaining:
            raise ConfigError("cannot erase every remaining training sample")
        return pos

    def _check_replace(self, on_disk: dict[str, Any] | None) -> None:
        """Refuse to replace a state of this lineage that this one does not descend from."""
        if on_disk is None or on_disk.get("state_id", "") != self.state_id:
            return
        theirs = [canonical(e) for e in on_disk.get("ledger") or []]
        ours = [canonical(e) for e in self.ledger]
        if ours[: len(theirs)] != theirs:
            raise StateMismatchError(
                f"the erasure state on disk changed since this one was loaded (it records "
                f"{len(theirs)} request(s) this state does not descend from; another process "
                "erased from it?); nothing was written: load it again and repeat the request"
            )


def choice_line(notes: dict[str, Any]) -> str:
    """``"\\nstructure: <why>"`` when ``structure="auto"`` chose the structure, else ``""``."""
    choice = notes.get("structure_choice")
    if not choice:
        return ""
    return f"\nstructure {choice['chosen']} (chosen by auto): {choice['reason']}"
