"""find_classifier_head: any head name, named paths, Hugging Face models, clear refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unlearnkit.errors import UnsupportedError
from unlearnkit.models import build_model, find_classifier_head


class Scorer(nn.Module):
    """A head called ``scores`` behind a hidden Linear of another width."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5))
        self.scores = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(torch.relu(self.trunk(x)))


def test_finds_a_head_with_any_name_and_the_registry_models_fc() -> None:
    m = Scorer()
    assert find_classifier_head(m) == ("scores", m.scores)
    assert find_classifier_head(m, num_outputs=3) == ("scores", m.scores)
    cnn = build_model("cnn", (1, 8, 8), 4, seed=0)
    assert find_classifier_head(cnn, num_outputs=4) == ("fc", cnn.fc)


def test_named_head_and_refusals() -> None:
    m = Scorer()
    assert find_classifier_head(m, head="trunk.2") == ("trunk.2", m.trunk[2])
    with pytest.raises(UnsupportedError, match="no submodule 'nope'.*'scores'"):
        find_classifier_head(m, head="nope")
    with pytest.raises(UnsupportedError, match="ReLU, not a torch.nn.Linear"):
        find_classifier_head(m, head="trunk.1")
    with pytest.raises(UnsupportedError, match="has 5 outputs, but the data has 3"):
        find_classifier_head(m, head="trunk.2", num_outputs=3)
    # the last Linear has 3 outputs, an earlier one has 5: ambiguous for 5 outputs
    with pytest.raises(UnsupportedError, match=r"cannot tell.*\['trunk.2'\].*head="):
        find_classifier_head(m, num_outputs=5)
    with pytest.raises(UnsupportedError, match="no Linear layer with 7 outputs"):
        find_classifier_head(m, num_outputs=7)
    with pytest.raises(UnsupportedError, match="no torch.nn.Linear"):
        find_classifier_head(nn.Sequential(nn.Conv2d(1, 2, 3)))


def test_hugging_face_classifiers_built_offline_from_a_config() -> None:
    transformers = pytest.importorskip("transformers")
    bert_cfg = transformers.BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
    )
    bert = transformers.BertForSequenceClassification(bert_cfg)
    assert find_classifier_head(bert, num_outputs=3) == ("classifier", bert.classifier)
    vit_cfg = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=4,
    )
    vit = transformers.ViTForImageClassification(vit_cfg)
    assert find_classifier_head(vit, num_outputs=4) == ("classifier", vit.classifier)
