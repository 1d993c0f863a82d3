"""Model registry: ``build_model(name, input_shape, num_outputs, seed, **options)``.

Models: ``linear`` (SSSE's bias-free multi-attribute logistic regression), ``logreg``, ``mlp``,
``cnn`` (small conv net, 1-D or 2-D), ``resnet20`` (CIFAR ResNet), ``resnet18`` (torchvision
layout). Each exposes its classifier Linear as ``fc``; any other model's head is found by
:func:`find_classifier_head`.
"""

from unlearnkit.models import cnn, linear, logreg, mlp, resnet18, resnet20  # noqa: F401 (register)
from unlearnkit.models.heads import find_classifier_head
from unlearnkit.models.registry import (
    MODELS,
    ModelOptions,
    ModelSpec,
    build_from_spec,
    build_model,
    count_parameters,
    model_info,
    spec_of,
)

__all__ = [
    "MODELS",
    "ModelOptions",
    "ModelSpec",
    "build_from_spec",
    "build_model",
    "count_parameters",
    "find_classifier_head",
    "model_info",
    "spec_of",
]
