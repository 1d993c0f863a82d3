"""BT: bad teacher (Chundawat et al., AAAI 2023; Deep Unlearn, arXiv 2410.01276).

Two teachers in eval mode: a competent one (a frozen copy of the original model O) and an
incompetent one (randomly initialised). The student (the model, in train mode, so BatchNorm
statistics update) makes ``num_epochs`` shuffled passes over retain ∪ forget (the full retain
set), each sample tagged u = 1 if it is a forget sample. Per sample the target is

    q = u·softmax(z_bad/τ) + (1 − u)·softmax(z_O/τ),

and the loss is KL(q ‖ softmax(z_S/τ)) with PyTorch's element-wise ``'mean'`` reduction (sum
over batch and classes divided by B·C, no τ² factor). Optimiser: Adam(lr, weight_decay); Deep
Unlearn samples a momentum that Adam ignores, so there is none here.

Differences from Deep Unlearn:

- ``faithful=False`` (default): the incompetent teacher is a copy of the student's own
  architecture with every layer re-drawn from PyTorch's default initialisation (from the run's
  generator). ``faithful=True`` always uses a randomly initialised ResNet-18 with C outputs, as
  the benchmark does even for ViT students (needs image inputs).
- No checkpoint is written after each epoch with ``faithful=False``. Deep Unlearn's
  ``blindspot_unlearner`` (``munl/unlearning/bad_teacher.py``) calls ``save_checkpoint`` after
  every epoch (state dict, optimiser state, the epoch's mean loss) inside the timed region;
  ``faithful=True`` writes the same checkpoint to a temporary directory and reports its seconds
  as ``info["official_extra_seconds"]`` (:mod:`unlearnkit.methods.toolkit.official_work`).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from pydantic import Field
from torch import nn

from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import model_device, num_classes, union_batches
from unlearnkit.methods.toolkit.loops import frozen_copy
from unlearnkit.methods.toolkit.losses import kl_to_probs
from unlearnkit.methods.toolkit.official_work import OfficialWork
from unlearnkit.methods.toolkit.reinit import default_reset
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    bs_dist,
    ep_dist,
    lr_dist,
    temp_dist,
    wd_dist,
)
from unlearnkit.models import build_model


class BTConfig(MethodConfig):
    """Defaults: 10 epochs, batch 256, τ 1, Adam lr 0.01, wd 0."""

    learning_rate: float = Field(0.01, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1)
    num_epochs: int = Field(10, ge=1)
    kl_temperature: float = Field(1.0, gt=0)
    faithful: bool = False


def incompetent_teacher(
    model: nn.Module, data: UnlearnData, generator: torch.Generator, faithful: bool
) -> nn.Module:
    """A randomly initialised teacher in eval mode on the model's device, frozen.

    Corrected: a copy of ``model`` re-initialised by PyTorch's default rules, drawn from
    ``generator``. Faithful: ``resnet18`` with C outputs for the data's input shape, its
    initial weights seeded by a draw from ``generator``.
    """
    if faithful:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        bad = build_model("resnet18", data.retain.input_shape, num_classes(data), seed=seed)
    else:
        bad = copy.deepcopy(model)
        default_reset(bad, generator)
    bad = bad.to(model_device(model)).eval()
    for p in bad.parameters():
        p.requires_grad_(False)
    return bad


def bad_teacher_loss(
    student_logits: torch.Tensor,
    good_logits: torch.Tensor,
    bad_logits: torch.Tensor,
    is_forget: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """KL(q ‖ softmax(z_S/τ)), element-wise mean, with q mixing the teachers by ``is_forget``."""
    u = is_forget.to(student_logits.dtype).unsqueeze(1)
    q = u * torch.softmax(bad_logits / temperature, dim=1) + (1 - u) * torch.softmax(
        good_logits / temperature, dim=1
    )
    return kl_to_probs(student_logits, q, temperature, reduction="mean")


@METHODS.register("bt")
class BadTeacher(MulticlassUnlearner):
    """Distil from the original model on retain and from a random model on forget."""

    name = "Bad Teacher"
    abbreviation = "BT"
    family = "literature"
    paper = "Chundawat et al., Can Bad Teaching Induce Forgetting?, AAAI 2023"
    uses = ("retain", "forget")
    Config = BTConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, Any]:
        """G5 without momentum (Adam ignores it) + kl_temperature: TEMP."""
        return {
            "learning_rate": lr_dist(),
            "weight_decay": wd_dist(),
            "batch_size": bs_dist(),
            "num_epochs": ep_dist(max_epochs),
            "kl_temperature": temp_dist(),
        }

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = BTConfig.model_validate(config.model_dump())
        bad = incompetent_teacher(model, data, generator, cfg.faithful)
        good = frozen_copy(model)
        opt = torch.optim.Adam(
            model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
        )
        device = model_device(model)
        extra = OfficialWork(cfg.faithful, device)
        model.train()
        with extra:
            for epoch in range(cfg.num_epochs):
                losses: list[torch.Tensor] = []
                for x, _, is_forget in union_batches(
                    data.retain, data.forget, cfg.batch_size, generator
                ):
                    x, is_forget = x.to(device), is_forget.to(device)
                    with torch.no_grad():
                        good_logits, bad_logits = good(x), bad(x)
                    opt.zero_grad(set_to_none=True)
                    loss = bad_teacher_loss(
                        model(x), good_logits, bad_logits, is_forget, cfg.kl_temperature
                    )
                    loss.backward()
                    opt.step()
                    losses.append(loss.detach())
                if extra.enabled:
                    payload = {"unlearning_loss": float(torch.stack(losses).mean())}
                    state = {
                        "epoch": epoch,
                        "state_dict": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": None,
                        "payload": payload,
                    }
                    extra.checkpoint(f"epoch_{epoch}.pth", state)
        self.run_info.update(extra.info())
        return model
