"""Erase samples from your own CNN: plain PyTorch, a DataLoader, BatchNorm, your training loop.

Nothing here is registered with unlearnkit: the model is a user-written CNN with BatchNorm,
trained by an ordinary PyTorch loop on a ``DataLoader`` over a ``TensorDataset`` (scikit-learn's
8x8 digits, sample ids = row numbers). Then, through the facade:

1. ``uk.prepare``: the SSSE erasure state of the training data, once;
2. ``prepared.erase``: erase 20 training samples by id, ε chosen without retraining
   (``eps="auto"``) and checked against the utility budget;
3. ``uk.unlearn(method="retrain", train_fn=...)``: the gold standard, with *your* training loop;
4. ``uk.evaluate``: the erased model against the original and the retrain;
5. ``uk.audit``: a small U-LiRA audit of SSSE whose shadow models are trained by your loop.

Run: ``python examples/user_cnn_dataloader.py`` (about 30 s on one CPU thread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

import unlearnkit as uk


class SmallCNN(nn.Module):
    """Two conv + BatchNorm blocks and a linear head, for 1x8x8 images."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(16 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


def make_model() -> nn.Module:
    """The initial model (fixed seed: every run starts from the same weights)."""
    torch.manual_seed(0)
    return SmallCNN()


def train_model(make: Any, dataset: Dataset, seed: int, epochs: int = 8) -> nn.Module:
    """A plain training loop: SGD with momentum over a shuffled DataLoader."""
    torch.manual_seed(seed)
    model = make()
    loader = DataLoader(dataset, batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for _ in range(epochs):
        for xb, yb, *_ in loader:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
    return model.eval()


def load_data(seed: int = 0) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Digits as (x, y, id) TensorDatasets: 70 % train, 10 % val, 20 % test."""
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target, dtype=torch.int64)
    ids = torch.arange(len(y))
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_train, n_val = int(0.7 * len(y)), int(0.1 * len(y))
    parts = order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    return tuple(TensorDataset(x[p], y[p], ids[p]) for p in parts)  # type: ignore[return-value]


def accuracy(model: nn.Module, data: TensorDataset) -> float:
    x, y = data.tensors[0], data.tensors[1]
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(shadows: int = 4) -> dict[str, float]:
    train, val, test = load_data()
    model = train_model(make_model, train, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    rng = np.random.default_rng(1)
    forget_ids = np.sort(rng.choice(train.tensors[2].numpy(), 20, replace=False))
    split = uk.split_of(train, forget_ids=forget_ids, val=val, test=test)

    prepared = uk.prepare(model, DataLoader(train, batch_size=256), {"damping": 1e-3},
                          holdout=val)  # fmt: skip
    erased = prepared.erase(model, forget_ids)  # eps="auto", utility budget 2 points
    retrain = uk.unlearn(model, split, method="retrain", train_fn=train_model,
                         model_factory=make_model, seed=0)  # fmt: skip
    report = uk.evaluate(erased.model, split, original=model, retrain=retrain.model)
    audit = uk.audit(split, train_fn=train_model, model_factory=make_model, method="ssse",
                     config={"damping": 1e-3}, shadows=shadows, target_fraction=0.1)  # fmt: skip
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    acc = report["accuracy"]
    out = {
        "original_test": accuracy(model, test),
        "erased_test": accuracy(erased.model, test),
        "retrain_test": accuracy(retrain.model, test),
        "original_forget": acc["original"]["FA"],
        "erased_forget": acc["unlearned"]["FA"],
        "retrain_forget": acc["retrain"]["FA"],
        "eps": erased.eps,
        "remaining": float(len(erased.prepared.remaining_ids)),
        "normalized_distance": report["distance"]["normalized"],
        "audit_auc": audit.outcome.metrics.auc,
        "audit_balanced_accuracy": audit.outcome.metrics.balanced_accuracy,
    }
    print(f"erased {len(forget_ids)} samples with ε = {erased.eps:g} ({erased.eps_rule})")
    for name, a in erased.accuracy.items():
        print(f"  {name:8s} accuracy {a['before']:.3f} -> {a['after']:.3f}")
    for k, v in out.items():
        print(f"{k:24s} {v:.4f}")
    return out


if __name__ == "__main__":
    main()
