"""unlearnkit: machine unlearning for PyTorch.

Erase training samples from a trained model (SSSE closed-form erasure, the Deep Unlearn
method zoo) and show that the erasure worked (accuracy, membership inference, U-LiRA)::

    import unlearnkit as uk
    split = uk.plan("digits", forget="class:3", split_seed=3)    # or uk.split_of(your data)
    orig = uk.train("mlp", split, "sgd", seed=0).model            # or your own nn.Module
    prepared = uk.prepare(orig, split)                             # SSSE state, once
    erased = prepared.erase(orig, split.forget.ids)                # eps="auto", utility budget
    retrain = uk.train("mlp", split, "sgd", seed=0, on="retain").model
    report = uk.evaluate(erased.model, split, original=orig, retrain=retrain)
    uk.save(erased, "runs/erased")                                 # manifest with the data plan

Importing the package registers every method, model, dataset and recipe.
"""

from unlearnkit._version import __version__
from unlearnkit.api import (
    DEFAULT_UTILITY_BUDGET,
    DataPlan,
    Erased,
    LogitsOnly,
    Prepared,
    Saved,
    Split,
    Trained,
    Unlearned,
    UserAudit,
    as_classifier,
    as_dataset,
    as_split,
    audit,
    erase,
    evaluate,
    load,
    plan,
    prepare,
    save,
    split_of,
    train,
    unlearn,
)
from unlearnkit.ssse import ErasureConfig

__all__ = [
    "DEFAULT_UTILITY_BUDGET",
    "DataPlan",
    "ErasureConfig",
    "Erased",
    "LogitsOnly",
    "Prepared",
    "Saved",
    "Split",
    "Trained",
    "Unlearned",
    "UserAudit",
    "__version__",
    "as_classifier",
    "as_dataset",
    "as_split",
    "audit",
    "erase",
    "evaluate",
    "load",
    "plan",
    "prepare",
    "save",
    "split_of",
    "train",
    "unlearn",
]
