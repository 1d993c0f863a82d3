"""The environment a run executed in: package versions, device, threads, host.

Recorded once per distinct environment in the store's ``environment`` table and referenced by
every run, so a result can always be traced to the software and hardware that produced it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
from typing import Any

import torch

PACKAGES = (
    "torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "optuna",
    "safetensors",
    "pydantic",
    "unlearnkit",
)


def resolve_device(device: str) -> str:
    """``auto`` means ``cuda`` when available, else ``cpu``; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: str) -> dict[str, Any]:
    """Versions of :data:`PACKAGES` (plus ray when imported), Python, OS, host, CPU count,
    torch threads, and the device (with the GPU name on CUDA)."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "packages": {p: _version(p) for p in PACKAGES},
    }
    if "ray" in __import__("sys").modules:
        info["packages"]["ray"] = _version("ray")
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda"] = torch.version.cuda
    return info
