"""Deterministic training recipes (Original and Retrain), evaluation and prediction.

Two recipes, in the registry :data:`RECIPES`, each a pydantic config with a ``fit`` method:

- ``sgd`` (:class:`SGDRecipe`): Deep Unlearn's recipe for Original and Retrain
  (spec/methods.md §1.4): SGD, lr 0.1, momentum 0.9, weight decay 5e-4, ``CosineAnnealingLR``
  with ``T_max = epochs`` stepped once per epoch, batch size 256, cross-entropy (the task's
  loss, :mod:`unlearnkit.tasks`), data shuffled every epoch by a seeded ``torch.Generator``.
- ``lbfgs`` (:class:`LBFGSRecipe`): for convex models (``linear``, ``logreg``), the minimiser of
  the ℓ2-regularised empirical risk ``J(θ) = (1/n) Σ_i ℓ(f_θ(x_i), y_i) + (l2/2)·‖θ‖²`` (the SSSE
  paper's objective, whose damping equals ``l2``), by full-batch ``torch.optim.LBFGS`` with a
  strong-Wolfe line search in float64, until ``‖∇J(θ)‖₂ <= tol``.

:func:`train` never mutates the model it is given: it trains a deep copy and returns it.

**Retrain.** Retrain is the same recipe, started from the same initial weights with the same
seed, on the retained data only: ``retrain(initial_model, retain, recipe, seed)`` is exactly
``train(initial_model, retain, recipe, seed)``. Because :func:`train` copies its input, keep the
untrained model (or rebuild it with ``build_model(..., seed=s)``) and pass it to both calls.
As in Deep Unlearn, the RNGs are seeded with ``seed`` right before training (default 123), so
data order and augmentation noise are a function of the seed, and only the initial weights
differ between model seeds.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import ConfigError, DataError, NumericalError, UnsupportedError
from unlearnkit.registry import Registry
from unlearnkit.seeding import seed_everything
from unlearnkit.tasks import per_sample_loss, predict


@dataclass
class TrainResult:
    """A trained model (a new object), wall-clock seconds, per-epoch/iteration history.

    ``grad_norm`` is ``‖∇J(θ)‖₂`` of the recipe's regularised full-batch objective at the
    returned weights (L-BFGS always; SGD only with ``report_grad_norm``), ``converged`` whether
    L-BFGS reached ``tol`` (``None`` for SGD).
    """

    model: nn.Module
    seconds: float
    history: list[dict[str, float]]
    grad_norm: float | None = None
    converged: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Fit:
    """What a recipe's ``fit`` reports back to :func:`train`."""

    history: list[dict[str, float]]
    grad_norm: float | None = None
    converged: bool | None = None


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _has(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> bool:
    return any(isinstance(m, kinds) for m in model.modules())


def _param_dtype(model: nn.Module) -> torch.dtype:
    p = next(model.parameters(), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def _param_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# ------------------------------------------------------------------- the objective


def objective(
    model: nn.Module,
    data: ArrayDataset,
    l2: float = 0.0,
    chunk_size: int = 4096,
    backward: bool = True,
) -> float:
    """``J(θ) = (1/n) Σ_i ℓ_i(θ) + (l2/2)·‖θ‖²`` over all of ``data``, in the model's mode.

    Computed in chunks of ``chunk_size`` samples; with ``backward`` the gradient ``∇J`` is
    *accumulated* into ``p.grad`` (zero them first). Inputs are cast to the model's dtype.
    """
    n = len(data)
    if n == 0:
        raise DataError(f"{data.name}: cannot compute a loss on an empty dataset")
    device, dtype = _param_device(model), _param_dtype(model)
    total = 0.0
    for sl in _chunks(n, chunk_size):
        xb = data.x[sl].to(device=device, dtype=dtype)
        yb = data.y[sl].to(device)
        yb = yb.to(dtype) if yb.is_floating_point() else yb
        with torch.set_grad_enabled(backward):
            chunk = per_sample_loss(data.task, model(xb), yb).sum() / n
            if backward:
                chunk.backward()
        total += float(chunk.detach())
    params = [p for p in model.parameters() if p.requires_grad]
    if l2 > 0:
        with torch.set_grad_enabled(backward):
            reg = 0.5 * l2 * sum((p * p).sum() for p in params)
            if backward:
                reg.backward()  # type: ignore[union-attr]
        total += float(reg.detach())  # type: ignore[union-attr]
    return total


def objective_grad_norm(
    model: nn.Module, data: ArrayDataset, l2: float = 0.0, chunk_size: int = 4096
) -> tuple[float, float]:
    """``(J(θ), ‖∇J(θ)‖₂)`` at the current weights (see :func:`objective`); grads are left clean.

    The model's ``.grad`` fields are restored afterwards, so this has no side effect.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [p.grad for p in params]
    for p in params:
        p.grad = None
    try:
        value = objective(model, data, l2, chunk_size, backward=True)
        sq = sum(float((p.grad.double() ** 2).sum()) for p in params if p.grad is not None)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    return value, math.sqrt(sq)


# ------------------------------------------------------------------- augmentation


def _hflip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2 (torchvision RandomHorizontalFlip)."""
    flip = (torch.rand(x.shape[0], generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def _crop4(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by 4 and crop back to H×W at a random offset (torchvision RandomCrop(pad=4)).

    Padding is with zeros of the *normalised* input (the per-channel mean), not black pixels.
    """
    b, _, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (b,), generator=gen).to(x.device)
    ox = torch.randint(0, 9, (b,), generator=gen).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (b, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (b, 1, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


AUGMENTATIONS: Registry[Callable[[torch.Tensor, torch.Generator], torch.Tensor]] = Registry(
    "augmentation"
)
AUGMENTATIONS.register("hflip")(_hflip)
AUGMENTATIONS.register("crop4")(_crop4)


# ------------------------------------------------------------------- recipes


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
    """Mini-batch SGD with momentum, weight decay and a cosine schedule (Deep Unlearn §1.4).

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
        for a in v:
            if a not in AUGMENTATIONS:
                raise ValueError(f"unknown augmentation {a!r}; known: {AUGMENTATIONS.names()}")
        return v

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
        augs = [AUGMENTATIONS.get(a) for a in self.augment]
        has_bn = _has(model, (nn.modules.batchnorm._BatchNorm,))
        dtype = _param_dtype(model)
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
                for aug in augs:
                    xb = aug(xb, gen)
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


# ------------------------------------------------------------------- train / retrain


def _check_outputs(model: nn.Module, data: ArrayDataset) -> None:
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot train on an empty dataset")
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        x = data.x[:2].to(device=_param_device(probe), dtype=_param_dtype(probe))
        out = probe(x)
    if out.dim() != 2 or out.shape[1] != data.num_outputs:
        raise UnsupportedError(
            f"the model outputs shape {tuple(out.shape[1:])} per sample but {data.name} has "
            f"{data.num_outputs} {'classes' if data.task == 'multiclass' else 'attributes'}"
        )


def train(
    model: nn.Module,
    data: ArrayDataset,
    recipe: Recipe | dict[str, Any] | str,
    seed: int = 123,
) -> TrainResult:
    """Train a copy of ``model`` on ``data`` with ``recipe``; ``model`` itself is unchanged.

    Seeds python/numpy/torch with ``seed`` right before training and draws every shuffle and
    augmentation from a ``torch.Generator`` seeded with ``seed``: the same inputs give
    bit-identical weights on the same device. On CUDA, cuDNN is set deterministic.
    """
    recipe = make_recipe(recipe)
    recipe.check(model, data)
    _check_outputs(model, data)
    device = resolve_device(recipe.device)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    work = copy.deepcopy(model).to(device)
    gen = seed_everything(seed)
    sync()
    t0 = time.perf_counter()
    fit = recipe.fit(work, data, gen, device)
    sync()
    seconds = time.perf_counter() - t0
    return TrainResult(
        model=work,
        seconds=seconds,
        history=fit.history,
        grad_norm=fit.grad_norm,
        converged=fit.converged,
        info={"recipe": recipe.model_dump(), "seed": seed, "n": len(data), "device": str(device)},
    )


def retrain(
    initial_model: nn.Module,
    retain: ArrayDataset,
    recipe: Recipe | dict[str, Any] | str,
    seed: int = 123,
) -> TrainResult:
    """The gold standard: the Original's recipe, initial weights and seed, on retain only.

    Identical to ``train(initial_model, retain, recipe, seed)``; pass the *untrained* model
    the Original started from.
    """
    return train(initial_model, retain, recipe, seed)


# ------------------------------------------------------------------- inference


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: ArrayDataset | torch.Tensor,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits of every sample, in eval mode, batched, without gradients; returned on the CPU.

    Inputs are cast to the model's dtype and moved to ``device`` (default: the model's). The
    model's train/eval mode is restored afterwards.
    """
    x = data.x if isinstance(data, ArrayDataset) else data
    dev = torch.device(device) if device is not None else _param_device(model)
    dtype = _param_dtype(model)
    was_training = model.training
    model.eval()
    try:
        outs = [
            model(x[sl].to(device=dev, dtype=dtype)).cpu() for sl in _chunks(len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    if not outs:
        raise DataError("cannot predict on an empty dataset")
    return torch.cat(outs)


def evaluate_accuracy(model: nn.Module, data: ArrayDataset, batch_size: int = 1024) -> float:
    """Top-1 accuracy (multiclass) or mean per-attribute accuracy (multilabel), eval mode.

    Multilabel: ``(1/(n·A)) Σ_i Σ_a 1[1(z_ia > 0) = y_ia]``.
    """
    if len(data) == 0:
        raise DataError(f"{data.name}: cannot evaluate accuracy on an empty dataset")
    pred = predict(data.task, predict_logits(model, data, batch_size))
    return float((pred == data.y.to(pred.dtype)).double().mean())
