"""The graph caption, the DOT header and the collapsed-module params row (spec §12.1, §12.4)."""

from __future__ import annotations

import html
from typing import Any

from .._format import human_readable_size
from ._dot import attrs_str, q


def params_line(params: list[Any]) -> str:
    """Caption params line: `0 params` | `n params (all trainable, mem)` | `(all frozen, mem)` | `(t/n trainable, mem)`."""
    total = sum(p.numel for p in params)
    trainable = sum(p.numel for p in params if p.requires_grad)
    mem = human_readable_size(sum(p.nbytes for p in params))
    if total == 0:
        return "0 params"
    if trainable == total:
        return f"{total} params (all trainable, {mem})"
    if trainable == 0:
        return f"{total} params (all frozen, {mem})"
    return f"{total} params ({trainable}/{total} trainable, {mem})"


def module_params_row(total: int, trainable: int) -> str:
    if total == 0:
        return "0 parameters"
    if trainable == total:
        return f"{total} params (all trainable)"
    if trainable == 0:
        return f"{total} params (all frozen)"
    return f"{total} params ({trainable} trainable, {total - trainable} frozen)"


def caption(log: Any, count: int, memory: int, params: list[Any], where: str | None) -> str:
    """HTML caption: bold model name, (focused module), tensor count and memory, params line."""
    br = "<br align='left'/>"
    title = f"<B>{html.escape(log.model_name)}</B>{br}"
    if where is not None:
        title += f"{html.escape(where)}{br}"
    return f"<{title}{count} tensors total ({human_readable_size(memory)}){br}{params_line(params)}{br}>"


def header_lines(log: Any, rankdir: str, overrides: dict[str, Any] | None, caption_html: str) -> list[str]:
    """`digraph` opening, graph attributes (caption, rankdir, `graph_overrides` values or `f(model_log)`)."""
    gattrs: dict[str, Any] = {
        "label": caption_html,
        "labeljust": "left",
        "labelloc": "t",
        "ordering": "out",
        "rankdir": rankdir,
    }
    for k, val in (overrides or {}).items():
        gattrs[k] = val(log) if callable(val) else val
    return [
        f"digraph {q(log.model_name)} {{",
        "  // Computational graph for the feedforward sweep",
        f"  graph {attrs_str(gattrs)}",
        "  node [ordering=out]",
    ]
