"""Configuration of an SSSE erasure state (pydantic, validated).

SSSE (Peste, Alistarh & Lampert 2021) erases a set S of k samples with one step

    θ̂ = θ + ε / N_R · F⁻¹ · Σ_{i∈S} ∇ℓ_i(θ)                       (paper, eq. 4)

with F = λI + (1/N)·Σ_rows r rᵀ block-diagonal (eq. 2–3; λ = ``damping``, N the normaliser)
and N_R = n − k the number of samples that remain.

Two modes:

* ``paper``: F is the curvature of the whole training set D at the θ it was prepared at, and
  never changes (the paper: "we assume H_{-S} ≈ H_D").
* ``exact``: every request first removes S's rows from F (an exact downdate, no pass over the
  data) and renormalises, so the step uses the curvature of D∖S (eq. 1 with H_{-S}). Over a
  sequence of requests, each request starts from the state the previous one left.

``l2`` is the ℓ2 coefficient of the training objective L(θ) = (1/n)Σℓ_i + (l2/2)‖θ‖². With
``regularized_step=True`` the step uses the exact Newton direction of the retained objective,
Σ_{i∈S}(∇ℓ_i + l2·θ) (derivation in docs/ssse.md): with the Gauss–Newton curvature of a convex
GLM, ``exact`` mode, λ = l2 and ε = 1 this is one Newton step on L_{-S} from θ*.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from unlearnkit.errors import ConfigError
from unlearnkit.tasks import get_task


class ErasureConfig(BaseModel):
    """Everything that determines an erasure state (recorded in its manifest)."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field("multiclass", description="a registered task (unlearnkit.tasks.TASKS)")
    curvature: Literal["empirical", "true", "ggn"] = Field(
        "empirical", description="rows of F: empirical Fisher (paper), true Fisher, Gauss-Newton"
    )
    damping: float = Field(1e-4, gt=0, description="λ in F = λI + (1/N)ΣrrT (paper: 1e-4)")
    normalizer: Literal["samples", "rows"] | None = Field(
        None,
        description="N: 'samples' = n (paper eq. 3), 'rows' = number of gradient rows/groups "
        "(WoodFisher); default: samples when group_size == 1, else rows",
    )
    blocks: Literal["full", "per_layer", "chunks", "per_output_head"] = "per_layer"
    block_options: dict[str, Any] = Field(default_factory=dict)
    group_size: int = Field(1, ge=1, description="rows are means over groups of g samples")
    solver: Literal["auto", "dense", "woodbury", "sherman_morrison"] = "auto"
    mode: Literal["paper", "exact"] = "paper"
    l2: float = Field(0.0, ge=0, description="ℓ2 coefficient of the training objective")
    regularized_step: bool = False
    seed: int = 0
    chunk_size: int | None = None
    memory_budget_bytes: int | None = None

    @model_validator(mode="after")
    def _check(self) -> ErasureConfig:
        get_task(self.task)  # ConfigError naming the known tasks
        if self.mode == "exact" and self.curvature == "true":
            raise ConfigError(
                "mode='exact' needs curvature rows that can be recomputed for the erased samples "
                "('empirical' or 'ggn'); the true Fisher's label draws cannot. Use mode='paper'."
            )
        if self.group_size > 1 and self.curvature != "empirical":
            raise ConfigError("group_size > 1 is defined for the empirical Fisher only")
        if self.regularized_step and self.l2 == 0:
            raise ConfigError("regularized_step=True needs the training objective's l2 > 0")
        return self

    @property
    def normalizer_kind(self) -> str:
        if self.normalizer is not None:
            return self.normalizer
        return "samples" if self.group_size == 1 else "rows"
