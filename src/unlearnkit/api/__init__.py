"""The facade: one verb per CLI command, nn.Module in, a result holding a new nn.Module out.

=========================  ==============================  ===================================
verb                       CLI                             returns
=========================  ==============================  ===================================
:func:`plan`               (``--dataset`` options)         :class:`Split`
:func:`train`              ``unlearnkit train``            :class:`Trained`
:func:`unlearn`            ``unlearnkit unlearn``          :class:`Unlearned`
:func:`prepare`            ``unlearnkit prepare``          :class:`Prepared` (``.erase(model, ids)``)
:func:`erase`              ``unlearnkit erase``            :class:`Erased`
:func:`evaluate`           ``unlearnkit evaluate``         a report dict
:func:`audit`              ``unlearnkit audit``            U-LiRA results
:func:`save` / :func:`load`  every command's ``--out``     a manifest path / :class:`Saved`
=========================  ==============================  ===================================

Inputs are never modified; devices are explicit (``device="cpu"`` by default; ``"cuda"``
without a GPU raises :class:`~unlearnkit.errors.DeviceError`); the global RNG states are left
as found.
"""

from unlearnkit.api import catalog
from unlearnkit.api.audit import AuditConfig, UserAudit, audit, write_audit
from unlearnkit.api.erasure import (
    DEFAULT_UTILITY_BUDGET,
    Erased,
    Prepared,
    erase,
    load_prepared,
    prepare,
)
from unlearnkit.api.evaluate import evaluate
from unlearnkit.api.inputs import (
    as_dataset,
    as_split,
    ids_spec,
    plan,
    preserved_rng,
    resolve_device,
    split_of,
)
from unlearnkit.api.models import LogitsOnly, as_classifier
from unlearnkit.api.saved import (
    Saved,
    check_output,
    check_state_output,
    load,
    save,
    write_json,
)
from unlearnkit.api.training import Trained, Unlearned, train, unlearn
from unlearnkit.data.plan import DataPlan, Split

__all__ = [
    "AuditConfig",
    "DEFAULT_UTILITY_BUDGET",
    "Erased",
    "LogitsOnly",
    "Prepared",
    "Saved",
    "DataPlan",
    "Split",
    "Trained",
    "Unlearned",
    "UserAudit",
    "as_classifier",
    "catalog",
    "as_dataset",
    "as_split",
    "audit",
    "check_output",
    "check_state_output",
    "ids_spec",
    "erase",
    "evaluate",
    "load",
    "load_prepared",
    "plan",
    "prepare",
    "preserved_rng",
    "resolve_device",
    "save",
    "split_of",
    "train",
    "unlearn",
    "write_audit",
    "write_json",
]
