"""Task objects (loss, prediction, correctness, label sampling, GGN factor) against
hand-written formulas."""

from __future__ import annotations

import math

import pytest
import torch

from unlearnkit.errors import ConfigError, DataError
from unlearnkit.tasks import TASKS, Task, get_task, mean_loss, per_sample_loss, predict


def test_registry_has_both_tasks() -> None:
    assert TASKS.names() == ["multiclass", "multilabel"]
    assert get_task("multiclass") is TASKS.get("multiclass")
    assert get_task(TASKS.get("multilabel")).name == "multilabel"
    with pytest.raises(ConfigError, match="unknown task"):
        per_sample_loss("regression", torch.zeros(1, 2), torch.zeros(1))


def test_multiclass_is_logsumexp_minus_target_logit() -> None:
    z = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    expected = [
        math.log(math.e + math.e**2 + math.e**3) - 1.0,
        math.log(3.0),
    ]
    got = per_sample_loss("multiclass", z, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(mean_loss("multiclass", z, y), got.mean())
    assert predict("multiclass", z).tolist() == [2, 0]


def test_multilabel_sums_bce_over_attributes() -> None:
    z = torch.tensor([[0.0, 2.0], [-1.0, 3.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)

    def sig(t: float) -> float:
        return 1 / (1 + math.exp(-t))

    expected = [
        -math.log(sig(0.0)) - math.log(1 - sig(2.0)),
        -math.log(1 - sig(-1.0)) - math.log(sig(3.0)),
    ]
    got = per_sample_loss("multilabel", z, y)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(mean_loss("multilabel", z, y), got.mean())
    assert predict("multilabel", z).tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_bad_targets_are_refused() -> None:
    with pytest.raises(DataError, match="int64"):
        per_sample_loss("multiclass", torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(DataError, match="float matrix"):
        per_sample_loss("multilabel", torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int64))
    with pytest.raises(DataError, match="float matrix"):
        per_sample_loss("multilabel", torch.zeros(2, 3), torch.zeros(2, 2))

    with pytest.raises(DataError, match="0..2"):
        per_sample_loss("multiclass", torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(DataError, match="0..2"):
        per_sample_loss("multiclass", torch.zeros(2, 3), torch.tensor([-1, 0]))
    with pytest.raises(DataError, match="0 or 1"):
        per_sample_loss("multilabel", torch.zeros(2, 2), torch.tensor([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(DataError, match="2 logits but 3 targets"):
        per_sample_loss("multiclass", torch.zeros(2, 3), torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="a task is a name or a Task"):
        get_task(3)  # type: ignore[arg-type]


def test_sample_loss_is_the_per_sample_loss_of_one_row() -> None:
    z = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.0, -0.7]], dtype=torch.float64)
    for task, y in (
        ("multiclass", torch.tensor([2, 0])),
        ("multilabel", torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)),
    ):
        spec = get_task(task)
        batch = spec.per_sample_loss(z, y)
        for i in range(2):
            torch.testing.assert_close(spec.sample_loss(z[i], y[i]), batch[i])


def test_logit_gradients_by_hand() -> None:
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # softmax = (1/4, 3/4)
    g = get_task("multiclass").logit_gradient(z, torch.tensor([1]))
    torch.testing.assert_close(g, torch.tensor([[0.25, -0.25]], dtype=torch.float64))
    zl = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # sigmoid = (1/2, 3/4)
    gl = get_task("multilabel").logit_gradient(zl, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(gl, torch.tensor([[-0.5, 0.75]], dtype=torch.float64))


def test_accuracy_and_correctness_by_hand() -> None:
    z = torch.tensor([[3.0, 1.0], [0.0, 2.0], [5.0, 4.0]])
    mc = get_task("multiclass")
    assert mc.correct(z, torch.tensor([0, 0, 0])).tolist() == [1.0, 0.0, 1.0]
    assert mc.accuracy(z, torch.tensor([0, 0, 0])) == pytest.approx(2 / 3)
    ml = get_task("multilabel")  # predictions (1,1), (0,1), (1,1)
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert ml.correct(z - 0.5 * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]), y).tolist() == [
        0.5,
        1.0,
        0.0,
    ]
    assert ml.accuracy(z, y) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_label_sampling_by_inverse_cdf() -> None:
    # softmax(0, log 3) = (1/4, 3/4): u < 1/4 draws class 0, otherwise class 1
    z = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)
    mc = get_task("multiclass")
    assert mc.uniform_shape(2) == ()
    u = torch.tensor([[0.1, 0.2499, 0.2501, 0.9]])
    assert mc.sample_labels(z, u).tolist() == [[0, 0, 1, 1]]
    # sigmoid(0, log 3) = (1/2, 3/4): attribute a is 1 iff u_a < p_a
    ml = get_task("multilabel")
    assert ml.uniform_shape(2) == (2,)
    ub = torch.tensor([[[0.4, 0.8], [0.6, 0.7]]], dtype=torch.float64)
    assert ml.sample_labels(z, ub).tolist() == [[[1.0, 0.0], [0.0, 1.0]]]


def _hessian(task: Task, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.hessian(lambda t: task.sample_loss(t, y), z)


def test_ggn_factor_reproduces_the_logit_hessian() -> None:
    """L Lᵀ = d²ℓ/dz², with L's columns read off ``ggn_values`` (linear in z): by hand for
    softmax(0, log 3) = (1/4, 3/4): H = diag(p) − p pᵀ = [[3/16, −3/16], [−3/16, 3/16]]."""
    z = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    for task, y, want in (
        (
            "multiclass",
            torch.tensor(1),
            torch.tensor([[3 / 16, -3 / 16], [-3 / 16, 3 / 16]], dtype=torch.float64),
        ),
        (
            "multilabel",
            torch.tensor([1.0, 0.0], dtype=torch.float64),
            torch.diag(torch.tensor([1 / 4, 3 / 16], dtype=torch.float64)),
        ),
    ):
        spec = get_task(task)
        aux = spec.ggn_aux(z[None], y[None])[0]
        lt = torch.stack([spec.ggn_values(e, aux) for e in torch.eye(2, dtype=torch.float64)], 1)
        torch.testing.assert_close(lt.T @ lt, want)
        torch.testing.assert_close(want, _hessian(spec, z, y))


def test_same_kind_selects_matching_targets() -> None:
    mc = get_task("multiclass")
    assert mc.same_kind(torch.tensor([2, 2]), torch.tensor([0, 2, 1, 2])).tolist() == [
        False,
        True,
        False,
        True,
    ]
    ml = get_task("multilabel")
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert ml.same_kind(y, y, attribute=1).tolist() == [False, True]
    assert ml.same_kind(y, y).tolist() == [True, True]


def test_tasks_coerce_and_infer_user_labels() -> None:
    """Each Task converts a user's labels to its stored form, and the labels' shape and dtype
    name exactly one task (the data layer asks the tasks instead of spelling them out)."""
    from unlearnkit.errors import DataError
    from unlearnkit.tasks import get_task, infer_task

    mc, ml = get_task("multiclass"), get_task("multilabel")
    y, names = mc.coerce_targets(torch.tensor([2, 0, 1], dtype=torch.int32), None)
    assert y.dtype == torch.int64 and y.tolist() == [2, 0, 1] and names == ("0", "1", "2")
    with pytest.raises(DataError, match=r"\[0, 2\)"):
        mc.coerce_targets(torch.tensor([2, 0]), ("a", "b"))
    m, names = ml.coerce_targets(torch.tensor([[1, 0], [0, 1]]), ("u", "v"))
    assert m.dtype == torch.float32 and names == ("u", "v")
    with pytest.raises(DataError, match="0/1"):
        ml.coerce_targets(torch.tensor([[2.0, 0.0]]), None)
    assert infer_task(torch.tensor([0, 3, 1])) is mc
    assert infer_task(torch.tensor([[0.0, 1.0]])) is ml
    with pytest.raises(DataError, match="integer class indices"):
        infer_task(torch.tensor([0.5, 1.0]))
