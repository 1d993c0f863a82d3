"""PRMQ: Prune, Retrain, Mask, Quantize (challenge solution #4, ``kgltop4``).

1. **Teacher** T = a frozen copy of O (eval mode).
2. **Prune**: global L1-unstructured pruning (``torch.nn.utils.prune.global_unstructured``)
   over all Conv and Linear weights **and biases jointly**: the round(``prune_amount``·P)
   entries of smallest |value| are set to 0 permanently.
3. **Re-initialise** every conv/Linear *weight* entry that is now exactly 0 from U(−b, b),
   b = 1/√fan_in (fan_in = C_in·k_h·k_w or in_features: PyTorch's default scale). Pruned biases
   stay 0.
4. **Fine-tune** on retain for ⌊(#retain batches)·E⌋ + 1 iterations (E may be fractional; the
   shuffled loader is re-iterated as needed), train mode, SGD(lr, momentum, wd), no schedule:

       L = CE_w(S(x), y) + (1/B) Σ_i (H(softmax(S(x_i))) − H(softmax(T(x_i))))²,

   with class weights w_c = n_c^(−0.1) (n_c = count of class c in retain) and PyTorch's weighted
   mean Σ w_{y_i} ℓ_i / Σ w_{y_i}; H is the entropy −Σ_c p_c log p_c.
5. **Quantise**: cast the model to float16 and back to its dtype (float32).

After step 2 each pruned module's parameters are put back in their original registration
order (``prune.remove`` re-registers ``weight`` last), so ``model.parameters()`` keeps O's order.
Deep Unlearn's code has no quirk here that we change. ``faithful=True`` only adds the work their
timed region contains: ``get_class_weights`` (``munl/unlearning/kgltop4.py``) counts the labels
by a pass over the retain loader; we run that pass too and report its seconds as
``info["official_extra_seconds"]`` (:mod:`unlearnkit.methods.toolkit.official_work`); the
model is the same in both modes.
"""

from __future__ import annotations

import math

import optuna.distributions as od
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from pydantic import Field
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import METHODS, MethodConfig, MulticlassUnlearner, UnlearnData
from unlearnkit.methods.toolkit.batches import cycle, make_loader, model_device, to_device
from unlearnkit.methods.toolkit.layout import CONV_TYPES
from unlearnkit.methods.toolkit.loops import frozen_copy
from unlearnkit.methods.toolkit.official_work import OfficialWork
from unlearnkit.methods.toolkit.optim import make_sgd
from unlearnkit.methods.toolkit.reinit import fan_in, uniform_fill_
from unlearnkit.methods.toolkit.search_space import (
    DEFAULT_MAX_EPOCHS,
    bs_dist,
    epf_dist,
    lr_dist,
    mom_dist,
    u01_dist,
    wd_dist,
)

PRUNABLE: tuple[type[nn.Module], ...] = (*CONV_TYPES, nn.Linear)


class PRMQConfig(MethodConfig):
    """Deep Unlearn's defaults: E 3.2, batch 64, lr 5e-4, momentum 0.9, wd 5e-4, prune_amount 0.99."""

    learning_rate: float = Field(5e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    batch_size: int = Field(64, ge=1)
    num_epochs: float = Field(3.2, ge=0, description="E, fractional epochs of fine-tuning")
    prune_amount: float = Field(0.99, ge=0, le=1, description="fraction of entries pruned")
    faithful: bool = Field(False, description="also run (and time) Deep Unlearn's label pass")


def prunable_modules(model: nn.Module) -> list[nn.Module]:
    """Every Conv and Linear layer."""
    return [m for m in model.modules() if isinstance(m, PRUNABLE)]


def global_l1_prune(model: nn.Module, amount: float) -> None:
    """Zero the ``amount`` fraction of smallest-|value| conv/Linear weights and biases, jointly."""
    targets = []
    for m in prunable_modules(model):
        targets.append((m, "weight"))
        if m.bias is not None:
            targets.append((m, "bias"))
    order = {m: list(m._parameters) for m, _ in targets}
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=amount)
    for m, name in targets:
        prune.remove(m, name)
    for m, names in order.items():
        m._parameters = {k: m._parameters[k] for k in names}


@torch.no_grad()
def reinit_zero_weights(model: nn.Module, generator: torch.Generator) -> None:
    """Redraw every exactly-zero conv/Linear weight entry from U(±1/√fan_in)."""
    for m in prunable_modules(model):
        w = m.weight
        fresh = torch.empty_like(w)
        uniform_fill_(fresh, 1.0 / math.sqrt(fan_in(w)), generator)
        w.copy_(torch.where(w == 0, fresh, w))


def inverse_power_class_weights(ds: ArrayDataset, power: float = 0.1) -> torch.Tensor:
    """w_c = n_c^(−power) from the class counts (1 for classes absent from ``ds``)."""
    counts = torch.bincount(ds.y, minlength=ds.num_outputs).double()
    w = torch.where(counts > 0, counts.clamp(min=1) ** (-power), torch.ones_like(counts))
    return w.float()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-sample entropy of softmax(logits)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


@METHODS.register("prmq")
class PRMQ(MulticlassUnlearner):
    """Prune 99 % of the weights, re-initialise them, fine-tune with an entropy-matching teacher."""

    name = "Prune, Retrain, Mask, Quantize (Kaggle #4)"
    abbreviation = "PRMQ"
    family = "kaggle"
    paper = "NeurIPS 2023 Machine Unlearning challenge, solution #4 (via Cadet et al. 2024)"
    uses = ("retain",)
    requires = ("conv_or_linear",)
    Config = PRMQConfig

    def search_space(self, max_epochs: int = DEFAULT_MAX_EPOCHS) -> dict[str, od.BaseDistribution]:
        return {
            "prune_amount": u01_dist(),
            "num_epochs": epf_dist(max_epochs),
            "learning_rate": lr_dist(),
            "momentum": mom_dist(),
            "weight_decay": wd_dist(),
            "batch_size": bs_dist(),
        }

    def run(
        self, model: nn.Module, data: UnlearnData, config: MethodConfig, generator: torch.Generator
    ) -> nn.Module:
        cfg = config if isinstance(config, PRMQConfig) else PRMQConfig(**config.model_dump())
        device = model_device(model)
        teacher = frozen_copy(model)
        global_l1_prune(model, cfg.prune_amount)
        reinit_zero_weights(model, generator)
        extra = OfficialWork(cfg.faithful, device)
        extra.read_labels(make_loader(data.retain, cfg.batch_size, shuffle=False))
        self.run_info.update(extra.info())
        class_w = inverse_power_class_weights(data.retain).to(device)
        loader = make_loader(data.retain, cfg.batch_size, shuffle=True, generator=generator)
        iterations = math.floor(len(loader) * cfg.num_epochs) + 1
        model.train()
        opt = make_sgd(model.parameters(), cfg)
        batches = cycle(loader)
        for _ in range(iterations):
            x, y = to_device(next(batches), device)
            opt.zero_grad(set_to_none=True)
            z_s = model(x)
            with torch.no_grad():
                z_t = teacher(x)
            loss = F.cross_entropy(z_s, y, weight=class_w) + F.mse_loss(entropy(z_s), entropy(z_t))
            loss.backward()
            opt.step()
        dtype = next(model.parameters()).dtype
        return model.half().to(dtype)
