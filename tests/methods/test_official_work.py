"""Faithful mode runs (and times) the extra work inside Deep Unlearn's timed region."""

from __future__ import annotations

import torch
from tiny_resnet_fixtures import data, dataset, model, one_thread  # noqa: F401

from unlearnkit.data.base import ArrayDataset
from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.bt import BadTeacher
from unlearnkit.methods.cfw import CFW
from unlearnkit.methods.prmq import PRMQ
from unlearnkit.methods.rni import RNI
from unlearnkit.methods.scrub import SCRUB
from unlearnkit.methods.toolkit.official_work import EXTRA_KEY

N_RETAIN, N_FORGET, N_VAL = 24, 8, 9  # tiny_resnet_fixtures.data()


def _counted(method, cfg, d=None, seed=0):
    """Run ``method`` on a tiny ResNet whose forward passes count their samples (the hook is
    deep-copied with the model, so teachers and the working copy all count)."""
    seen = [0]
    m = model(seed)
    m.register_forward_pre_hook(lambda _, args: seen.__setitem__(0, seen[0] + len(args[0])))
    res = method.unlearn(m, d or data(), cfg)
    return res, seen[0]


def _check_modes(method, cfg, d=None):
    plain, n_plain = _counted(method, {**cfg, "faithful": False}, d)
    faith, n_faith = _counted(method, {**cfg, "faithful": True}, d)
    assert EXTRA_KEY not in plain.info
    assert 0 < faith.info[EXTRA_KEY] < faith.seconds
    return plain, faith, n_faith - n_plain


def test_scrub_evaluates_retain_val_and_forget_val_every_epoch_and_saves_checkpoints():
    e = 3
    cfg = {"sgda_num_epochs": e, "msteps": 1, "retain_batch_size": 8, "forget_batch_size": 8}
    plain, faith, extra = _check_modes(SCRUB(), cfg)
    # random forgetting over all 3 classes: forget-val = all of val
    assert extra == e * (N_RETAIN + N_VAL + N_VAL) + N_RETAIN + N_VAL
    assert faith.info["official_checkpoints"] == e


def test_rni_evaluates_val_after_every_epoch():
    cfg = {"num_epochs": 4, "fine_num_epochs": 2, "batch_size": 8}
    _, _, extra = _check_modes(RNI(), cfg)
    assert extra == 4 * N_VAL


def test_cfw_runs_one_prediction_pass_over_retain():
    _, _, extra = _check_modes(CFW(), {"num_epochs": 2, "batch_size": 8})
    assert extra == N_RETAIN


def test_prmq_reads_the_retain_labels_without_changing_the_model():
    plain, faith, extra = _check_modes(PRMQ(), {"num_epochs": 1.0, "batch_size": 8})
    assert extra == 0  # a label pass, no forward
    for p, q in zip(plain.model.parameters(), faith.model.parameters(), strict=True):
        assert torch.equal(p, q)


def _image(name: str, n: int, seed: int, first_id: int) -> ArrayDataset:
    ds = dataset(name, n, seed, first_id)
    x = torch.nn.functional.interpolate(ds.x, size=(16, 16))
    return ArrayDataset(ds.name, x, ds.y, ds.ids, ds.task, ds.classes)


def test_bt_writes_one_checkpoint_per_epoch():
    # BT's faithful teacher is a ResNet-18, which needs 16x16 inputs at least
    img = UnlearnData(retain=_image("retain", 6, 1, 0), forget=_image("forget", 3, 2, 100))
    _, faith, _ = _check_modes(BadTeacher(), {"num_epochs": 2, "batch_size": 4}, img)
    assert faith.info["official_checkpoints"] == 2
