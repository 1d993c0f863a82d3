"""Tiny data and models (an MLP on Gaussian blobs) shared by the data-driven method tests."""

from __future__ import annotations

import copy
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import UnlearnData

# Tiny models: one thread is faster than two contending ones on a loaded 2-core machine.
torch.set_num_threads(1)

CLASSES = ("a", "b", "c")
CENTRES = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])


def blobs(n_per_class: int, seed: int, id_offset: int, name: str) -> ArrayDataset:
    """3 Gaussian blobs in 4-D (unit noise around :data:`CENTRES`), classes interleaved."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat(n_per_class)
    x = CENTRES[y] + torch.randn(len(y), 4, generator=g)
    ids = torch.arange(len(y), dtype=torch.int64) + id_offset
    return ArrayDataset(name, x, y, ids, "multiclass", CLASSES)


def tiny_data(n_retain: int = 15, n_forget: int = 4, n_val: int = 5) -> UnlearnData:
    """Retain 3·n_retain, forget 3·n_forget, val 3·n_val samples with disjoint ids."""
    return UnlearnData(
        retain=blobs(n_retain, 1, 0, "retain"),
        forget=blobs(n_forget, 2, 1000, "forget"),
        val=blobs(n_val, 3, 2000, "val"),
    )


def multilabel_like(ds: ArrayDataset) -> ArrayDataset:
    """The same inputs with a multi-label (float one-hot) target."""
    y = F.one_hot(ds.y, 3).float()
    return ArrayDataset(ds.name, ds.x, y, ds.ids, "multilabel", CLASSES)


class TinyMLP(nn.Module):
    """4 -> hidden -> 3 with the classifier ``fc`` (optional dropout before it)."""

    def __init__(self, hidden: int = 8, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.Tanh())
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.body(x)))


@lru_cache(maxsize=4)
def _trained(hidden: int, dropout: float, steps: int) -> TinyMLP:
    torch.manual_seed(0)
    model = TinyMLP(hidden, dropout)
    data = tiny_data()
    x = torch.cat([data.retain.x, data.forget.x])
    y = torch.cat([data.retain.y, data.forget.y])
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    model.eval()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model


def original(hidden: int = 8, dropout: float = 0.0, steps: int = 60) -> TinyMLP:
    """A fresh copy of the "original" model, trained full-batch on retain ∪ forget."""
    return copy.deepcopy(_trained(hidden, dropout, steps))


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    """Bit-identical state dicts."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def mean_ce(model: nn.Module, ds: ArrayDataset) -> float:
    """Mean CE of ``model`` (eval mode) on ``ds``."""
    model.eval()
    with torch.no_grad():
        return float(F.cross_entropy(model(ds.x), ds.y))


def per_sample_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(n, P) float64 matrix of single-sample CE gradients, by a loop of backward passes."""
    rows = []
    for i in range(x.shape[0]):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]).double())
    model.zero_grad()
    return torch.stack(rows)


def flat_params(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])
