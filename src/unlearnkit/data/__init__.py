"""Datasets (a registry), splits and forget-set selectors."""

from unlearnkit.data.base import ArrayDataset, Task

__all__ = ["ArrayDataset", "Task"]
