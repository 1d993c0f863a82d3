"""``evaluate``: one unlearned model against its original and its retrain (the one suite).

The metrics are those of :func:`unlearnkit.evaluation.report_eval.evaluate_unlearned` (RA /
FA / VA / TA / UA, retention and RetDev, parameter distances, population MIAs, SVC
MIA-efficacy, RTE). With saved models (:class:`~.saved.Saved`) the data come from the
unlearned model's manifest, and the three models must belong together:

* the original's weights fingerprint must be the one the unlearned manifest records;
* the original and the retrain must have the unlearned model's data plan;
* a retrain made by ``unlearn`` must record the same forget set; one made by ``train`` on a
  retain set must have been trained on exactly this split's retain ids; an original (trained
  on all training ids) is not a retrain.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from unlearnkit.api.inputs import Split, as_split
from unlearnkit.api.saved import Saved, unlearn_record
from unlearnkit.errors import ConfigError, StateMismatchError
from unlearnkit.evaluation.report_eval import evaluate_unlearned
from unlearnkit.io import ids_hash, model_fingerprint


def _plan_of(saved: Saved) -> dict[str, Any] | None:
    block = saved.manifest.get("data")
    if isinstance(block, dict) and isinstance(block.get("plan"), dict):
        return {k: v for k, v in block["plan"].items() if k not in ("forget", "forget_seed")}
    return None


def _check_family(u: Saved, o: Saved, r: Saved, split: Split) -> None:
    source = unlearn_record(u.manifest).get("source")
    if isinstance(source, dict) and source.get("fingerprint") not in (
        None,
        model_fingerprint(o.model),
    ):
        raise StateMismatchError(
            f"{u.path} was not unlearned from {o.path} (the original's fingerprint differs from "
            "the one recorded in the unlearned manifest)"
        )
    plan = _plan_of(u)
    for role, other in (("original", o), ("retrain", r)):
        theirs = _plan_of(other)
        if plan is not None and theirs is not None and theirs != plan:
            diff = sorted(k for k in plan if plan.get(k) != theirs.get(k))
            raise StateMismatchError(
                f"the {role} {other.path} was trained on another data plan than {u.path} "
                f"(differs in {', '.join(diff)})"
            )
    forget_hash = ids_hash(split.forget.ids)
    for name, man in (("unlearned", u.manifest), ("retrain", r.manifest)):
        recorded = unlearn_record(man).get("forget_ids_hash")
        if recorded is not None and recorded != forget_hash:
            raise StateMismatchError(
                f"the {name} model's manifest records a different forget set than "
                f"{split.forget_spec!r} with seed {split.forget_seed}"
            )
    if not unlearn_record(r.manifest):
        block = r.manifest.get("data")
        trained_on = block.get("train_ids_sha256") if isinstance(block, dict) else None
        if trained_on is not None and trained_on != ids_hash(split.retain.ids):
            raise StateMismatchError(
                f"the retrain {r.path} was not trained on this split's retain set (its training "
                f"ids differ; role {r.role!r}): retrain on the data minus forget "
                f"{split.forget_spec!r}"
            )


def evaluate(
    model: nn.Module | Saved,
    split: Split | Any = None,
    *,
    original: nn.Module | Saved,
    retrain: nn.Module | Saved,
    forget: str | None = None,
    forget_seed: int | None = None,
    method_seconds: float | None = None,
    retrain_seconds: float | None = None,
) -> dict[str, Any]:
    """Every per-model metric of the unlearned ``model`` vs ``original`` and ``retrain``.

    ``split``: the data (with its forget set); default: the unlearned saved model's manifest.
    ``forget`` / ``forget_seed`` replace the forget set. No model is modified.
    """
    saved = [m for m in (model, original, retrain) if isinstance(m, Saved)]
    if split is None:
        if not isinstance(model, Saved):
            raise ConfigError("evaluate needs the split, or a saved unlearned model")
        base = model.split
        if forget is None and base.forget_ids is None:
            raise ConfigError(
                "the unlearned manifest does not record its forget spec; pass --forget (and "
                "--forget-seed)"
            )
        split = base
    split = as_split(split)
    if forget is not None:
        split = split.with_forget(forget, forget_seed if forget_seed is not None else 0)
    elif forget_seed is not None and split.forget_spec is not None:
        split = split.with_forget(split.forget_spec, forget_seed)
    if len(saved) == 3:
        _check_family(model, original, retrain, split)  # type: ignore[arg-type]

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
        **{
            k: str(m.path)
            for k, m in (("unlearned", model), ("original", original), ("retrain", retrain))
            if isinstance(m, Saved)
        },
        "forget": split.forget_spec,
        "forget_seed": split.forget_seed,
    }
    return report
