"""Text helpers shared by the printouts."""

from __future__ import annotations

from typing import Any

import torch

_UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_readable_size(nbytes: float) -> str:
    """Bytes with 1024-based units: integer bytes, one decimal otherwise (`120 B`, `233.1 MB`)."""
    size = float(nbytes)
    unit = 0
    while size >= 1024 and unit < len(_UNITS) - 1:
        size /= 1024
        unit += 1
    if unit == 0:
        return f"{int(size)} B"
    return f"{size:.1f} {_UNITS[unit]}"


def compact_count(n: int) -> str:
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f} {suffix}"
    return str(n)


def tensor_preview(t: Any) -> str:
    """A small slice of a tensor: up to 8 items per trailing dimension, `...` if cut."""
    if not isinstance(t, torch.Tensor):
        return repr(t)
    cut = any(s > 8 for s in t.shape)
    if t.dim() == 0:
        return str(t.detach())
    if t.dim() == 1:
        view = t[:8]
    else:
        view = t
        while view.dim() > 2:
            view = view[0]
        view = view[:8, :8]
    return str(view.detach()) + ("..." if cut else "")


# Shape, dtype and bytes of a stored value that may not be a tensor (postfunc results).
def tensor_shape(t: Any) -> tuple | None:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else None


def tensor_dtype(t: Any) -> torch.dtype | None:
    return t.dtype if isinstance(t, torch.Tensor) else None


def tensor_memory(t: Any) -> int | None:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else None
