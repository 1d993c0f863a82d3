"""Building blocks shared by the method zoo (spec/methods.md §2.0).

- seeded loaders over :class:`ArrayDataset` (:func:`make_loader`);
- the generic ``G5`` hyper-parameters (:class:`G5Config`) and their Optuna space (:func:`g5_space`),
  plus the other distributions of §2.0 (:func:`lr_dist`, :func:`u01_dist`, ...);
- an SGD builder, cross-entropy and temperature-scaled KL distillation losses;
- a generic epoch loop (:func:`run_epoch`), step/cosine LR factors, frozen teacher copies,
  in-memory snapshots;
- :class:`ZooUnlearner`, an :class:`Unlearner` whose :meth:`check` also refuses non-multiclass or
  empty data before any work.

Everything follows the device of the model's parameters; loaders stay on the CPU and batches are
moved per step, so methods work unchanged on CUDA.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Protocol

import optuna.distributions as od
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Sampler, SequentialSampler, TensorDataset

from unlearnkit.data.base import ArrayDataset
from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.base import MethodConfig, UnlearnData, Unlearner

DEFAULT_MAX_EPOCHS = 10
"""E* of §2.0 (ceil(0.2 · training epochs)) for MNIST/FashionMNIST/UTKFace; CIFAR uses 37."""

BATCH_SIZES: tuple[int, ...] = (64, 128, 256)
"""The BS choices of §2.0."""

Batch = tuple[torch.Tensor, torch.Tensor]


# ----------------------------------------------------------------------------- devices, data


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def num_classes(data: UnlearnData) -> int:
    """Number of classes C (from the retain set's class names)."""
    return data.retain.num_outputs


class PermutationSampler(Sampler[int]):
    """Each pass yields ``torch.randperm(n, generator=generator)``: exactly one draw per pass.

    (``RandomSampler`` also draws one extra permutation when a pass ends.) Without a generator,
    one is seeded from the global torch RNG.
    """

    def __init__(self, n: int, generator: torch.Generator | None = None) -> None:
        self.n = n
        if generator is None:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator

    def __iter__(self) -> Iterator[int]:
        yield from torch.randperm(self.n, generator=self.generator).tolist()

    def __len__(self) -> int:
        return self.n


def make_loader(
    ds: ArrayDataset,
    batch_size: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader yielding ``(x, y)`` CPU batches of ``ds``.

    Batches are gathered with one tensor index per batch (a ``BatchSampler`` as sampler), not
    one sample at a time. With ``shuffle=True`` every pass reads the samples in the order
    ``torch.randperm(len(ds), generator=generator)`` (one draw per pass, see
    :class:`PermutationSampler`), so a seeded generator gives reproducible epochs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    tds = TensorDataset(ds.x, ds.y)
    base = PermutationSampler(len(tds), generator) if shuffle else SequentialSampler(tds)
    sampler = BatchSampler(base, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(tds, sampler=sampler, batch_size=None)


def union_batches(
    first: ArrayDataset, second: ArrayDataset, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled pass over ``first ∪ second``: batches ``(x, y, from_second)``.

    The order is ``randperm(n_1 + n_2)`` drawn from ``generator``; ``from_second`` is a bool
    mask (e.g. "is a forget sample"). Batches are gathered without materialising the
    concatenation.
    """
    n1, n2 = len(first), len(second)
    perm = torch.randperm(n1 + n2, generator=generator)
    for start in range(0, n1 + n2, batch_size):
        idx = perm[start : start + batch_size]
        sec = idx >= n1
        x = first.x.new_empty((idx.numel(), *first.x.shape[1:]))
        y = first.y.new_empty((idx.numel(), *first.y.shape[1:]))
        x[~sec], y[~sec] = first.x[idx[~sec]], first.y[idx[~sec]]
        x[sec], y[sec] = second.x[idx[sec] - n1], second.y[idx[sec] - n1]
        yield x, y, sec


def to_device(batch: Iterable[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Move every tensor of a batch to ``device``."""
    return tuple(t.to(device, non_blocking=True) for t in batch)


def cycle(loader: Iterable[Batch], cache: bool = False) -> Iterator[Batch]:
    """Endless iteration over ``loader``.

    ``cache=False`` re-iterates the loader each pass (a shuffled loader gives a new order);
    ``cache=True`` replays the batches of the first pass, as ``itertools.cycle`` does.
    """
    if cache:
        seen: list[Batch] = []
        for b in loader:
            seen.append(b)
            yield b
        if not seen:
            return
        while True:
            yield from seen
    while True:
        empty = True
        for b in loader:
            empty = False
            yield b
        if empty:
            return


# ----------------------------------------------------------------------------- configs


class OptimConfig(BaseModel):
    """SGD settings of a secondary optimizer (nested in a method config)."""

    model_config = ConfigDict(extra="forbid")

    learning_rate: float = Field(gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)


class G5Config(MethodConfig):
    """The generic hyper-parameters G5 of §2.0 with the generic defaults.

    lr 0.1, momentum 0.9, wd 5e-4 (arXiv 2304.04934) and batch size 256 (arXiv 2310.12508);
    5 epochs (FT's default). Methods override the defaults their source uses.
    """

    learning_rate: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(256, ge=1)
    num_epochs: int = Field(5, ge=1)


class _HasSGD(Protocol):
    learning_rate: float
    momentum: float
    weight_decay: float


def make_sgd(params: Iterable[Any], cfg: _HasSGD) -> torch.optim.SGD:
    """``SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay)``."""
    return torch.optim.SGD(
        list(params), lr=cfg.learning_rate, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr


def step_decay_factor(epoch: int, num_epochs: int, rate: float) -> float:
    """``rate ** #{d ∈ D : epoch > d}`` with D = [⌊0.5E⌋, ⌊0.8E⌋, ⌊0.9E⌋] (SCRUB / CF-k, §2.7, §2.11).

    D is a list, as in the SCRUB notebook's ``np.sum(epoch > np.asarray(lr_decay_epochs))``:
    equal milestones (small E) each count.
    """
    milestones = [int(0.5 * num_epochs), int(0.8 * num_epochs), int(0.9 * num_epochs)]
    return rate ** sum(epoch > d for d in milestones)


def cosine_factor(epoch: int, num_epochs: int) -> float:
    """``(1 + cos(π·epoch/T))/2``: CosineAnnealingLR (eta_min 0, T_max = T) at 0-based ``epoch``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))


# ----------------------------------------------------------------------------- losses


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy."""
    return F.cross_entropy(logits, y)


def kl_distill(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 1.0,
    reduction: Literal["batchmean", "mean", "sum"] = "batchmean",
    t_squared: bool = False,
) -> torch.Tensor:
    """KL(softmax(z_T/τ) ‖ softmax(z_S/τ)), the distillation loss of Hinton et al. 2015.

    ``reduction="batchmean"`` sums over classes and averages over the batch; ``"mean"`` divides
    the total by B·C (PyTorch's element-wise mean, used by BT); ``t_squared`` multiplies by τ²
    (SCRUB). The teacher side is detached.
    """
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    total = F.kl_div(log_p_s, log_p_t, reduction="sum", log_target=True)
    loss = _reduce(total, student_logits, reduction)
    return loss * temperature**2 if t_squared else loss


def _reduce(total: torch.Tensor, logits: torch.Tensor, reduction: str) -> torch.Tensor:
    """Divide a summed loss by B ("batchmean"), B·C ("mean") or 1 ("sum")."""
    divisor = {"batchmean": logits.shape[0], "mean": logits.numel(), "sum": 1}[reduction]
    return total / max(divisor, 1)


def kl_to_probs(
    student_logits: torch.Tensor,
    target_probs: torch.Tensor,
    temperature: float = 1.0,
    reduction: Literal["batchmean", "mean", "sum"] = "batchmean",
) -> torch.Tensor:
    """KL(q ‖ softmax(z_S/τ)) for given target probabilities ``q`` (detached)."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=1)
    total = F.kl_div(log_p_s, target_probs.detach(), reduction="sum")
    return _reduce(total, student_logits, reduction)


# ----------------------------------------------------------------------------- loops

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def run_epoch(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass: per batch, zero grads, ``loss_fn(model, x, y).backward()``, optional hook
    (e.g. gradient masking), ``optimizer.step()``, optional hook (e.g. projecting the update).
    Batches go to the model's device.

    Returns the mean batch loss (NaN for an empty loader). The model's train/eval mode is
    the caller's choice.
    """
    device = model_device(model)
    total, count = 0.0, 0
    for batch in loader:
        x, y = to_device(batch, device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, x, y)
        loss.backward()
        if before_step is not None:
            before_step()
        optimizer.step()
        if after_step is not None:
            after_step()
        total += float(loss.detach())
        count += 1
    return total / count if count else float("nan")


def ce_step_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean CE of ``model(x)`` against ``y`` (a :data:`LossFn`)."""
    return ce_loss(model(x), y)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: Iterable[Batch]) -> torch.Tensor:
    """Concatenated logits of ``model`` over ``loader`` (mode left as the caller set it)."""
    device = model_device(model)
    out = [model(x.to(device)) for x, _ in loader]
    return torch.cat(out) if out else torch.empty(0)


@torch.no_grad()
def error_rate(model: nn.Module, loader: Iterable[Batch]) -> float:
    """Top-1 error of ``model`` in eval mode over ``loader``; restores the previous mode."""
    was_training = model.training
    model.eval()
    device = model_device(model)
    wrong, n = 0, 0
    for x, y in loader:
        pred = model(x.to(device)).argmax(dim=1)
        wrong += int((pred != y.to(device)).sum())
        n += int(y.shape[0])
    model.train(was_training)
    return wrong / n if n else float("nan")


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with ``requires_grad=False`` everywhere (a teacher)."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the model's state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def restore(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`snapshot` back into ``model`` (on the model's device)."""
    model.load_state_dict(state)


def trainable_params(model: nn.Module) -> list[nn.Parameter]:
    """Parameters with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]


# ----------------------------------------------------------------------------- search spaces


def lr_dist() -> od.FloatDistribution:
    """LR: log-uniform on [1e-5, 1e-1]."""
    return od.FloatDistribution(1e-5, 1e-1, log=True)


def wd_dist() -> od.FloatDistribution:
    """WD: log-uniform on [1e-5, 1e-1]."""
    return od.FloatDistribution(1e-5, 1e-1, log=True)


def mom_dist() -> od.FloatDistribution:
    """MOM: fixed at 0.9."""
    return od.FloatDistribution(0.9, 0.9)


def bs_dist() -> od.CategoricalDistribution:
    """BS: one of {64, 128, 256}."""
    return od.CategoricalDistribution(list(BATCH_SIZES))


def ep_dist(max_epochs: int = DEFAULT_MAX_EPOCHS) -> od.IntDistribution:
    """EP: integer uniform on [1, E*]."""
    return od.IntDistribution(1, max_epochs)


def epf_dist(max_epochs: int = DEFAULT_MAX_EPOCHS) -> od.FloatDistribution:
    """EPf: float uniform on [1, E*]."""
    return od.FloatDistribution(1.0, float(max_epochs))


def u01_dist() -> od.FloatDistribution:
    """U01: uniform on [0, 1]."""
    return od.FloatDistribution(0.0, 1.0)


def temp_dist() -> od.FloatDistribution:
    """TEMP: uniform on [0.01, 5]. Deep Unlearn's range is [0, 5], but every method that uses
    it divides by the temperature, so T = 0 (a sampler proposing the bound) would fail."""
    return od.FloatDistribution(0.01, 5.0)


def eta_dist() -> od.FloatDistribution:
    """ETA: log-uniform on [1e-6, 1e-1]."""
    return od.FloatDistribution(1e-6, 1e-1, log=True)


def int10_dist() -> od.IntDistribution:
    """INT10: integer uniform on [1, 10]."""
    return od.IntDistribution(1, 10)


def g5_space(max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
    """G5 = {learning_rate: LR, momentum: MOM, weight_decay: WD, batch_size: BS, num_epochs: EP}."""
    return {
        "learning_rate": lr_dist(),
        "momentum": mom_dist(),
        "weight_decay": wd_dist(),
        "batch_size": bs_dist(),
        "num_epochs": ep_dist(max_epochs),
    }


def optim_space(prefix: str) -> dict[str, od.BaseDistribution]:
    """``{prefix.learning_rate: LR, prefix.momentum: MOM, prefix.weight_decay: WD}``."""
    return {
        f"{prefix}.learning_rate": lr_dist(),
        f"{prefix}.momentum": mom_dist(),
        f"{prefix}.weight_decay": wd_dist(),
    }


def nest_params(flat: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys (``"retain_optimizer.learning_rate"``) into nested dicts for a Config."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


# ----------------------------------------------------------------------------- base class


class ZooUnlearner(Unlearner):
    """An :class:`Unlearner` for multiclass classifiers.

    :meth:`check` adds to the base checks: every split in ``uses`` must be multiclass (int64
    labels, at least 2 classes) and non-empty, so a method fails with :class:`UnsupportedError`
    before any work.
    """

    def check(self, model: nn.Module, data: UnlearnData) -> None:
        super().check(model, data)
        for split in self.uses:
            ds: ArrayDataset | None = getattr(data, split, None)
            if ds is None:
                raise UnsupportedError(f"{self.abbreviation} needs {split} data (got None)")
            if ds.task != "multiclass" or ds.y.dtype != torch.int64 or ds.y.ndim != 1:
                raise UnsupportedError(
                    f"{self.abbreviation} handles multiclass data only (int64 class labels); "
                    f"{split} set {ds.name!r} has task {ds.task!r}"
                )
            if len(ds) == 0:
                raise UnsupportedError(f"{self.abbreviation} needs a non-empty {split} set")
            if ds.num_outputs < 2:
                raise UnsupportedError(
                    f"{self.abbreviation} needs at least 2 classes; {split} set {ds.name!r} "
                    f"has {ds.num_outputs}"
                )
