"""Experiment files: read a preset or a YAML/TOML file into a validated :class:`Experiment`.

Sizes and encodings are checked before parsing (at most 1 MiB of UTF-8), YAML is loaded with
a safe loader that refuses aliases (no "billion laughs" amplification), and the whole
experiment is validated (every method's configuration and dataset parameter included) before
any work starts. The schema itself is :mod:`unlearnkit.bench.config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from unlearnkit.bench.config import Experiment
from unlearnkit.bench.presets import PRESETS, preset_text
from unlearnkit.errors import ConfigError

#: Experiment files larger than this are refused before they are read.
MAX_EXPERIMENT_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses aliases (``*name``, ``<<: *name``): each alias is
    another reference to an anchored node, so a few hundred bytes of nested aliases
    ("billion laughs") expand into gigabytes once the document is walked."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(
                f"YAML anchors and aliases are not allowed in an experiment file (alias at "
                f"line {mark.line + 1}): write the values out"
            )
        return super().compose_node(parent, index)


def _parse_text(text: str, suffix: str, where: str) -> dict[str, Any]:
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except Exception as err:  # yaml.YAMLError, tomllib.TOMLDecodeError
        raise ConfigError(f"{where} is not valid {suffix.lstrip('.').upper()}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: an experiment file must hold a mapping at the top level")
    return data


def parse_experiment(data: dict[str, Any], where: str = "experiment") -> Experiment:
    """Validate a mapping into an :class:`Experiment`; errors name the offending fields."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(map(str, e['loc'])) or '(top level)'}: {e['msg']}" for e in err.errors()
        ]
        raise ConfigError(f"{where} is invalid:\n" + "\n".join(lines)) from None


def load_experiment(source: str | Path) -> Experiment:
    """A preset name (``smoke``, ``cpu``, ``cifar10-resnet18``) or a YAML/TOML file path."""

    src = str(source)
    path = Path(src)
    if path.suffix.lower() in (".yaml", ".yml", ".toml", ".json") or path.exists():
        if not path.is_file():
            raise ConfigError(f"experiment file {path} does not exist")
        if path.stat().st_size > MAX_EXPERIMENT_BYTES:
            raise ConfigError(
                f"experiment file {path} is larger than {MAX_EXPERIMENT_BYTES // 1024} KiB; "
                "an experiment is a short YAML or TOML file"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"experiment file {path} is not UTF-8 text: {err}") from None
        suffix = ".toml" if path.suffix.lower() == ".toml" else ".yaml"
        return parse_experiment(_parse_text(text, suffix, str(path)), str(path))
    if src in PRESETS:
        return parse_experiment(_parse_text(preset_text(src), ".yaml", f"preset {src}"), src)
    raise ConfigError(
        f"{src!r} is neither a preset ({', '.join(PRESETS)}) nor an experiment file "
        "(.yaml, .yml or .toml)"
    )
