"""Unlearning methods behind one interface (see :mod:`unlearnkit.methods.base`)."""

from unlearnkit.methods.base import METHODS, MethodConfig, UnlearnData, Unlearner, UnlearnResult

__all__ = ["METHODS", "MethodConfig", "UnlearnData", "Unlearner", "UnlearnResult"]
