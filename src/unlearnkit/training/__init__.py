"""Deterministic training (Original and Retrain), user training functions, and prediction.

Modules, in import order: :mod:`~unlearnkit.training.predict` (devices, logits, accuracy),
:mod:`~unlearnkit.training.augmentation` (the one augmentation vocabulary),
:mod:`~unlearnkit.training.objective` (the regularised risk ``J``),
:mod:`~unlearnkit.training.recipes` (SGD and L-BFGS recipes),
:mod:`~unlearnkit.training.loop` (``train``/``retrain`` and :data:`TrainFn`),
:mod:`~unlearnkit.training.batched` (``train_many``: K small models in one vmap'd SGD run).
"""

from unlearnkit.training.augmentation import (
    AUGMENTATIONS,
    Augment,
    Pipeline,
    auto_pipeline,
    check_pipeline,
    compose,
    hflip,
    random_crop,
)
from unlearnkit.training.batched import BatchedFit, train_many
from unlearnkit.training.loop import (
    ModelFactory,
    TrainFn,
    TrainResult,
    recipe_train_fn,
    retrain,
    run_train_fn,
    train,
)
from unlearnkit.training.objective import objective, objective_grad_norm
from unlearnkit.training.predict import evaluate_accuracy, predict_logits, resolve_device
from unlearnkit.training.recipes import RECIPES, Fit, LBFGSRecipe, Recipe, SGDRecipe, make_recipe

__all__ = [
    "AUGMENTATIONS",
    "BatchedFit",
    "RECIPES",
    "Augment",
    "Fit",
    "LBFGSRecipe",
    "ModelFactory",
    "Pipeline",
    "Recipe",
    "SGDRecipe",
    "TrainFn",
    "TrainResult",
    "auto_pipeline",
    "check_pipeline",
    "compose",
    "evaluate_accuracy",
    "hflip",
    "make_recipe",
    "objective",
    "objective_grad_norm",
    "predict_logits",
    "random_crop",
    "recipe_train_fn",
    "resolve_device",
    "retrain",
    "run_train_fn",
    "train",
    "train_many",
]
