"""Tiny models (a two-block ResNet, a conv net without BN, an MLP) and image data shared by
the tests of the model-structure methods: CF-k, EU-k, FCS, MSG, CFW, PRMQ, CT, KDE, RNI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import UnlearnData

CLASSES = ("a", "b", "c")


class Block(nn.Module):
    """conv -> BN -> ReLU, with a residual connection."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x))) + x


class TinyResNet(nn.Module):
    """ResNet layout: stem conv1/bn1, blocks layer1/layer2, classifier fc."""

    def __init__(self, c: int = 4, classes: int = 3, bn: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, c, 3, padding=1, bias=not bn)
        self.bn1 = nn.BatchNorm2d(c) if bn else nn.Identity()
        self.layer1 = nn.Sequential(Block(c))
        self.layer2 = nn.Sequential(Block(c), Block(c))
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3)))


class TinyConvNoBN(nn.Module):
    """Two convs (one with bias) and fc, no BatchNorm: gradients are batch-independent."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(2, 3, 3, padding=1, bias=False)
        self.fc = nn.Linear(3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv2(torch.tanh(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class TinyMLP(nn.Module):
    """No convolution at all."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(3 * 6 * 6, 5), nn.ReLU())
        self.fc = nn.Linear(5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def dataset(name: str, n: int, seed: int, first_id: int = 0) -> ArrayDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % len(CLASSES)
    x = torch.randn(n, 3, 6, 6, generator=g) + y.float()[:, None, None, None] * 0.5
    ids = torch.arange(first_id, first_id + n, dtype=torch.int64)
    return ArrayDataset(name, x, y.to(torch.int64), ids, "multiclass", CLASSES)


def data(n_retain: int = 24, n_forget: int = 8, n_val: int = 9) -> UnlearnData:
    return UnlearnData(
        retain=dataset("retain", n_retain, 1, 0),
        forget=dataset("forget", n_forget, 2, 1000),
        val=dataset("val", n_val, 3, 2000),
    )


def model(seed: int = 0, **kw: object) -> TinyResNet:
    torch.manual_seed(seed)
    return TinyResNet(**kw)  # type: ignore[arg-type]


def state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def changed(before: dict[str, torch.Tensor], after: nn.Module) -> set[str]:
    """State-dict keys whose tensors differ (bit-wise)."""
    now = after.state_dict()
    return {k for k, v in before.items() if not torch.equal(v, now[k])}


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Single-threaded torch: on the shared 2-core CI box, thread contention costs 20x."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
