"""KDE: reset stem + head, distil on validation inputs (labels unread), then retain."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_resnet_fixtures import changed, data, model, one_thread, state  # noqa: F401

from unlearnkit.errors import UnsupportedError
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.kde import KDE, soft_ce


class _NoLabels:
    """Stands in for val.y: any use raises."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"validation labels were read (.{name})")

    def __getitem__(self, item: object) -> object:
        raise AssertionError("validation labels were read ([])")

    def __len__(self) -> int:
        raise AssertionError("validation labels were read (len)")


def _data_without_val_labels() -> UnlearnData:
    d = data()
    object.__setattr__(d.val, "y", _NoLabels())
    return d


def test_never_reads_validation_labels() -> None:
    d = _data_without_val_labels()
    out = KDE().unlearn(model(), d, {"num_epochs": 1, "retain_num_epochs": 1, "batch_size": 4})
    assert all(torch.isfinite(p).all() for p in out.model.parameters())


def test_needs_validation_data() -> None:
    d = data()
    with pytest.raises(UnsupportedError):
        KDE().unlearn(model(), UnlearnData(d.retain, d.forget, None))


def test_reset_touches_exactly_stem_conv_and_head() -> None:
    m = model()
    before = state(m)
    out = KDE().unlearn(m, data(), {"num_epochs": 0, "retain_num_epochs": 0}).model
    assert changed(before, out) == {"conv1.weight", "fc.weight", "fc.bias"}
    assert out.conv1.weight.abs().max() <= 1 / math.sqrt(3 * 9)
    assert out.fc.weight.abs().max() <= 1 / math.sqrt(
        4
    ) and out.fc.bias.abs().max() <= 1 / math.sqrt(4)


def test_warm_up_is_distillation_on_val_inputs() -> None:
    """One val batch, E_r = 0: θ1 = θ_reset − lr·(∇KL_τ(T‖S) + wd·θ_reset), train mode."""
    d = data()
    lr, wd, tau = 0.3, 1e-3, 2.0
    cfg = {
        "num_epochs": 1,
        "retain_num_epochs": 0,
        "batch_size": 64,
        "learning_rate": lr,
        "weight_decay": wd,
        "temperature": tau,
    }
    teacher = model().eval()
    student = KDE().unlearn(model(), d, {**cfg, "num_epochs": 0}).model.train()
    with torch.no_grad():
        q = F.log_softmax(teacher(d.val.x) / tau, dim=1)
    loss = F.kl_div(
        F.log_softmax(student(d.val.x) / tau, dim=1), q, reduction="batchmean", log_target=True
    )
    loss.backward()
    out = dict(KDE().unlearn(model(), d, cfg).model.named_parameters())
    for n, p in student.named_parameters():
        assert torch.allclose(out[n], p.detach() - lr * (p.grad + wd * p.detach()), atol=1e-6), n
    # the result depends on the validation inputs
    shifted = UnlearnData(
        d.retain,
        d.forget,
        type(d.val)("v", d.val.x + 1, d.val.y, d.val.ids, "multiclass", d.val.classes),
    )
    other = dict(KDE().unlearn(model(), shifted, cfg).model.named_parameters())
    assert not torch.allclose(other["fc.weight"], out["fc.weight"])


def test_retain_phase_loss_terms() -> None:
    """SoftCE = KL_τ(T‖S) + H(softmax(z_T/τ)) (the teacher's entropy), batch-averaged."""
    zs, zt, tau = torch.randn(6, 4), torch.randn(6, 4), 3.0
    q = F.softmax(zt / tau, dim=1)
    kl = F.kl_div(F.log_softmax(zs / tau, dim=1), q, reduction="batchmean")
    ent = -(q * q.log()).sum(dim=1).mean()
    assert torch.allclose(soft_ce(zs, zt, tau), kl + ent, atol=1e-6)
