"""BT: KL to the competent teacher on retain, to a random one on forget."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from blob_mlp_fixtures import TinyMLP, original, tiny_data

from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.bt import BadTeacher, bad_teacher_loss, incompetent_teacher
from unlearnkit.seeding import seed_everything


def test_loss_is_elementwise_mean_kl_to_the_tagged_teacher():
    g = torch.Generator().manual_seed(0)
    s, good, bad = (torch.randn(5, 3, generator=g) for _ in range(3))
    u = torch.tensor([True, False, False, True, False])
    tau = 2.0
    total = 0.0
    for i in range(5):
        q = torch.softmax((bad if u[i] else good)[i] / tau, 0)
        log_s = torch.log_softmax(s[i] / tau, 0)
        total += float((q * (q.log() - log_s)).sum())
    expected = total / (5 * 3)  # PyTorch 'mean': divided by B·C, no τ²
    assert math.isclose(float(bad_teacher_loss(s, good, bad, u, tau)), expected, rel_tol=1e-5)


def test_incompetent_teacher_is_a_reinitialised_frozen_copy():
    model = original()
    bad = incompetent_teacher(model, tiny_data(), torch.Generator().manual_seed(0), False)
    assert type(bad) is TinyMLP and not bad.training
    assert all(not p.requires_grad for p in bad.parameters())
    for (name, p), q in zip(bad.named_parameters(), model.parameters(), strict=True):
        assert not torch.equal(p, q), name
        fan_in = p.shape[1] if p.dim() == 2 else (8 if name.startswith("fc") else 4)
        assert p.abs().max() <= 1 / math.sqrt(fan_in)  # PyTorch's default U(±1/√fan_in)


def test_one_full_batch_step_equals_hand_computed_adam_step():
    data = tiny_data()
    lr, tau, seed = 0.01, 1.5, 7
    cfg = {"batch_size": 500, "num_epochs": 1, "learning_rate": lr, "kl_temperature": tau}
    out = BadTeacher().unlearn(original(), data, cfg, seed=seed).model

    student, good = original(), original().eval()
    bad = incompetent_teacher(student, data, seed_everything(seed), False)  # first draw of run
    x = torch.cat([data.retain.x, data.forget.x])
    with torch.no_grad():
        q = torch.cat(
            [
                torch.softmax(good(data.retain.x) / tau, 1),
                torch.softmax(bad(data.forget.x) / tau, 1),
            ]
        )
    log_s = torch.log_softmax(student(x) / tau, 1)
    loss = (q * (q.log() - log_s)).sum() / q.numel()
    opt = torch.optim.Adam(student.parameters(), lr=lr)
    loss.backward()
    opt.step()
    for p, r in zip(out.parameters(), student.parameters(), strict=True):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_bt_moves_forget_predictions_to_the_bad_teacher_only():
    data = tiny_data()
    seed = 3
    out = (
        BadTeacher()
        .unlearn(
            original(), data, {"batch_size": 16, "num_epochs": 10, "learning_rate": 0.01}, seed=seed
        )
        .model
    )
    bad = incompetent_teacher(original(), data, seed_everything(seed), False)

    def kl(teacher, model, x):
        with torch.no_grad():
            return float(
                F.kl_div(model(x).log_softmax(1), teacher(x).softmax(1), reduction="batchmean")
            )

    before, after = original(), out.eval()
    assert kl(bad, after, data.forget.x) < 0.5 * kl(bad, before, data.forget.x)
    assert kl(original(), after, data.retain.x) < kl(bad, after, data.retain.x)


def test_faithful_teacher_is_a_resnet18_for_images():
    x = torch.randn(6, 3, 32, 32)
    from unlearnkit.data.base import ArrayDataset

    ds = ArrayDataset("img", x, torch.arange(6) % 3, torch.arange(6), "multiclass", ("a", "b", "c"))
    bad = incompetent_teacher(
        TinyMLP(), UnlearnData(ds, ds), torch.Generator().manual_seed(0), True
    )
    assert hasattr(bad, "layer4") and bad.fc.out_features == 3
