"""Experiment presets shipped with the package (YAML files in this folder).

* ``smoke``: CI-sized (about a minute on 2 cores): digits, a small MLP, FT, GA and NG+,
  2 seeds, 4 search trials on one seed.
* ``cpu``: all 21 rows on MNIST-1D and mnist5k with an MLP and the small CNN, 10 seeds.
* ``cifar10-resnet18``: Deep Unlearn's main setting (CIFAR-10, ResNet-18, 182 epochs,
  3 x 100-trial searches); needs the CIFAR-10 python batches and a GPU.
* ``memorise``: memorising Originals (MNIST-1D, mnist5k; MLP and CNN with BatchNorm), each with
  a random 10 %, a whole-class and a memorisation-stratified forget set, 5 seeds.
* ``memorise-cnn``: two of memorise's mnist5k settings (random 10 %, memorised 10 %), CNN-BN, oracle
  pools of 64, SSSE searched and with the retrain-free ``eps="auto"``; runs on 2 CPU cores.
"""

from __future__ import annotations

from importlib import resources

from unlearnkit.errors import ConfigError

PRESETS: tuple[str, ...] = ("smoke", "cpu", "cifar10-resnet18", "memorise", "memorise-cnn")


def preset_text(name: str) -> str:
    """The YAML text of preset ``name``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return resources.files(__name__).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
