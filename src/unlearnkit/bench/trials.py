"""Method configurations of an experiment: the fixed values, a trial's values on top of them,
and the check that both are valid before any work (issue 12, defect 8).

A trial's configuration is the experiment's fixed ``config`` of the method, deep-merged with
the sampled parameters (dotted names, ``"retain_optimizer.learning_rate"``, nest). A search
space is checked at two points, every dimension at its low end and every one at its high end;
each method's ``Config`` refuses unknown keys and out-of-range values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution
from pydantic import ValidationError

from unlearnkit.methods import METHODS
from unlearnkit.methods.toolkit.search_space import nest_params


def field_errors(err: ValidationError) -> str:
    """``field: message`` for each error of ``err``, joined by ``; ``."""
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '(all)'}: {e['msg']}" for e in err.errors())


def merge_config(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: ``override``'s leaves replace ``base``'s; nested dicts merge."""
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_config(out[k], v)
        else:
            out[k] = v
    return out


def trial_config(fixed: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A method config: the experiment's fixed values, then the sampled (dotted) params."""
    return merge_config(fixed, nest_params(params))


def corners(space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Two points of a search space: every dimension at its low end, then at its high end
    (a categorical's first and last choice)."""
    points: list[dict[str, Any]] = [{}, {}]
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            ends = (dist.choices[0], dist.choices[-1])
        else:
            ends = (dist.low, dist.high)  # type: ignore[attr-defined]
        points[0][name], points[1][name] = ends
    return points


def check_method_config(name: str, fixed: dict[str, Any], max_epochs: Sequence[int]) -> None:
    """Raise :class:`ValueError` naming the field if ``fixed`` is not a valid configuration
    of method ``name`` (its ``Config`` class), or if a trial's configuration built from it
    would not be: checked at both corners of the search space for every E* in ``max_epochs``
    (empty: the method is not searched)."""
    method = METHODS.get(name)()
    try:
        method.Config.model_validate(fixed)
    except ValidationError as err:
        raise ValueError(f"method {name!r}: config.{field_errors(err)}") from None
    for e_star in sorted(set(max_epochs)):
        space = method.search_space_for(e_star, bool(fixed.get("faithful", False)))
        for point in corners(space):
            try:
                method.Config.model_validate(trial_config(fixed, point))
            except ValidationError as err:
                raise ValueError(
                    f"method {name!r}: its config breaks the searched configurations "
                    f"(E* = {e_star}, trial {point}): {field_errors(err)}"
                ) from None
