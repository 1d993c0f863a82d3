"""Erase samples from a Hugging Face ``transformers`` classifier built offline from a config.

A tiny ``ViTForImageClassification`` (random initialisation from a ``ViTConfig``: 8x8 images
in 4x4 patches, one encoder layer; nothing is downloaded) is trained by a plain PyTorch loop
on scikit-learn's 8x8 digits. Its forward returns a ``ModelOutput``; ``uk.as_classifier``
wraps it so the forward returns the logits (``pixel_values`` passed by keyword). Then the
same steps as for any model: prepare, erase by id (ε auto), retrain with the user's own
training function, evaluate, and a small U-LiRA audit.

Run: ``python examples/hf_transformer.py`` (about 30 s on one CPU thread).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset
from transformers import ViTConfig, ViTForImageClassification

import unlearnkit as uk

CONFIG = ViTConfig(
    image_size=8,
    patch_size=4,
    num_channels=1,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    num_labels=10,
    attn_implementation="eager",
)


def make_model() -> nn.Module:
    """A randomly initialised tiny ViT whose forward returns logits."""
    torch.manual_seed(0)
    return uk.as_classifier(ViTForImageClassification(CONFIG), input_name="pixel_values")


def train_model(make: Any, dataset: Dataset, seed: int, epochs: int = 12) -> nn.Module:
    """A plain loop: AdamW over a shuffled DataLoader."""
    torch.manual_seed(seed)
    model = make()
    loader = DataLoader(dataset, batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
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


def main(shadows: int = 4) -> dict[str, float]:
    train, val, test = load_data()
    model = train_model(make_model, train, seed=0)
    rng = np.random.default_rng(1)
    forget_ids = np.sort(rng.choice(train.tensors[2].numpy(), 20, replace=False))
    split = uk.split_of(train, forget_ids=forget_ids, val=val, test=test)

    prepared = uk.prepare(model, split, {"damping": 1e-3})
    erased = prepared.erase(model, forget_ids)  # eps="auto", utility budget 2 points
    retrain = uk.unlearn(model, split, method="retrain", train_fn=train_model,
                         model_factory=make_model, seed=0)  # fmt: skip
    report = uk.evaluate(erased.model, split, original=model, retrain=retrain.model)
    audit = uk.audit(split, train_fn=train_model, model_factory=make_model, method="ssse",
                     config={"damping": 1e-3}, shadows=shadows, target_fraction=0.1)  # fmt: skip

    acc = report["accuracy"]
    out = {
        "original_test": acc["original"]["TA"],
        "erased_test": acc["unlearned"]["TA"],
        "retrain_test": acc["retrain"]["TA"],
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
