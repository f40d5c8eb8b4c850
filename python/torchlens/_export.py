"""Tabular exports shared by every log surface (spec §13): pandas, CSV, parquet, JSON.

Cells are made portable before they reach pandas: dtypes become strings (`"torch.float32"`),
shapes and other tuples become lists rendered as strings in files, so every file format
round-trips to the same DataFrame that `to_pandas()` returns (after `read_*`).
"""

from __future__ import annotations

from typing import Any

import torch


def cell(v: Any) -> Any:
    """A value as it is stored in an export cell."""
    if isinstance(v, torch.dtype):
        return str(v)
    if isinstance(v, torch.Size):
        return str(tuple(v))
    if isinstance(v, tuple):
        return str(tuple(cell(x) if isinstance(x, torch.dtype) else x for x in v))
    if isinstance(v, list | set | frozenset):
        items = sorted(v, key=str) if isinstance(v, set | frozenset) else v
        return str([cell(x) if not isinstance(x, str | int | float | bool) else x for x in items])
    if isinstance(v, dict):
        return str({k: cell(x) if not isinstance(x, str | int | float | bool) else x for k, x in v.items()})
    if isinstance(v, torch.Tensor):
        return str(tuple(v.shape))
    return v


def frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    data = {c: [cell(r.get(c)) for r in rows] for c in columns}
    df = pd.DataFrame(data, columns=columns)
    for c in columns:
        col = df[c]
        if col.dtype == object:
            vals = [x for x in col if x is not None]
            if vals and all(isinstance(x, bool) for x in vals) and len(vals) == len(col):
                df[c] = col.astype(bool)
            elif vals and all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
                df[c] = col.astype("Int64")
            elif vals and all(isinstance(x, float) for x in vals):
                df[c] = col.astype("float64")
            elif vals and all(isinstance(x, str) for x in vals):
                df[c] = col.astype(object)
    return df


def to_csv(df: Any, path: Any, **kw: Any) -> None:
    kw.setdefault("index", False)
    df.to_csv(path, **kw)


def to_parquet(df: Any, path: Any, **kw: Any) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError("to_parquet requires pyarrow. Install with: pip install torchlens[io]") from e
    kw.setdefault("index", False)
    df.to_parquet(path, **kw)


def to_json(df: Any, path: Any, orient: str = "records", **kw: Any) -> None:
    df.to_json(path, orient=orient, **kw)


class ExportMixin:
    """`to_pandas` is provided by the class; this adds the file writers on top of it."""

    def to_pandas(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_csv(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as CSV (no index column)."""
        to_csv(self.to_pandas(), path, **kw)

    def to_parquet(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as parquet (requires pyarrow)."""
        to_parquet(self.to_pandas(), path, **kw)

    def to_json(self, path: Any, *, orient: str = "records", **kw: Any) -> None:
        """Write `to_pandas()` as JSON (`orient="records"` by default)."""
        to_json(self.to_pandas(), path, orient=orient, **kw)
