"""Shared pieces of the command line: the user-error exception, number formatting, plain tables.

Nothing here imports torch, so argument errors are reported before the (slow) torch import.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


class CliError(Exception):
    """A problem with what the user asked for: reported as one `torchlens: error:` line, exit 2."""


def one_line(text: str) -> str:
    """`text` with its line breaks and runs of blanks collapsed to single spaces."""
    return " ".join(str(text).split())


def fmt_bytes(n: int | None) -> str:
    """`1536` -> `"1.5 KB"` (powers of 1024, as torchlens' printouts); None -> `"-"`."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover (the loop always returns)


def fmt_count(n: int | None) -> str:
    """`21908` -> `"21.9 K"`; below 1000 the number itself; None -> `"-"`."""
    if n is None:
        return "-"
    for div, suffix in ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K")):
        if abs(n) >= div:
            return f"{n / div:.1f} {suffix}"
    return str(n)


def fmt_shape(shape: Any) -> str:
    """`(1, 3, 8, 8)` -> `"1x3x8x8"`; a 0-d shape -> `"scalar"`; None -> `"-"`."""
    if shape is None:
        return "-"
    dims = tuple(shape)
    return "x".join(str(d) for d in dims) if dims else "scalar"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[bool] | None = None) -> str:
    """A plain aligned text table (header, dashes, rows); `right[i]` right-aligns column i."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    right = list(right) if right is not None else [False] * len(headers)

    def line(r: list[str]) -> str:
        parts = [c.rjust(w) if ra else c.ljust(w) for c, w, ra in zip(r, widths, right, strict=True)]
        return "  ".join(parts).rstrip()

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def existing_path(path: str, what: str = "bundle") -> str:
    """`path` if it exists (file or directory), else a `CliError` naming it."""
    if not os.path.lexists(path):
        raise CliError(f"no {what} at {path!r} (no such file or directory)")
    return path
