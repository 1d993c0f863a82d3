"""``evaluate``: one unlearned model against its original and its retrain (the one suite).

The metrics are the registered ones of :mod:`unlearnkit.metrics`, computed by
:func:`unlearnkit.evaluation.suite.evaluate_models` (printed nested by
:func:`~unlearnkit.evaluation.report_eval.evaluate_unlearned`): RA / FA / VA / TA / UA,
retention and RetDev, parameter distances, population MIAs, SVC MIA-efficacy, RTE. With saved
models the data come from the unlearned model's manifest, and the three models must belong
together (:func:`unlearnkit.artifacts.check_reference`): the same dataset, parameters and
split; the original an ancestor of the model; the retrain trained (not unlearned) without the
same forget set, not the original and not the model itself. A mismatch raises
:class:`~unlearnkit.errors.StateMismatchError` naming what differs.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearnkit.api.inputs import as_split
from unlearnkit.api.saved import Saved
from unlearnkit.artifacts import check_reference, manifest_plan
from unlearnkit.data.plan import Split
from unlearnkit.errors import ConfigError
from unlearnkit.evaluation.report_eval import evaluate_unlearned


def evaluation_split(model: Saved, original: nn.Module | Saved) -> Split:
    """The parts a saved unlearned model is judged on: seen from its original when that was
    itself unlearned (:meth:`Split.since`), else the model's own split."""
    split = model.split
    if isinstance(original, Saved) and split.plan is not None:
        earlier = manifest_plan(original.manifest, "the original")
        if earlier.removed:
            return split.since(earlier)
    return split


def evaluate(
    model: nn.Module | Saved,
    split: Split | Any = None,
    *,
    original: nn.Module | Saved,
    retrain: nn.Module | Saved,
    method_seconds: float | None = None,
    retrain_seconds: float | None = None,
) -> dict[str, Any]:
    """Every per-model metric of the unlearned ``model`` vs ``original`` and ``retrain``.

    ``split``: the data with the forget set that was removed (default: the saved unlearned
    model's manifest). Saved references are checked to belong to ``model`` first. No model is
    modified.
    """
    if isinstance(model, Saved):
        for role, ref in (("original", original), ("retrain", retrain)):
            if isinstance(ref, Saved):
                check_reference(model.manifest, ref.manifest, role)  # type: ignore[arg-type]
    if split is None:
        if not isinstance(model, Saved):
            raise ConfigError("evaluate needs the split, or a saved unlearned model")
        split = evaluation_split(model, original)
    split = as_split(split)
    if not len(split.forget):
        raise ConfigError("the split has no forget set: nothing was unlearned from it")

    def net(m: nn.Module | Saved) -> nn.Module:
        return m.model if isinstance(m, Saved) else m

    def secs(m: nn.Module | Saved, given: float | None) -> float | None:
        return given if given is not None or not isinstance(m, Saved) else m.seconds

    report = evaluate_unlearned(
        net(model),
        net(original),
        net(retrain),
        split.parts(),
        method_seconds=secs(model, method_seconds),
        retrain_seconds=secs(retrain, retrain_seconds),
    )
    report["inputs"] = {
        k: str(m.path)
        for k, m in (("unlearned", model), ("original", original), ("retrain", retrain))
        if isinstance(m, Saved)
    }
    if split.plan is not None or split.after is not None:
        report["inputs"]["data"] = (split.after or split.plan).describe()  # type: ignore[union-attr]
    return report
