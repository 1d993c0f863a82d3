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

``structure`` says how F is stored: ``rows`` (default; today's exact rows and block
inverse), ``kfac`` / ``ekfac`` (Kronecker factor sums of :mod:`unlearnkit.curvature.kfac`, the
state of :mod:`unlearnkit.ssse.kronecker`; ``exact`` mode downdates the sums) or ``auto``
(chosen by memory and cost at prepare, :mod:`unlearnkit.ssse.structure`; the manifest records
the choice and why). ``auto`` is not the default: it may pick a Kronecker approximation of F,
which changes the step, so the choice stays explicit.

``l2`` is the ℓ2 coefficient of the training objective L(θ) = (1/n)Σℓ_i + (l2/2)‖θ‖². With
``regularized_step=True`` the step uses the exact Newton direction of the retained objective,
Σ_{i∈S}(∇ℓ_i + l2·θ) (derivation in docs/ssse.md): with the Gauss–Newton curvature of a convex
GLM, ``exact`` mode, λ = l2 and ε = 1 this is one Newton step on L_{-S} from θ*.

``solver`` is any name in :data:`~unlearnkit.curvature.solvers.SOLVERS` (a solver module
registers itself; nothing here lists them). Bad values raise
:class:`~unlearnkit.errors.ConfigError`, never a raw pydantic ``ValidationError``.
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from unlearnkit.curvature.blocks import BLOCK_STRATEGIES
from unlearnkit.curvature.solvers import SOLVERS
from unlearnkit.errors import ConfigError, UnlearnkitError
from unlearnkit.tasks import get_task

#: the largest group of samples averaged into one curvature row (far above any useful value;
#: it keeps the grouping's index tensors from overflowing int64 or exhausting memory)
MAX_GROUP_SIZE = 2**20


class ErasureConfig(BaseModel):
    """Everything that determines an erasure state (recorded in its manifest).

    This class is THE source of SSSE defaults: the CLI's ``prepare``, the zoo method and the
    facade construct ``ErasureConfig()`` and override only what the user set
    (:meth:`defaults_table` lists them with their reasons). The defaults target deep models:

    * ``damping = 1e-3``: the SSSE paper uses 1e-4 for its convex model; with deep nets the
      empirical Fisher has many near-zero directions and a larger λ keeps F⁻¹v (and so the step)
      bounded (the value the zoo method, the demo and the deep reproduction already used).
    * ``group_size = 10`` (empirical Fisher): the paper's "mini-batches of 10 gradients" for
      ResNet20/CIFAR-10 (after WoodFisher); 10× fewer rows, i.e. 10× less memory and a 10×
      cheaper inverse, which is what decides whether a deep model fits at all. Membership is
      recorded, so exact deletion still works. Use 1 for the per-sample Fisher of eq. 2 (and the
      closed-form rows of linear multi-label models). Other curvatures default to 1 (groups are
      defined for the empirical Fisher only).
    * ``mode = "exact"``: each request first removes S's rows from F (no data pass), so a
      sequence of requests uses the Fisher of the data that remain; ``paper`` keeps F of all of
      D. The true Fisher (label draws that cannot be recomputed) defaults to ``paper``.
    * ``curvature = "empirical"``, ``blocks = "per_layer"``, ``solver = "auto"``: the paper's
      estimator and block structure, with the solver chosen per block by cost and memory.
    """

    # no NaN / ±inf in any float field (λ = inf, l2 = nan are refused, not propagated)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    task: str = Field("multiclass", description="a registered task (unlearnkit.tasks.TASKS)")
    curvature: Literal["empirical", "true", "ggn"] = Field(
        "empirical", description="rows of F: empirical Fisher (paper), true Fisher, Gauss-Newton"
    )
    damping: float = Field(1e-3, gt=0, description="λ in F = λI + (1/N)ΣrrT")
    normalizer: Literal["samples", "rows"] | None = Field(
        None,
        description="N: 'samples' = n (paper eq. 3), 'rows' = number of gradient rows/groups "
        "(WoodFisher); default: samples when group_size == 1, else rows",
    )
    blocks: Literal["full", "per_layer", "chunks", "per_output_head"] = "per_layer"
    block_options: dict[str, Any] = Field(default_factory=dict)
    group_size: int = Field(
        10,
        ge=1,
        le=MAX_GROUP_SIZE,
        description="rows are means over groups of g samples (default 10 for the empirical "
        "Fisher, 1 for other curvatures)",
    )
    solver: str = Field(
        "auto", description="a registered Fisher-inverse solver (unlearnkit.curvature.solvers)"
    )
    mode: Literal["paper", "exact"] = Field(
        "exact", description="exact: F of the remaining data (default; paper for curvature=true)"
    )
    l2: float = Field(0.0, ge=0, description="ℓ2 coefficient of the training objective")
    regularized_step: bool = False
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the grouping and sampling")
    chunk_size: int | None = Field(None, ge=1, description="samples per gradient chunk")
    memory_budget_bytes: int | None = Field(
        None, ge=1, description="memory budget in bytes (default: from the machine)"
    )
    structure: Literal["rows", "kfac", "ekfac", "auto"] = Field(
        "rows",
        description="curvature structure: exact rows (default), K-FAC or EK-FAC Kronecker "
        "factors, or auto (chosen by memory and cost)",
    )

    def __init__(self, /, **data: Any) -> None:
        """Validate ``data``; any invalid field raises ConfigError naming it."""
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error("erasure configuration", e) from None

    @field_validator("block_options")
    @classmethod
    def _block_size(cls, v: dict[str, Any]) -> dict[str, Any]:
        size = v.get("size", 1)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"block_options size must be an integer >= 1, got {size!r}")
        return v

    @field_validator("solver")
    @classmethod
    def _known_solver(cls, v: str) -> str:
        return check_solver(v)

    @model_validator(mode="before")
    @classmethod
    def _curvature_defaults(cls, data: Any) -> Any:
        """Defaults that depend on the curvature: groups and exact mode where defined."""
        if isinstance(data, dict):
            curvature = data.get("curvature", "empirical")
            data = dict(data)
            data.setdefault("group_size", 10 if curvature == "empirical" else 1)
            data.setdefault("mode", "paper" if curvature == "true" else "exact")
        return data

    @classmethod
    def defaults_table(cls) -> list[dict[str, Any]]:
        """``[{"name", "default", "description"}]`` for every field (the class docstring gives
        the reasons); curvature-dependent defaults are those of ``curvature="empirical"``."""
        base = cls()
        return [
            {"name": name, "default": getattr(base, name), "description": f.description or ""}
            for name, f in cls.model_fields.items()
        ]

    @model_validator(mode="after")
    def _check(self) -> ErasureConfig:
        get_task(self.task)  # ConfigError naming the known tasks
        check_block_options(self.blocks, self.block_options)
        if self.mode == "exact" and self.curvature == "true" and not self.kronecker:
            raise ConfigError(
                "mode='exact' needs curvature rows that can be recomputed for the erased samples "
                "('empirical' or 'ggn'); the true Fisher's label draws cannot. Use mode='paper' "
                "(or structure='kfac' / 'ekfac', whose label draws are keyed by sample id)."
            )
        if self.group_size > 1 and self.curvature != "empirical":
            raise ConfigError("group_size > 1 is defined for the empirical Fisher only")
        if self.regularized_step and self.l2 == 0:
            raise ConfigError("regularized_step=True needs the training objective's l2 > 0")
        return self

    @property
    def kronecker(self) -> bool:
        """Whether the structure is Kronecker-factored (``kfac`` / ``ekfac``)."""
        return self.structure in ("kfac", "ekfac")

    @property
    def normalizer_kind(self) -> str:
        if self.normalizer is not None:
            return self.normalizer
        return "samples" if self.group_size == 1 else "rows"


def check_block_options(blocks: str, options: dict[str, Any]) -> None:
    """ConfigError unless ``options`` are the keyword arguments the block strategy ``blocks``
    takes (:data:`~unlearnkit.curvature.blocks.BLOCK_STRATEGIES`): e.g. ``chunks`` needs
    ``size``, ``full`` takes none."""
    strategy = BLOCK_STRATEGIES.get(blocks)
    try:
        inspect.signature(strategy).bind(None, **options)
    except TypeError as e:
        raise ConfigError(f"blocks={blocks!r} with block_options {options!r}: {e}") from None


def check_solver(name: str) -> str:
    """``name`` if it is a registered solver, else ConfigError listing the known ones."""
    SOLVERS.get(name)
    return name


def config_error(what: str, err: ValidationError) -> ConfigError:
    """One ConfigError for a pydantic ValidationError: our own errors raised inside a validator
    keep their message; other problems read ``field: message``."""
    parts = []
    for e in err.errors():
        inner = (e.get("ctx") or {}).get("error")
        loc = ".".join(str(x) for x in e["loc"])
        msg = str(inner) if isinstance(inner, UnlearnkitError) else e["msg"]
        parts.append(f"{loc}: {msg}" if loc else msg)
    return ConfigError(f"bad {what}: " + "; ".join(parts))
