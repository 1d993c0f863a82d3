"""SSSE as a zoo method: prepare the Fisher inverse on retain ∪ forget, erase the forget set.

Timing covers both the one-off preparation (curvature rows + factorisation over the whole
training set) and the erasure step, so the row is comparable with methods that have no
precomputation; ``info`` reports the two parts separately (erasure alone is what a deployed
state pays per deletion request).

ε: ``eps="auto"`` (the default) is the engine's own (:meth:`ErasureRequest.commit`) within
the utility budget ``max_retain_drop``, with the validation set as held-out data and the rule
``eps_rule``: ``by_kind`` (default) = :func:`~unlearnkit.ssse.request.auto_rule_for`
(``class_erased`` when the forget set is whole classes, ``retained_loss`` otherwise, as the
facade); or one rule by name; ``class_forgetting`` picks ε by the class-forgetting rule of
:mod:`unlearnkit.ssse.eps`; a number is used as given.

Every other default (curvature, damping, blocks, group size, mode, solver) is
:class:`~unlearnkit.ssse.config.ErasureConfig`'s, so the zoo row and ``prepare`` agree.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import optuna
import torch
from pydantic import Field, field_validator

from unlearnkit.data.base import concat
from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.base import METHODS, MethodConfig, UnlearnData, Unlearner
from unlearnkit.ssse.config import ErasureConfig, check_solver
from unlearnkit.ssse.eps import (
    DEFAULT_GRID,
    class_forgetting_rule,
    guard_sample,
    matched_holdout,
)
from unlearnkit.ssse.request import auto_rule_for
from unlearnkit.ssse.state import ErasureState

_ENGINE = ErasureConfig()
"""The engine's defaults, which the zoo method shares."""


class SSSEConfig(MethodConfig):
    eps: float | Literal["auto"] = Field(
        "auto", description="step scale ε (SSSE eq. 4), or 'auto' (a guarded retrain-free rule)"
    )
    eps_rule: Literal[
        "by_kind", "retained_loss", "loss_matching", "class_erased", "class_forgetting"
    ] = Field("by_kind", description="the rule eps='auto' uses (by_kind: as the facade)")
    max_retain_drop: float = Field(0.01, ge=0, le=1, description="utility guard of the ε rules")
    curvature: Literal["empirical", "true", "ggn"] = _ENGINE.curvature
    damping: float = Field(_ENGINE.damping, gt=0)
    group_size: int = Field(_ENGINE.group_size, ge=1, description="rows are means of g gradients")
    blocks: Literal["full", "per_layer", "chunks", "per_output_head"] = _ENGINE.blocks
    block_size: int | None = Field(None, ge=1, description="for blocks='chunks'")
    mode: Literal["paper", "exact"] = _ENGINE.mode
    solver: str = Field(_ENGINE.solver, description="a registered Fisher-inverse solver")

    @field_validator("eps")
    @classmethod
    def _positive(cls, v: float | str) -> float | str:
        if v != "auto" and not (isinstance(v, float | int) and 0 < v < float("inf")):
            raise ValueError(f"eps must be 'auto' or a positive finite number, got {v!r}")
        return v

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, v: str) -> str:
        return check_solver(v)


@METHODS.register("ssse")
class SSSE(Unlearner):
    """Single-step sample erasure (Peste, Alistarh & Lampert 2021), over unlearnkit's engine."""

    name = "Single-Step Sample Erasure"
    abbreviation = "SSSE"
    family = "closed form"
    paper = "Peste, Alistarh & Lampert, arXiv 2107.03860 (2021)"
    uses = ("retain", "forget")
    Config = SSSEConfig

    def run(
        self,
        model: torch.nn.Module,
        data: UnlearnData,
        config: MethodConfig,
        generator: torch.Generator,
    ) -> torch.nn.Module:
        assert isinstance(config, SSSEConfig)
        if config.eps == "auto" and data.val is None:
            raise UnsupportedError(
                "SSSE with eps='auto' needs validation data (held-out samples); "
                "pass data.val or a fixed eps"
            )
        model.eval()
        train_set = concat([data.retain, data.forget])
        opts: dict[str, Any] = {"size": config.block_size} if config.blocks == "chunks" else {}
        cfg = ErasureConfig(
            task=train_set.task,
            curvature=config.curvature,
            damping=config.damping,
            group_size=config.group_size if config.curvature == "empirical" else 1,
            blocks=config.blocks,
            block_options=opts,
            mode=config.mode,
            solver=config.solver,
        )
        t0 = time.perf_counter()
        state = ErasureState.prepare(model, train_set, cfg)
        t1 = time.perf_counter()
        request = state.request(model, data.forget)
        eps = config.eps
        if eps == "auto" and config.eps_rule != "class_forgetting":
            # the engine's own "auto": the guarded rule, within the utility budget
            out, after = request.commit(
                "auto",
                holdout=data.val,
                retain_sample=data.retain,
                utility_budget=config.max_retain_drop,
                auto_rule=(
                    auto_rule_for(data.forget, data.retain)
                    if config.eps_rule == "by_kind"
                    else config.eps_rule
                ),
            )
            eps = after.ledger[-1]["eps"]
        else:
            if eps == "auto":  # class forgetting: an explicit alternative rule
                holdout = matched_holdout(data.forget, data.val)
                guard = guard_sample(data.retain)
                eps = class_forgetting_rule(
                    request, holdout, DEFAULT_GRID, guard, config.max_retain_drop
                ).eps
            out = request.apply(eps)
        self.run_info.update(
            prepare_seconds=t1 - t0,
            erase_seconds=time.perf_counter() - t1,
            eps=eps,
            solvers=state.inverse.describe().splitlines()[0],
        )
        return out

    def search_space(self, max_epochs: int = 10) -> dict[str, Any]:
        return {
            "eps": optuna.distributions.FloatDistribution(1e-2, 1e2, log=True),
            "damping": optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True),
        }
