"""Datasets (a registry), splits, forget-set selectors and the data plan."""

from unlearnkit.data import (  # noqa: F401  (register loaders and the memorised selector)
    attributes,
    celeba,
    cifar,
    memorised,
    mnist,
)
from unlearnkit.data.base import ArrayDataset, Task
from unlearnkit.data.forget import (
    FORGET_SELECTORS,
    ForgetSpec,
    ForgetSplit,
    ForgetStep,
    parse_forget_spec,
    select_forget,
)
from unlearnkit.data.plan import DataPlan, Split
from unlearnkit.data.registry import DATASETS, DatasetEntry, dataset_info, load_dataset
from unlearnkit.data.splits import Splits, train_val_test_split
from unlearnkit.data.user import StreamingDataset, as_dataset

__all__ = [
    "DATASETS",
    "FORGET_SELECTORS",
    "ArrayDataset",
    "DataPlan",
    "DatasetEntry",
    "ForgetSpec",
    "ForgetSplit",
    "ForgetStep",
    "Split",
    "Splits",
    "StreamingDataset",
    "Task",
    "as_dataset",
    "dataset_info",
    "load_dataset",
    "parse_forget_spec",
    "select_forget",
    "train_val_test_split",
]
