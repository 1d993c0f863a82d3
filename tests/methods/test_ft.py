"""FT: retain-only fine-tuning with a per-epoch cosine schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from blob_mlp_fixtures import mean_ce, original, states_equal, tiny_data

from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.ft import FineTune
from unlearnkit.seeding import seed_everything


def test_ft_lowers_retain_loss():
    data = tiny_data()
    model = original(steps=5)  # under-trained, so fine-tuning has work to do
    out = FineTune().unlearn(model, data, {"batch_size": 16, "num_epochs": 3, "learning_rate": 0.1})
    assert mean_ce(out.model, data.retain) < 0.8 * mean_ce(model, data.retain)


def test_ft_never_reads_forget():
    data = tiny_data()
    poisoned = data.forget.__class__(
        "forget",
        torch.full_like(data.forget.x, float("nan")),
        data.forget.y,
        data.forget.ids,
        "multiclass",
        data.forget.classes,
    )
    cfg = {"batch_size": 16, "num_epochs": 2}
    a = FineTune().unlearn(original(), data, cfg, seed=5).model
    b = (
        FineTune()
        .unlearn(original(), UnlearnData(data.retain, poisoned, data.val), cfg, seed=5)
        .model
    )
    assert states_equal(a, b)


def test_ft_matches_hand_loop_with_cosine_schedule():
    """Two epochs: lr0 in epoch 1, lr0·(1 + cos(π/2))/2 = lr0/2 in epoch 2; same batch order."""
    data = tiny_data()
    lr0, bs, seed = 0.05, 16, 3
    out = (
        FineTune()
        .unlearn(
            original(), data, {"batch_size": bs, "num_epochs": 2, "learning_rate": lr0}, seed=seed
        )
        .model
    )

    model = original()
    g = seed_everything(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr0, momentum=0.9, weight_decay=5e-4)
    model.train()
    for epoch in range(2):
        for group in opt.param_groups:
            group["lr"] = lr0 * 0.5 * (1 + math.cos(math.pi * epoch / 2))
        perm = torch.randperm(len(data.retain), generator=g)
        for i in range(0, len(perm), bs):
            idx = perm[i : i + bs]
            opt.zero_grad()
            F.cross_entropy(model(data.retain.x[idx]), data.retain.y[idx]).backward()
            opt.step()
    for p, q in zip(out.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
