"""Kronecker sums as flat tensors (``inverse.safetensors`` of a Kronecker erasure state) plus
the facts that name them (the manifest's ``kronecker`` entry, covered by ``manifest_sha256``).

Tensors, layer i and diagonal parameter j in the order of the facts' ``layers`` / ``diag``::

    count                    n (0-dim)
    layers.i.a_sum           Σ ã ãᵀ (d_in, d_in)        layers.i.g_sum   Σ g gᵀ (d_out, d_out)
    layers.i.positions       T (0-dim)                  diag.j           Σ (∂v/∂θ)² (param shape)
    scales.count             EK-FAC only: n of the scale sums
    scales.i.sums            (d_out, d_in) in the eigenbasis bases.i.{UA, alpha, UG, gamma}

Facts: ``mode``, ``seed``, ``samples`` (the label mode and its draws), ``layers`` (each
:class:`~unlearnkit.curvature.kfac.capture.LayerSpec` as a dict), ``diag`` (names) and
``ekfac``. Reading checks every tensor is present, of the stated shape, and finite
(:class:`~unlearnkit.errors.StateMismatchError` otherwise); values round-trip bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from unlearnkit.curvature.kfac.capture import LayerSpec
from unlearnkit.curvature.kfac.ekfac import LayerEigen, ScaleSums
from unlearnkit.curvature.kfac.factors import KFACSums, LayerSums
from unlearnkit.errors import StateMismatchError


@dataclass(frozen=True)
class KroneckerTensors:
    """The sums (and EK-FAC scale sums) of a state, written by
    :func:`~unlearnkit.ssse.persistence.write_state_folder` through :meth:`state_dict`."""

    sums: KFACSums
    scales: ScaleSums | None

    def facts(self) -> dict[str, Any]:
        s = self.sums
        return {
            "mode": s.mode,
            "seed": s.seed,
            "samples": s.samples,
            "layers": [asdict(ls.spec) for ls in s.layers.values()],
            "diag": list(s.diag),
            "ekfac": self.scales is not None,
        }

    def state_dict(self) -> dict[str, Tensor]:
        s = self.sums
        out = {"count": s.count}
        for i, ls in enumerate(s.layers.values()):
            out |= {
                f"layers.{i}.a_sum": ls.a_sum,
                f"layers.{i}.g_sum": ls.g_sum,
                f"layers.{i}.positions": ls.positions,
            }
        for j, d in enumerate(s.diag.values()):
            out[f"diag.{j}"] = d
        if self.scales is not None:
            out["scales.count"] = self.scales.count
            for i, k in enumerate(s.layers):
                e = self.scales.bases[k]
                out |= {
                    f"scales.{i}.sums": self.scales.sums[k],
                    f"bases.{i}.UA": e.UA,
                    f"bases.{i}.alpha": e.alpha,
                    f"bases.{i}.UG": e.UG,
                    f"bases.{i}.gamma": e.gamma,
                }
        return out


def _get(t: dict[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    if key not in t:
        raise StateMismatchError(f"the Kronecker sums lack the tensor {key!r}")
    v = t[key]
    if tuple(v.shape) != shape:
        raise StateMismatchError(f"tensor {key!r} has shape {tuple(v.shape)}, expected {shape}")
    if v.is_floating_point() and not bool(torch.isfinite(v).all()):
        raise StateMismatchError(f"tensor {key!r} has NaN/Inf entries")
    return v


def read_kronecker(
    t: dict[str, Tensor], facts: Any, param_shapes: dict[str, tuple[int, ...]]
) -> KroneckerTensors:
    """The sums written by :meth:`KroneckerTensors.state_dict` with ``facts``; the layers and
    diagonal parameters must cover exactly the parameters ``param_shapes`` (the layout)."""
    try:
        specs = [LayerSpec(**spec) for spec in facts["layers"]]
        diag_names = [str(k) for k in facts["diag"]]
        mode, seed, samples = str(facts["mode"]), int(facts["seed"]), int(facts["samples"])
        ekfac = bool(facts["ekfac"])
    except (KeyError, TypeError, ValueError) as e:
        raise StateMismatchError(f"the manifest's kronecker facts are incomplete: {e}") from None
    covered = [p for s in specs for p in s.params] + diag_names
    if sorted(covered) != sorted(param_shapes):
        raise StateMismatchError(
            "the Kronecker sums do not cover the state's parameters exactly "
            f"(sums: {len(covered)} tensors, layout: {len(param_shapes)})"
        )
    layers = {}
    for i, s in enumerate(specs):
        layers[s.name] = LayerSums(
            s,
            _get(t, f"layers.{i}.a_sum", (s.d_in, s.d_in)),
            _get(t, f"layers.{i}.g_sum", (s.d_out, s.d_out)),
            _get(t, f"layers.{i}.positions", ()),
        )
    diag = {k: _get(t, f"diag.{j}", param_shapes[k]) for j, k in enumerate(diag_names)}
    sums = KFACSums(mode, seed, samples, _get(t, "count", ()), layers, diag)
    if not ekfac:
        return KroneckerTensors(sums, None)
    scale, bases = {}, {}
    for i, s in enumerate(specs):
        scale[s.name] = _get(t, f"scales.{i}.sums", (s.d_out, s.d_in))
        bases[s.name] = LayerEigen(
            s,
            _get(t, f"bases.{i}.UA", (s.d_in, s.d_in)),
            _get(t, f"bases.{i}.alpha", (s.d_in,)),
            _get(t, f"bases.{i}.UG", (s.d_out, s.d_out)),
            _get(t, f"bases.{i}.gamma", (s.d_out,)),
        )
    scales = ScaleSums(mode, seed, samples, _get(t, "scales.count", ()), scale, bases)
    return KroneckerTensors(sums, scales)


def sums_to(kt: KroneckerTensors, device: torch.device) -> KroneckerTensors:
    """The sums on ``device`` (unchanged objects when already there)."""
    if kt.sums.count.device == device:
        return kt

    def mv(x: Tensor) -> Tensor:
        return x.to(device)

    s = kt.sums
    sums = KFACSums(
        s.mode,
        s.seed,
        s.samples,
        mv(s.count),
        {
            k: LayerSums(v.spec, mv(v.a_sum), mv(v.g_sum), mv(v.positions))
            for k, v in s.layers.items()
        },
        {k: mv(v) for k, v in s.diag.items()},
    )
    scales = None
    if kt.scales is not None:
        c = kt.scales
        bases = {
            k: LayerEigen(e.spec, mv(e.UA), mv(e.alpha), mv(e.UG), mv(e.gamma))
            for k, e in c.bases.items()
        }
        sc = {k: mv(v) for k, v in c.sums.items()}
        scales = ScaleSums(c.mode, c.seed, c.samples, mv(c.count), sc, bases)
    return KroneckerTensors(sums, scales)
