"""SRL: retain ∪ randomly relabelled forget, fresh labels every epoch."""

from __future__ import annotations

import torch
from blob_mlp_fixtures import blobs, mean_ce, original, tiny_data

from unlearnkit.methods.base import UnlearnData
from unlearnkit.methods.srl import SuccessiveRandomLabels, relabel_epochs, relabelled_batches


def _marked_data(n_forget_per_class: int = 100) -> UnlearnData:
    """Inputs carry their own id in column 0, so every batch row can be traced back."""
    retain = blobs(5, 1, 0, "retain")
    forget = blobs(n_forget_per_class, 2, 1000, "forget")
    for ds in (retain, forget):
        ds.x[:, 0] = ds.ids.float()
    return UnlearnData(retain, forget)


def _read(batches, data):
    """(forget ids in reading order, their labels) and the retain labels, from one epoch."""
    true = {int(i): int(y) for i, y in zip(data.retain.ids, data.retain.y, strict=True)}
    true |= {int(i): int(y) for i, y in zip(data.forget.ids, data.forget.y, strict=True)}
    f_ids, f_lab, r_ok, seen = [], [], True, []
    for x, y in batches:
        for sid, lab in zip(x[:, 0].long().tolist(), y.tolist(), strict=True):
            seen.append(sid)
            if sid >= 1000:
                f_ids.append(sid)
                f_lab.append(lab)
            else:
                r_ok &= lab == true[sid]
    return f_ids, f_lab, r_ok, seen, true


def test_corrected_labels_always_differ_and_cover_every_sample_once():
    data = _marked_data()
    g, lg = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    batches = relabelled_batches(data.retain, data.forget, 3, 32, g, lg, exclude_true=True)
    f_ids, f_lab, r_ok, seen, true = _read(batches, data)
    assert sorted(seen) == sorted(true)  # a permutation of retain ∪ forget
    assert r_ok  # retain labels untouched
    assert all(lab != true[i] for i, lab in zip(f_ids, f_lab, strict=True))
    assert set(f_lab) == {0, 1, 2}


def test_faithful_labels_can_equal_the_true_label():
    data = _marked_data()
    g, lg = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    batches = relabelled_batches(data.retain, data.forget, 3, 32, g, lg, exclude_true=False)
    f_ids, f_lab, _, _, true = _read(batches, data)
    same = sum(lab == true[i] for i, lab in zip(f_ids, f_lab, strict=True))
    assert 50 < same < 150  # about a third of 300 draws, as for uniform labels over 3 classes


def test_faithful_reseeds_the_label_rng_every_epoch():
    """Faithful: the label sequence (in reading order) repeats each epoch while the order changes.
    Corrected: the label stream runs on."""
    data = _marked_data(20)
    for faithful in (True, False):
        epochs = relabel_epochs(data, 16, torch.Generator().manual_seed(0), faithful)
        ids1, lab1, *_ = _read(next(epochs), data)
        ids2, lab2, *_ = _read(next(epochs), data)
        assert ids1 != ids2
        assert (lab1 == lab2) == faithful


def test_srl_trains_on_wrong_labels():
    """Random forget labels push forget CE up more than they push retain CE up."""
    data = tiny_data(n_forget=15)
    model = original()
    out = (
        SuccessiveRandomLabels()
        .unlearn(model, data, {"batch_size": 16, "num_epochs": 5, "learning_rate": 0.1})
        .model
    )
    assert mean_ce(out, data.forget) - mean_ce(model, data.forget) > 0.2
