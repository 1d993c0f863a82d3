"""SRL: successive random relabelling (Deep Unlearn, arXiv 2410.01276).

Train mode. Each epoch builds a fresh shuffled stream of retain ∪ forget in which every forget
sample gets a random label, then makes one pass minimising mean CE with SGD(lr, momentum, wd).
No schedule (Deep Unlearn creates a cosine scheduler and never steps it).

Difference from Deep Unlearn (``faithful=False``, the default): the random label of a forget
sample is drawn uniformly from the C − 1 *wrong* classes, as the relabelling of Graves et al. and
SalUn's paper intend, and the label stream continues across epochs. ``faithful=True``
reproduces the benchmark: labels uniform over all C classes (the draw can equal the true label)
from a label RNG re-seeded with the same seed at the start of every epoch (labels are drawn in
reading order, so a sample still gets different labels across epochs as the order changes).
Both RNGs derive from the run's generator.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import Batch, num_classes, union_batches
from unlearnkit.methods.toolkit.loops import run_epoch
from unlearnkit.methods.toolkit.losses import ce_step_loss
from unlearnkit.methods.toolkit.optim import SGDLoopConfig, make_sgd
from unlearnkit.methods.toolkit.search_space import DEFAULT_MAX_EPOCHS, sgd_loop_space


class SRLConfig(SGDLoopConfig):
    """Defaults: 5 epochs, batch 256, lr 0.1, momentum 0.9, wd 5e-4."""

    faithful: bool = False


def random_labels(
    y: torch.Tensor, num_classes: int, generator: torch.Generator, exclude_true: bool
) -> torch.Tensor:
    """Random labels for ``y`` (CPU int64), drawn in order from ``generator``.

    ``exclude_true``: uniform over the C − 1 classes ≠ y (``(y + U{1..C−1}) mod C``); otherwise
    uniform over all C classes.
    """
    if exclude_true:
        offset = torch.randint(1, num_classes, y.shape, generator=generator)
        return (y + offset) % num_classes
    return torch.randint(0, num_classes, y.shape, generator=generator)


def relabelled_batches(
    retain: ArrayDataset,
    forget: ArrayDataset,
    num_classes: int,
    batch_size: int,
    order_generator: torch.Generator,
    label_generator: torch.Generator,
    exclude_true: bool,
) -> Iterator[Batch]:
    """One shuffled pass over retain ∪ forget with random labels on the forget samples.

    The order comes from ``order_generator`` (:func:`union_batches`); forget labels are drawn
    from ``label_generator`` in reading order (:func:`random_labels`).
    """
    for x, y, is_forget in union_batches(retain, forget, batch_size, order_generator):
        y[is_forget] = random_labels(y[is_forget], num_classes, label_generator, exclude_true)
        yield x, y


def derive_generator(generator: torch.Generator) -> tuple[torch.Generator, int]:
    """A new CPU generator seeded by a draw from ``generator``; returns it and its seed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator().manual_seed(seed), seed


def relabel_epochs(
    data: UnlearnData, batch_size: int, generator: torch.Generator, faithful: bool
) -> Iterator[Iterator[Batch]]:
    """An endless sequence of epochs, each a :func:`relabelled_batches` stream.

    ``faithful`` re-seeds the label RNG with the same seed before every epoch and draws labels
    over all classes; otherwise one label stream runs on and excludes the true label.
    """
    label_gen, label_seed = derive_generator(generator)
    c = num_classes(data)
    while True:
        if faithful:
            label_gen.manual_seed(label_seed)
        yield relabelled_batches(
            data.retain, data.forget, c, batch_size, generator, label_gen, exclude_true=not faithful
        )


@METHODS.register("srl")
class SuccessiveRandomLabels(MulticlassUnlearner):
    """Train on retain plus randomly relabelled forget samples, fresh labels every epoch."""

    name = "Successive Random Relabeling"
    abbreviation = "SRL"
    family = "baseline"
    paper = "Graves et al. 2021 (Amnesiac Machine Learning); SalUn's RL baseline (Fan et al. 2024)"
    uses = ("retain", "forget")
    Config = SRLConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5."""
        return sgd_loop_space(max_epochs)

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = SRLConfig.model_validate(config.model_dump())
        opt = make_sgd(model.parameters(), cfg)
        epochs = relabel_epochs(data, cfg.batch_size, generator, cfg.faithful)
        model.train()
        for _ in range(cfg.num_epochs):
            run_epoch(model, next(epochs), ce_step_loss, opt)
        return model
