"""Training recipes, each a pydantic config with a ``fit`` method, in the registry :data:`RECIPES`.

- ``sgd`` (:class:`SGDRecipe`): Deep Unlearn's recipe for Original and Retrain (Cadet et al.,
  arXiv 2410.01276): SGD, lr 0.1, momentum 0.9, weight decay 5e-4, ``CosineAnnealingLR``
  with ``T_max = epochs`` stepped once per epoch, batch size 256, the task's loss
  (:mod:`unlearnkit.tasks`), data shuffled every epoch by a seeded ``torch.Generator``.
- ``lbfgs`` (:class:`LBFGSRecipe`): for convex models (``linear``, ``logreg``), the minimiser of
  the ℓ2-regularised empirical risk ``J(θ)`` of :mod:`unlearnkit.training.objective` by
  full-batch ``torch.optim.LBFGS`` with a strong-Wolfe line search in float64, until
  ``‖∇J(θ)‖₂ <= tol``.
"""

from __future__ import annotations

import math
import time
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, NumericalError, UnsupportedError
from unlearnkit.registry import Registry
from unlearnkit.tasks import per_sample_loss
from unlearnkit.training.augmentation import check_pipeline, compose
from unlearnkit.training.objective import objective, objective_grad_norm
from unlearnkit.training.predict import param_dtype


@dataclass
class Fit:
    """What a recipe's ``fit`` reports back to :func:`~unlearnkit.training.loop.train`."""

    history: list[dict[str, float]]
    grad_norm: float | None = None
    converged: bool | None = None


def _has(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> bool:
    return any(isinstance(m, kinds) for m in model.modules())


class Recipe(BaseModel, ABC):
    """Base class of training recipes (pydantic; unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    device: str | None = Field(None, description="None: cuda when available, else cpu")

    @abstractmethod
    def fit(
        self, model: nn.Module, data: ArrayDataset, gen: torch.Generator, device: torch.device
    ) -> Fit:
        """Train ``model`` (already a copy, on ``device``) in place."""

    def check(self, model: nn.Module, data: ArrayDataset) -> None:
        """Raise before any work if the recipe cannot train ``model`` on ``data``."""


RECIPES: Registry[type[Recipe]] = Registry("training recipe")


@RECIPES.register("sgd")
class SGDRecipe(Recipe):
    """Mini-batch SGD with momentum, weight decay and a cosine schedule (Deep Unlearn, arXiv 2410.01276).

    Each epoch visits a fresh permutation ``torch.randperm(n, generator=g)``; ``lr_e`` follows
    ``CosineAnnealingLR``: ``lr_e = lr · (1 + cos(π e / epochs)) / 2`` for epoch ``e = 0..``.
    Weight decay is SGD's coupled ``wd·θ`` added to the gradient. For models with BatchNorm, a
    trailing batch of a single sample is skipped (BatchNorm cannot normalise one sample).
    """

    name: Literal["sgd"] = "sgd"
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    nesterov: bool = False
    scheduler: Literal["cosine", "constant"] = "cosine"
    augment: tuple[str, ...] = Field((), description="any of 'hflip', 'crop4' (images only)")
    drop_last: bool = False
    report_grad_norm: bool = False

    @field_validator("augment")
    @classmethod
    def _known_augmentations(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_pipeline(v)

    def check(self, model: nn.Module, data: ArrayDataset) -> None:
        if self.augment and len(data.input_shape) != 3:
            raise UnsupportedError(
                f"augmentations {self.augment} need image data (C, H, W); "
                f"{data.name} has input shape {data.input_shape}"
            )

    def fit(
        self, model: nn.Module, data: ArrayDataset, gen: torch.Generator, device: torch.device
    ) -> Fit:
        opt = torch.optim.SGD(
            model.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )
        sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
            if self.scheduler == "cosine"
            else None
        )
        augment = compose(self.augment)
        has_bn = _has(model, (nn.modules.batchnorm._BatchNorm,))
        dtype = param_dtype(model)
        n, history = len(data), []
        for epoch in range(self.epochs):
            model.train()
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            perm = torch.randperm(n, generator=gen)
            total = torch.zeros((), device=device)
            seen = 0
            for start in range(0, n, self.batch_size):
                idx = perm[start : start + self.batch_size]
                if len(idx) < self.batch_size and (self.drop_last or (has_bn and len(idx) == 1)):
                    continue
                xb = data.x[idx].to(device=device, dtype=dtype)
                xb = augment(xb, gen)
                yb = data.y[idx].to(device)
                yb = yb.to(dtype) if yb.is_floating_point() else yb
                loss = per_sample_loss(data.task, model(xb), yb).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach() * len(idx)
                seen += len(idx)
            mean = float(total) / max(seen, 1)
            if not math.isfinite(mean):
                raise NumericalError(
                    f"SGD diverged in epoch {epoch + 1} (loss {mean}); lower the learning rate"
                )
            if sched is not None:
                sched.step()
            history.append(
                {"epoch": epoch + 1, "loss": mean, "lr": lr, "seconds": time.perf_counter() - t0}
            )
        grad_norm = None
        if self.report_grad_norm:
            model.eval()
            _, grad_norm = objective_grad_norm(model, data, l2=self.weight_decay)
            model.train()
        return Fit(history=history, grad_norm=grad_norm)


@RECIPES.register("lbfgs")
class LBFGSRecipe(Recipe):
    """Full-batch L-BFGS (strong Wolfe) in float64 to the optimum of the ℓ2-regularised risk.

    Minimises ``J(θ) = (1/n) Σ_i ℓ_i(θ) + (l2/2)‖θ‖²`` (every parameter, biases included) and
    stops when ``‖∇J(θ)‖₂ <= tol``. Runs L-BFGS in rounds of ``round_iter`` iterations and
    recomputes the gradient norm exactly after each round (torch's own test is on the max-norm).
    If ``max_iter`` iterations pass first, raises :class:`NumericalError` (``on_fail="raise"``)
    or warns and reports ``converged=False`` (``on_fail="warn"``). For models without
    BatchNorm/Dropout (the objective must be a deterministic function of θ); the model is
    evaluated in eval mode. The result is cast to ``output_dtype`` (``grad_norm`` is measured in
    float64 before the cast).
    """

    name: Literal["lbfgs"] = "lbfgs"
    l2: float = Field(1e-3, ge=0, description="ℓ2 coefficient λ in (λ/2)‖θ‖²")
    tol: float = Field(1e-6, gt=0, description="target ‖∇J‖₂")
    max_iter: int = Field(1000, ge=1)
    round_iter: int = Field(50, ge=1)
    history_size: int = Field(20, ge=1)
    chunk_size: int = Field(8192, ge=1, description="samples per forward pass")
    on_fail: Literal["raise", "warn"] = "raise"
    output_dtype: Literal["float32", "float64"] = "float32"

    def check(self, model: nn.Module, data: ArrayDataset) -> None:
        bad = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)
        if _has(model, bad):
            raise UnsupportedError(
                "the lbfgs recipe needs a deterministic model without BatchNorm or Dropout "
                "(for convex models such as 'linear' and 'logreg'); use the sgd recipe"
            )

    def fit(
        self, model: nn.Module, data: ArrayDataset, gen: torch.Generator, device: torch.device
    ) -> Fit:
        model.to(torch.float64).eval()
        params = [p for p in model.parameters() if p.requires_grad]
        dim = sum(p.numel() for p in params)
        opt = torch.optim.LBFGS(
            params,
            lr=1.0,
            max_iter=self.round_iter,
            tolerance_grad=self.tol / math.sqrt(max(dim, 1)),  # ‖g‖∞ <= tol/√d ⇒ ‖g‖₂ <= tol
            tolerance_change=0.0,
            history_size=self.history_size,
            line_search_fn="strong_wolfe",
        )

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=False)
            value = objective(model, data, self.l2, self.chunk_size)
            return torch.tensor(value, dtype=torch.float64)  # a float32 loss stalls the search

        history: list[dict[str, float]] = []
        iters, converged = 0, False
        value, gnorm = objective_grad_norm(model, data, self.l2, self.chunk_size)
        history.append({"iter": 0, "loss": value, "grad_norm": gnorm})
        converged = gnorm <= self.tol
        while not converged and iters < self.max_iter:
            opt.step(closure)
            state = opt.state[params[0]]
            done = int(state.get("n_iter", 0))
            value, gnorm = objective_grad_norm(model, data, self.l2, self.chunk_size)
            if not (math.isfinite(value) and math.isfinite(gnorm)):
                raise NumericalError(f"L-BFGS produced a non-finite objective ({value}, {gnorm})")
            history.append({"iter": float(done), "loss": value, "grad_norm": gnorm})
            converged = gnorm <= self.tol
            if done == iters:  # no iteration taken: the line search cannot make progress
                break
            iters = done
        for p in params:
            p.grad = None
        if not converged:
            msg = (
                f"L-BFGS stopped at ‖∇J‖₂ = {gnorm:.3e} > tol = {self.tol:.1e} after {iters} "
                "iterations; raise max_iter or l2, or loosen tol"
            )
            if self.on_fail == "raise":
                raise NumericalError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)
        model.to(getattr(torch, self.output_dtype))
        return Fit(history=history, grad_norm=gnorm, converged=converged)


def make_recipe(recipe: Recipe | dict[str, Any] | str) -> Recipe:
    """A recipe from an instance, a name (defaults) or a dict with a ``name`` key."""
    if isinstance(recipe, Recipe):
        return recipe
    cfg = {"name": recipe} if isinstance(recipe, str) else dict(recipe)
    if "name" not in cfg:
        raise ConfigError(f"a recipe needs a 'name' (one of {RECIPES.names()})")
    cls = RECIPES.get(cfg["name"])
    try:
        return cls(**cfg)
    except ValidationError as e:
        raise ConfigError(f"bad {cfg['name']!r} recipe: {e}") from None
