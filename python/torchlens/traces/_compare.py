"""`compare_logs`: per-layer comparison of the saved activations of two runs (an activation
regression check). Shared by the ``torchlens diff`` command and the pytest plugin's
``torchlens_snapshot`` fixture, so both judge a layer the same way.

Matching: when both logs list the same layer labels, entries are paired by label (pass label,
``linear_1_1:2`` for the second pass). Otherwise they are paired by the multi-trace supergraph
matching of `tl.bundle` (the k-th pass with a given fingerprint in one run is the k-th pass
with that fingerprint in the other), so an inserted or removed op does not shift every later
comparison. Fingerprints do not depend on the process, so bundles written by different runs
match too; a node only one run has is reported as missing in the other.

Tolerances:

- ``metric="allclose"`` (default): a layer diverges when some element has
  ``|b - a| > atol + rtol * |a|`` (``torch.allclose`` with ``a`` the reference; NaNs at the
  same places are equal).
- ``metric="cosine"``: a layer diverges when ``1 - cos(a, b)`` (flattened, float64) exceeds
  ``atol``; ``rtol`` is not used.

A layer of different shapes in the two runs always diverges. A layer with a saved activation in
one run and none in the other (the layer is gone, or was not saved) is listed in
``missing_in_a`` / ``missing_in_b`` and also makes the report diverge.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._progress import progress as _progress
from ..io import load
from ..log.model_log import ModelLog
from ._bundle import TraceBundle
from ._metrics import cosine as _cosine

if TYPE_CHECKING:
    from ..log.layer_pass_log import LayerPassLog

COMPARE_METRICS = ("allclose", "cosine")


@dataclass(frozen=True)
class LayerDiff:
    """One matched layer pass of the two runs.

    Attributes:
        label_a: The pass label in run a.
        label_b: The pass label in run b (equal to ``label_a`` when matched by label).
        shape_a: The saved activation's shape in run a.
        shape_b: The saved activation's shape in run b.
        max_abs: ``max |b - a|`` (``inf`` for different shapes, ``nan`` when NaNs do not line up).
        max_rel: ``max_abs / max |a|`` (0 when both are zero, ``inf`` when only ``a`` is).
        cosine: ``1 - cos(a, b)`` of the flattened tensors, 0 for identical tensors.
        ratio: How far past the tolerance the layer is: the largest
            ``|b - a| / (atol + rtol * |a|)`` for ``allclose``, ``cosine / atol`` for
            ``cosine``; the layer diverges when it exceeds 1.
        diverged: The layer is beyond tolerance.
    """

    label_a: str
    label_b: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    max_abs: float
    max_rel: float
    cosine: float
    ratio: float
    diverged: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "label_a": self.label_a,
            "label_b": self.label_b,
            "shape_a": list(self.shape_a),
            "shape_b": list(self.shape_b),
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "cosine": self.cosine,
            "ratio": self.ratio,
            "diverged": self.diverged,
        }


@dataclass
class CompareReport:
    """The result of `compare_logs`: one `LayerDiff` per matched layer, in run a's order.

    Attributes:
        rows: The matched layers with a saved activation in both runs.
        missing_in_a: Labels (of run b) whose activation run a lacks.
        missing_in_b: Labels (of run a) whose activation run b lacks.
        matched_by: ``"label"`` or ``"supergraph"``.
        metric: ``"allclose"`` or ``"cosine"``.
        atol: The absolute tolerance (``cosine``: the largest ``1 - cos`` allowed).
        rtol: The relative tolerance (``allclose`` only).
    """

    rows: list[LayerDiff]
    missing_in_a: list[str]
    missing_in_b: list[str]
    matched_by: str
    metric: str
    atol: float
    rtol: float

    @property
    def diverged(self) -> bool:
        """True when a layer is beyond tolerance or a saved layer is missing from either run."""
        return bool(self.missing_in_a or self.missing_in_b or any(r.diverged for r in self.rows))

    @property
    def diverging(self) -> list[LayerDiff]:
        """The rows beyond tolerance, worst first."""
        return [r for r in self.worst(None) if r.diverged]

    def worst(self, top: int | None = 10) -> list[LayerDiff]:
        """The rows sorted by ``ratio``, largest first (NaN first: it never compares equal)."""
        order = {id(r): i for i, r in enumerate(self.rows)}
        ranked = sorted(
            self.rows,
            key=lambda r: (not math.isnan(r.ratio), -r.ratio if not math.isnan(r.ratio) else 0.0, order[id(r)]),
        )
        return ranked if top is None else ranked[:top]

    def summary_line(self) -> str:
        tol = f"atol={self.atol:g}" + (f", rtol={self.rtol:g}" if self.metric == "allclose" else "")
        n_div = sum(1 for r in self.rows if r.diverged)
        parts = [f"{n_div} of {len(self.rows)} layers diverge ({self.metric}, {tol}; matched by {self.matched_by})"]
        if self.missing_in_b:
            parts.append(f"missing in b: {_names(self.missing_in_b)}")
        if self.missing_in_a:
            parts.append(f"missing in a: {_names(self.missing_in_a)}")
        return "; ".join(parts)

    def format_table(self, top: int = 10) -> str:
        """The summary line and a table of the ``top`` worst layers (diverging ones marked ``*``)."""
        lines = [self.summary_line()]
        rows = self.worst(top)
        if not rows:
            return lines[0]
        head = ("", "layer a", "layer b", "shape", "max abs", "max rel", "1-cos", "ratio")
        body = [
            (
                "*" if r.diverged else "",
                r.label_a,
                r.label_b,
                _shape(r.shape_a) if r.shape_a == r.shape_b else f"{_shape(r.shape_a)} vs {_shape(r.shape_b)}",
                f"{r.max_abs:.3g}",
                f"{r.max_rel:.3g}",
                f"{r.cosine:.3g}",
                f"{r.ratio:.3g}",
            )
            for r in rows
        ]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        for row in [head, *body]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_table()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``inf``/``nan`` stay floats; ``json.dumps`` writes them as
        ``Infinity``/``NaN``)."""
        return {
            "diverged": self.diverged,
            "matched_by": self.matched_by,
            "metric": self.metric,
            "atol": self.atol,
            "rtol": self.rtol,
            "rows": [r.to_dict() for r in self.rows],
            "missing_in_a": list(self.missing_in_a),
            "missing_in_b": list(self.missing_in_b),
        }


def _names(labels: list[str], limit: int = 8) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f" (+{len(labels) - limit} more)" if len(labels) > limit else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in shape) if shape else "scalar"


def _as_log(x: ModelLog | str | os.PathLike, which: str) -> ModelLog:
    if isinstance(x, ModelLog):
        return x
    if isinstance(x, (str, os.PathLike)):
        return load(Path(os.fspath(x)), lazy=True)
    raise TypeError(f"{which} must be a ModelLog or a bundle path, not {type(x).__name__}.")


def _activation(entry: LayerPassLog) -> torch.Tensor | None:
    """The entry's saved activation; a lazily loaded one is read without caching it in the log,
    so comparing two large bundles holds one layer at a time."""
    log = entry._log
    nid = log._node_id(entry._pos)
    t = log._saved.get(nid)
    if t is None:
        ref = log._lazy.get(nid)
        t = ref.materialize("cpu") if ref is not None else None
    return t if isinstance(t, torch.Tensor) else None


def _has_saved(entry: LayerPassLog) -> bool:
    return bool(entry.has_saved_activations)


Pair = tuple["LayerPassLog | None", "LayerPassLog | None"]


def _pairs(a: ModelLog, b: ModelLog) -> tuple[str, list[Pair]]:
    """(how, entry pairs) with None for a side that lacks the layer."""
    if list(a.layer_labels) == list(b.layer_labels):
        return "label", list(zip(a.layer_list, b.layer_list, strict=True))
    tb = TraceBundle([a, b], names=["a", "b"])
    return "supergraph", [(tb.entry(n, 0), tb.entry(n, 1)) for n in tb.nodes]


def _judge(x: torch.Tensor, y: torch.Tensor, la: str, lb: str, metric: str, atol: float, rtol: float) -> LayerDiff:
    sa, sb = tuple(x.shape), tuple(y.shape)
    if sa != sb:
        inf = math.inf
        return LayerDiff(la, lb, sa, sb, inf, inf, 1.0, inf, True)
    if x.numel() == 0:
        return LayerDiff(la, lb, sa, sb, 0.0, 0.0, 0.0, 0.0, False)
    if x.is_complex() or y.is_complex():  # compared as (real, imaginary) pairs
        x, y = (torch.view_as_real(t.detach().to(torch.complex128)) for t in (x, y))
    a = x.detach().to(device="cpu", dtype=torch.float64)
    b = y.detach().to(device="cpu", dtype=torch.float64)
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))  # equal infinities and NaNs in the same places
    diff = (b - a).abs().masked_fill(same, 0.0)
    ref = a.abs().masked_fill(torch.isnan(a), 0.0)
    max_abs = float(diff.max())  # nan when NaNs do not line up
    max_ref = float(ref.max())
    if math.isnan(max_abs):
        max_rel = math.nan
    elif max_abs == 0.0:
        max_rel = 0.0
    else:
        max_rel = max_abs / max_ref if max_ref > 0.0 else math.inf
    cos = 0.0 if bool(same.all()) else _cosine(a.nan_to_num(nan=0.0), b.nan_to_num(nan=0.0))
    if metric == "allclose":
        bound = atol + rtol * ref
        if math.isnan(max_abs):
            ratio = math.nan
        elif max_abs == 0.0:
            ratio = 0.0
        else:
            zero = bound == 0.0
            per = torch.where(zero, torch.where(diff > 0, math.inf, 0.0), diff / bound.masked_fill(zero, 1.0))
            ratio = float(per.max())
    else:
        ratio = 0.0 if cos == 0.0 else (cos / atol if atol > 0 else math.inf)
    diverged = math.isnan(ratio) or ratio > 1.0
    return LayerDiff(la, lb, sa, sb, max_abs, max_rel, cos, ratio, diverged)


def compare_logs(
    a: ModelLog | str | os.PathLike,
    b: ModelLog | str | os.PathLike,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    metric: str = "allclose",
    progress: bool | None = None,
) -> CompareReport:
    """Compares the saved activations of two runs layer by layer (see the module docstring).

    Args:
        a: The reference run: a ModelLog or a bundle path (loaded lazily, one layer in memory
            at a time).
        b: The run compared with it.
        atol: Absolute tolerance (``allclose``), or the largest ``1 - cos`` allowed (``cosine``).
        rtol: Relative tolerance (``allclose`` only).
        metric: ``"allclose"`` or ``"cosine"``.
        progress: A progress bar over the layers: None shows one only on a terminal or in a
            notebook, True always, False never.

    Returns:
        A `CompareReport`; ``report.diverged`` is the pass/fail verdict and
        ``report.format_table()`` the table of the worst layers.

    Raises:
        ValueError: An unknown metric or a negative tolerance.
        TypeError: ``a`` or ``b`` is neither a ModelLog nor a path.
        TorchLensIOError: A path that is not a readable bundle.
    """
    if metric not in COMPARE_METRICS:
        raise ValueError(f"metric must be one of {list(COMPARE_METRICS)}, not {metric!r}.")
    atol, rtol = float(atol), float(rtol)
    if not (atol >= 0.0 and rtol >= 0.0):
        raise ValueError(f"atol and rtol must be >= 0 (got atol={atol}, rtol={rtol}).")
    log_a, log_b = _as_log(a, "a"), _as_log(b, "b")
    how, pairs = _pairs(log_a, log_b)
    rows: list[LayerDiff] = []
    missing_a: list[str] = []
    missing_b: list[str] = []
    todo: list[tuple[LayerPassLog, LayerPassLog]] = []
    for ea, eb in pairs:
        has_a = ea is not None and _has_saved(ea)
        has_b = eb is not None and _has_saved(eb)
        if has_a and has_b:
            todo.append((ea, eb))  # type: ignore[arg-type]
        elif has_a:
            missing_b.append(ea.layer_label)  # type: ignore[union-attr]
        elif has_b:
            missing_a.append(eb.layer_label)  # type: ignore[union-attr]
    items: Iterable[tuple[LayerPassLog, LayerPassLog]] = _progress(
        todo, total=len(todo), desc="comparing layers", unit="layer", enabled=progress
    )
    for ea, eb in items:
        x, y = _activation(ea), _activation(eb)
        if x is None or y is None:  # a saved non-tensor value: nothing to compare
            continue
        rows.append(_judge(x, y, ea.layer_label, eb.layer_label, metric, atol, rtol))
    return CompareReport(rows, missing_a, missing_b, how, metric, atol, rtol)
