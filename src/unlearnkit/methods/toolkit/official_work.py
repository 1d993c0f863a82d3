"""Work that Deep Unlearn's timed region contains but the method itself does not need.

Deep Unlearn (``pipeline/step_5_unlearn.py``, ``run_from_model_and_loaders``) times the whole
``unlearner.unlearn(...)`` call, so its reported run time includes what the released methods do
besides unlearning: SCRUB's per-epoch evaluations and checkpoint files, RNI's per-epoch
validation accuracy, BT's per-epoch checkpoint files, CFW's prediction pass over retain (run only
to read the labels) and PRMQ's pass over the retain loader (to count the labels).

With ``faithful=True`` those methods do that work too, inside :meth:`Unlearner.unlearn`'s timed
region, and report how long it took as ``info["official_extra_seconds"]`` (and the number of
checkpoint files written as ``info["official_checkpoints"]``). So
``UnlearnResult.seconds`` is the time comparable with Deep Unlearn's and
``seconds − info["official_extra_seconds"]`` the time of the unlearning work alone (the number
``faithful=False`` measures). The extra work never changes the model nor the run's random draws.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.methods.toolkit.batches import Batch, model_device

EXTRA_KEY = "official_extra_seconds"
"""The ``UnlearnResult.info`` key of the extra work's seconds."""


class OfficialWork:
    """Runs and times the extra work when ``enabled`` (faithful mode); a no-op otherwise.

    Use as a context manager: checkpoint files go to a temporary directory removed on exit.
    """

    def __init__(self, enabled: bool, device: torch.device) -> None:
        self.enabled = enabled
        self.seconds = 0.0
        self.checkpoints_written = 0
        self._sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> OfficialWork:
        if self.enabled:
            self._dir = tempfile.TemporaryDirectory(prefix="unlearnkit-ckpt-")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    @contextlib.contextmanager
    def timed(self) -> Iterator[None]:
        """Add the wall time of the block (CUDA synchronised) to :attr:`seconds`."""
        self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds += time.perf_counter() - t0

    def evaluate(self, model: nn.Module, loader: Iterable[Batch], grad: bool = False) -> None:
        """One eval-mode prediction pass over ``loader`` (top-1 accuracy and CE, as Deep
        Unlearn's ``validate``); ``grad=True`` builds the autograd graph as
        ``extract_predictions`` does (no ``torch.no_grad``). The model's mode is restored."""
        if not self.enabled:
            return
        with self.timed():
            was_training = model.training
            model.eval()
            device = model_device(model)
            correct, loss, n = 0, 0.0, 0
            with torch.set_grad_enabled(grad):
                for x, y in loader:
                    x, y = x.to(device), y.to(device)
                    logits = model(x)
                    z = logits.detach()
                    correct += int((z.argmax(dim=1) == y).sum())
                    loss += float(nn.functional.cross_entropy(z, y, reduction="sum"))
                    n += int(y.shape[0])
            model.train(was_training)

    def read_labels(self, loader: Iterable[Batch]) -> None:
        """One pass over ``loader`` collecting the labels (PRMQ's ``get_class_weights``)."""
        if not self.enabled:
            return
        with self.timed():
            labels = [y for _, y in loader]
            if labels:
                torch.unique(torch.cat(labels), return_counts=True)

    def checkpoint(self, name: str, state: dict[str, Any]) -> None:
        """``torch.save(state)`` to a file in the temporary checkpoint directory."""
        if not self.enabled:
            return
        assert self._dir is not None, "use OfficialWork as a context manager"
        with self.timed():
            torch.save(state, Path(self._dir.name) / name)
            self.checkpoints_written += 1

    def info(self) -> dict[str, float | int]:
        """``{"official_extra_seconds": s, "official_checkpoints": k}`` when enabled, else
        ``{}``."""
        if not self.enabled:
            return {}
        return {EXTRA_KEY: self.seconds, "official_checkpoints": self.checkpoints_written}
