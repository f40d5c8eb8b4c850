"""Divergence metrics between two tensors, and reductions over traces (spec §12.7).

Every metric compares a reference tensor ``a`` with another tensor ``b`` of the same shape,
flattened and cast to float64, and returns a divergence: 0 for identical tensors, larger for
tensors that differ more; equal tensors give exactly 0.

- ``"cosine"``: ``1 - a·b / (‖a‖₂ ‖b‖₂)``, in [0, 2] (rounding below 0 is clamped to 0). Two all-zero tensors give 0; one all-zero
  tensor against a non-zero one gives 1.
- ``"relative_l2"`` (aliases ``"l2"``, ``"rel_l2"``): ``‖a - b‖₂ / ‖a‖₂``, the L2 distance
  relative to the reference; 0 when both are zero, ``inf`` when only the reference is zero.
- ``"pearson"``: ``1 - r`` with ``r`` the Pearson correlation of the elements of ``a`` and
  ``b``, in [0, 2]. When either tensor is constant (``r`` undefined) the divergence is 0 if the
  tensors are equal and 1 otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

METRICS = ("cosine", "relative_l2", "pearson")
_ALIASES = {"l2": "relative_l2", "rel_l2": "relative_l2", "relative_l2": "relative_l2", "cosine": "cosine"}
_ALIASES["pearson"] = "pearson"

REDUCTIONS = ("mean", "sum", "std", "var", "min", "max", "median")


def metric_name(metric: str) -> str:
    """The canonical name of ``metric``.

    Raises:
        ValueError: An unknown metric.
    """
    name = _ALIASES.get(metric) if isinstance(metric, str) else None
    if name is None:
        raise ValueError(f"metric must be one of {list(METRICS)} (or 'l2', 'rel_l2'), not {metric!r}.")
    return name


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).to(device="cpu", dtype=torch.float64)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = _flat(a), _flat(b)
    nx, ny = float(x.norm()), float(y.norm())
    if nx == 0.0 and ny == 0.0:
        return 0.0
    if nx == 0.0 or ny == 0.0:
        return 1.0
    return max(0.0, 1.0 - float(torch.dot(x, y)) / (nx * ny))


def relative_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = _flat(a), _flat(b)
    dist, ref = float((x - y).norm()), float(x.norm())
    if ref == 0.0:
        return 0.0 if dist == 0.0 else math.inf
    return dist / ref


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = _flat(a), _flat(b)
    xc, yc = x - x.mean(), y - y.mean()
    sx, sy = float(xc.norm()), float(yc.norm())
    if sx == 0.0 or sy == 0.0:
        return 0.0 if torch.equal(x, y) else 1.0
    return max(0.0, 1.0 - float(torch.dot(xc, yc)) / (sx * sy))


_FUNCS: dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "cosine": cosine,
    "relative_l2": relative_l2,
    "pearson": pearson,
}


def divergence(a: torch.Tensor, b: torch.Tensor, metric: str) -> float:
    """Divergence of ``b`` from the reference ``a`` under ``metric`` (see the module docstring).

    Raises:
        ValueError: An unknown metric, or tensors of different shapes.
    """
    fn = _FUNCS[metric_name(metric)]
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"cannot compare tensors of shapes {tuple(a.shape)} and {tuple(b.shape)}.")
    if torch.equal(a.detach(), b.detach()):
        return 0.0  # exact, where the formulas would round to a few ulps
    return fn(a, b)


def reduce_stack(stacked: torch.Tensor, reduce: str) -> torch.Tensor:
    """Reduces a stack of per-trace tensors over its first dimension.

    Raises:
        ValueError: An unknown reduction.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {list(REDUCTIONS)}, not {reduce!r}.")
    x = stacked.detach()
    if reduce in ("mean", "std", "var") and not x.is_floating_point():
        x = x.double()
    if reduce in ("min", "max", "median"):
        return getattr(x, reduce)(dim=0).values
    return getattr(x, reduce)(dim=0)
