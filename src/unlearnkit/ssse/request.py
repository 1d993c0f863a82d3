"""One erasure request: the direction Δ = F⁻¹v, ε chosen safely, a utility budget, the ledger.

The direction does not depend on ε (SSSE eq. 4, θ_{t+1} = θ_t + ε/(n_t − k)·Δ), so a request
evaluates any ε with forward passes only. :meth:`ErasureRequest.commit` is safe by default:

* ``eps="auto"`` (default): the retrain-free rule :data:`DEFAULT_AUTO_RULE`,
  ``retained_loss`` (:func:`unlearnkit.ssse.eps.retained_loss_rule`) — retraining minimises
  the retained objective, so ε* = argmin_ε of the loss on a seeded sample of the retained data
  along the step, refined by golden section in log ε, among the ε that do not raise the loss
  on held-out samples not of the erased kind by more than 5 %. ``auto_rule="loss_matching"``
  keeps the earlier rule (ε* = argmin over the grid of the KS distance between the losses on
  S and on held-out samples of the same kind, within the utility budget). Why retained_loss:
  docs/results/ssse/eps_rules.md (convex: γ_S near the oracle in 13/48 cases against 2/48,
  distance 0.44 against 0.88; poisoned labels on mnist5k/CNN: class accuracy 0.77 → 0.94,
  Retrain 0.97, where loss_matching stays at ε = 1e-4). Either needs ``holdout`` (data the
  model never trained on, e.g. a test split) and ``retain_sample`` (retained training samples;
  a seeded subset of 1 000 is used); without them it raises
  :class:`~unlearnkit.errors.ConfigError` rather than falling back to ε = 1.
  ``auto_rule="class_erased"`` is for requests that remove whole classes
  (:func:`auto_rule_for` picks it, from the whole retained set, in the facade and the zoo's
  SSSE): the smallest ε at which no held-out or erased sample of those classes is predicted
  as its class any more (:func:`unlearnkit.ssse.eps.class_erased_rule`), within the budget.
* **utility budget**: after ε is chosen (or given), the accuracy on ``retain_sample`` and on
  the held-out samples *not* of the erased kind (other classes; when there are any) before
  (the input model) and after is compared; a drop larger than ``utility_budget`` (absolute,
  default 0.02) raises :class:`~unlearnkit.errors.UtilityBudgetError`, leaving the model and
  the state unchanged, unless ``allow_utility_loss=True``. With a fixed ε and neither data set
  given, nothing can be measured and the ledger records ``"utility": null``.

The ledger entry records ε, its rule, the searched grid (range and scores) and the rule's
``diagnostics`` (its ``extra``: criterion, bracket, losses, …), the accuracies and
the curvature's ``structure`` / ``scales_basis``. Both state kinds (exact rows,
:mod:`unlearnkit.ssse.state`; Kronecker factors, :mod:`unlearnkit.ssse.kronecker`) build an
:class:`ErasureRequest` and commit through it: one ε, utility-budget and ledger path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from torch import Tensor, nn

from unlearnkit.curvature.layout import with_params
from unlearnkit.data.base import ArrayDataset, concat
from unlearnkit.errors import ConfigError, UtilityBudgetError
from unlearnkit.io import model_fingerprint
from unlearnkit.ssse.eps import (
    DEFAULT_GRID,
    EpsChoice,
    class_erased_rule,
    guard_sample,
    loss_matching_rule,
    matched_holdout,
    retained_loss_rule,
)
from unlearnkit.tasks import get_task
from unlearnkit.training import evaluate_accuracy

#: Largest accepted absolute accuracy drop (retained / held-out) of one erasure step.
DEFAULT_UTILITY_BUDGET = 0.02
#: Size of the seeded retained-data subset used by the ε guard and the utility budget.
GUARD_SIZE = 1000

Eps = float | Literal["auto"]
#: Retrain-free rules ``eps="auto"`` can use (``auto_rule``).
AUTO_RULES = ("retained_loss", "loss_matching", "class_erased")
#: The rule ``eps="auto"`` uses unless told otherwise (module docstring: why).
DEFAULT_AUTO_RULE = "retained_loss"


def removes_whole_classes(forget: ArrayDataset, retained: ArrayDataset) -> bool:
    """Whether the request erases every training sample of each of its classes: a multiclass
    task and no class of ``forget`` left among ``retained`` (the *whole* remaining training
    set, not a sample of it, or a rare class left behind would be missed)."""
    if forget.task != "multiclass" or len(forget) == 0:
        return False
    return not bool(np.isin(forget.y.numpy(), retained.y.numpy()).any())


def auto_rule_for(forget: ArrayDataset, retained: ArrayDataset) -> str:
    """The rule ``eps="auto"`` should use for this request: ``class_erased`` when it removes
    whole classes (:func:`removes_whole_classes`; the retrained model's accuracy on them is
    known to be 0), :data:`DEFAULT_AUTO_RULE` otherwise. The facade and the zoo's SSSE call
    it with the whole retained set; docs/results/ssse/eps_rules.md has the comparison."""
    return "class_erased" if removes_whole_classes(forget, retained) else DEFAULT_AUTO_RULE


def _other_kind(forget: ArrayDataset, holdout: ArrayDataset) -> ArrayDataset | None:
    """Held-out samples not of the erased kind (e.g. other classes), or None when none are."""
    same = get_task(forget.task).same_kind(forget.y, holdout.y)
    if bool(same.all()):
        return None
    return holdout.subset(holdout.ids[~same])


def check_auto_inputs(
    eps: Eps, holdout: ArrayDataset | None, retain_sample: ArrayDataset | None
) -> None:
    """``eps="auto"`` needs held-out and retained data: a ConfigError saying what to pass."""
    if eps != "auto" or (holdout is not None and retain_sample is not None):
        return
    missing = [
        name
        for name, value in (("holdout", holdout), ("retain_sample", retain_sample))
        if value is None
    ]
    raise ConfigError(
        "eps='auto' chooses ε without a retrained model: it matches the losses of the "
        "erased samples to those of held-out samples, keeping retained accuracy within "
        f"the utility budget. Missing: {', '.join(missing)}. Pass holdout=<samples the "
        "model never trained on, e.g. the test split> and retain_sample=<retained "
        "training samples>, or a fixed eps=<number>."
    )


@dataclass(frozen=True)
class ErasureRequest:
    """A validated request: the direction Δ = F⁻¹v, evaluated for any ε without recomputing."""

    state: Any  # the ErasureState it applies to (state.py imports this module)
    model: nn.Module
    forget: ArrayDataset
    theta: Tensor
    delta: Tensor
    scale: float  # 1 / (n_t − k)
    next_erased: Tensor
    seconds: float
    #: the curvature fields of the state after this request (``dataclasses.replace``d into
    #: it on commit): the rows engine's inverse and group bookkeeping, the Kronecker engine's
    #: sums; whatever stores F, ε, the utility budget and the ledger are this one path
    next_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: facts of the curvature recorded in the ledger entry: ``structure`` (rows / kfac /
    #: ekfac) and ``scales_basis`` (EK-FAC: the eigenbasis its scales are in)
    ledger_extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def ids(self) -> Tensor:
        """The ids of the samples this request erases."""
        return self.forget.ids

    def theta_for(self, eps: float) -> Tensor:
        """θ_t + ε/(n_t − k)·Δ (SSSE eq. 4)."""
        if not (isinstance(eps, int | float) and eps == eps and abs(eps) != float("inf")):
            raise ConfigError(f"ε must be a finite number or 'auto', got {eps!r}")
        return self.theta + (eps * self.scale) * self.delta

    def apply(self, eps: float) -> nn.Module:
        """The erased model for scale ε (a new model; the input is unchanged)."""
        return with_params(self.model, self.state.layout, self.theta_for(eps))

    # ------------------------------------------------------------------ choosing ε
    def choose_eps(
        self,
        eps: Eps = "auto",
        *,
        holdout: ArrayDataset | None = None,
        retain_sample: ArrayDataset | None = None,
        utility_budget: float = DEFAULT_UTILITY_BUDGET,
        allow_utility_loss: bool = False,
        grid: Sequence[float] = DEFAULT_GRID,
        auto_rule: str = DEFAULT_AUTO_RULE,
    ) -> EpsChoice:
        """ε and how it was chosen: ``rule="fixed"`` for a number, else the guarded
        ``auto_rule`` (module docstring; ``retained_loss``: the retained-loss line search of
        :func:`~unlearnkit.ssse.eps.retained_loss_rule`, guarded by the loss on the held-out
        samples not of the erased kind). Raises ConfigError when "auto" lacks data."""
        if auto_rule not in AUTO_RULES:
            raise ConfigError(f"auto_rule must be one of {AUTO_RULES}, got {auto_rule!r}")
        if eps != "auto":
            self.theta_for(eps)  # type: ignore[arg-type]  # validates
            return EpsChoice("fixed", float(eps), [float(eps)], [float("nan")], False)
        check_auto_inputs(eps, holdout, retain_sample)
        assert holdout is not None and retain_sample is not None
        if auto_rule == "class_erased":
            return self._class_erased(holdout, retain_sample, utility_budget, grid)
        if auto_rule == "retained_loss":
            guard = guard_sample(retain_sample, GUARD_SIZE)
            other = _other_kind(self.forget, holdout)
            l2 = float(getattr(getattr(self.state, "config", None), "l2", 0.0) or 0.0)
            try:
                return retained_loss_rule(
                    self, guard, other if other is not None else holdout, grid, l2=l2
                )
            except UtilityBudgetError:  # every ε refused by the held-out guard
                if not allow_utility_loss:
                    raise UtilityBudgetError(
                        f"every ε in [{min(grid):g}, {max(grid):g}] raises the held-out loss "
                        "beyond the retained_loss guard; nothing was changed. Pass a fixed ε or "
                        "allow_utility_loss=True."
                    ) from None
                return retained_loss_rule(self, guard, None, grid, l2=l2)
        held = self._matched(holdout, auto_rule)
        guard = guard_sample(retain_sample, GUARD_SIZE)
        try:
            return loss_matching_rule(self, self.forget, held, grid, guard, utility_budget)
        except ConfigError:
            if not allow_utility_loss:
                raise UtilityBudgetError(
                    f"no ε in the grid [{min(grid):g}, {max(grid):g}] keeps the retained accuracy "
                    f"within the utility budget of {utility_budget:g}; nothing was changed. Raise "
                    "utility_budget or pass allow_utility_loss=True."
                ) from None
            return loss_matching_rule(self, self.forget, held, grid)

    def _class_erased(
        self,
        holdout: ArrayDataset,
        retain_sample: ArrayDataset,
        utility_budget: float,
        grid: Sequence[float],
    ) -> EpsChoice:
        """:func:`~unlearnkit.ssse.eps.class_erased_rule` on every sample of the removed
        classes at hand (their held-out samples and the erased ones: a retrained model
        predicts neither as them), guarded by the utility budget on the retained sample."""
        held = self._matched(holdout, "class_erased")
        guard = guard_sample(retain_sample, GUARD_SIZE)
        return class_erased_rule(
            self, concat([held, self.forget]), grid, guard, max_retain_drop=utility_budget
        )

    def _matched(self, holdout: ArrayDataset, rule: str) -> ArrayDataset:
        """The held-out samples of the erased kind (same classes); ConfigError if none."""
        held = matched_holdout(self.forget, holdout)
        if len(held) == 0:
            raise ConfigError(
                f"eps='auto' ({rule}) needs held-out samples of the same kind as the erased "
                "ones (same classes); the given holdout has none"
            )
        return held

    def utility(
        self,
        new_model: nn.Module,
        holdout: ArrayDataset | None,
        retain_sample: ArrayDataset | None,
    ) -> dict[str, Any] | None:
        """Accuracies before (the input model) and after on the retained sample and on the
        held-out data (all of it, and the part not of the erased kind that the budget checks)."""
        sets: dict[str, ArrayDataset] = {}
        if retain_sample is not None:
            sets["retain"] = guard_sample(retain_sample, GUARD_SIZE)
        if holdout is not None:
            sets["holdout"] = holdout
            other = _other_kind(self.forget, holdout)
            if other is not None:
                sets["holdout_other"] = other
        if not sets:
            return None
        out: dict[str, Any] = {}
        for name, data in sets.items():
            out[name] = {
                "before": evaluate_accuracy(self.model, data),
                "after": evaluate_accuracy(new_model, data),
                "n": len(data),
            }
        return out

    # ------------------------------------------------------------------ committing
    def commit(
        self,
        eps: Eps = "auto",
        *,
        holdout: ArrayDataset | None = None,
        retain_sample: ArrayDataset | None = None,
        utility_budget: float = DEFAULT_UTILITY_BUDGET,
        allow_utility_loss: bool = False,
        grid: Sequence[float] = DEFAULT_GRID,
        auto_rule: str = DEFAULT_AUTO_RULE,
    ) -> tuple[nn.Module, Any]:  # (new model, new ErasureState)
        """Choose ε (default "auto"), apply it, check the utility budget, and return the new
        model with the state after this request. On any error nothing is changed."""
        if not 0 <= utility_budget <= 1:
            raise ConfigError(f"utility_budget must be in [0, 1], got {utility_budget}")
        t0 = time.perf_counter()
        choice = self.choose_eps(
            eps,
            holdout=holdout,
            retain_sample=retain_sample,
            utility_budget=utility_budget,
            allow_utility_loss=allow_utility_loss,
            grid=grid,
            auto_rule=auto_rule,
        )
        # "auto" takes the rule's best ε that also fits the budget on every checked set (the
        # rule's own guard sees the retained sample only): its eligible grid points in score order
        order = [choice.eps]
        if eps == "auto" and not allow_utility_loss:
            ranked = sorted(
                (sc if not choice.maximise else -sc, e)
                for e, sc in zip(choice.grid, choice.scores, strict=True)
                if np.isfinite(sc) and e != choice.eps
            )
            order += [e for _, e in ranked]
        for candidate in order:
            new_model = self.apply(candidate)
            utility = self.utility(new_model, holdout, retain_sample)
            checked = {
                k: v["before"] - v["after"]
                for k, v in (utility or {}).items()
                if k in ("retain", "holdout_other")
            }
            over = {k: d for k, d in checked.items() if d > utility_budget}
            if not over or allow_utility_loss:
                break
        if candidate != choice.eps and not over:
            choice.extra["rule_best_eps"] = choice.eps
            choice = dataclasses.replace(choice, eps=float(candidate))
        if over and not allow_utility_loss:
            detail = ", ".join(
                f"{k} accuracy {utility[k]['before']:.4f} → {utility[k]['after']:.4f}"  # type: ignore[index]
                for k in over
            )
            raise UtilityBudgetError(
                f"erasing with ε={choice.eps:g} ({choice.rule}) would cost more than the utility "
                f"budget of {utility_budget:g}: {detail}. Nothing was changed. Use a smaller ε, "
                "raise utility_budget, or accept the loss (allow_utility_loss=True; on the "
                "command line --allow-utility-loss).",
                utility or {},
            )
        step = (choice.eps * self.scale) * self.delta
        finite = [s for s in choice.scores if np.isfinite(s)]
        entry = {
            "request": len(self.state.ledger) + 1,
            "ids": self.ids.tolist(),
            "k": int(self.ids.numel()),
            "eps": float(choice.eps),
            "eps_rule": choice.rule,
            "eps_search": None
            if choice.rule == "fixed"
            else {
                "grid_min": min(choice.grid),
                "grid_max": max(choice.grid),
                "grid": choice.grid,
                "scores": [s if np.isfinite(s) else None for s in choice.scores],
                "eligible": len(finite),
                "rule_best_eps": choice.extra.get("rule_best_eps"),
                "diagnostics": {k: v for k, v in choice.extra.items() if k != "rule_best_eps"},
            },
            "utility": utility,
            "utility_budget": utility_budget,
            "allow_utility_loss": allow_utility_loss,
            "n_before": self.state.n_remaining,
            **self.ledger_extra,
            "step_norm": float(step.norm()),
            "seconds": self.seconds + time.perf_counter() - t0,
            "model_before": self.state.fingerprint,
            "model_after": model_fingerprint(new_model),
            "time": datetime.now(timezone.utc).isoformat(),
        }
        new_state = replace(
            self.state,
            **self.next_fields,
            erased=self.next_erased,
            fingerprint=entry["model_after"],
            ledger=(*self.state.ledger, entry),
        )
        return new_model, new_state
