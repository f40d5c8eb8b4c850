"""Rich display of a ModelLog in Jupyter (`ModelLog._repr_html_`): a compact summary table, then the
graph as inline SVG when graphviz's `dot` is installed and the graph is small enough to lay out quickly."""

from __future__ import annotations

import html
import shutil
import subprocess
from typing import Any

from .._format import human_readable_size

INLINE_MAX_NODES = 500  # bigger graphs show the summary only (render_graph draws them to a file)


def _rows(log: Any) -> list[tuple[str, str]]:
    rows = [
        ("layers", f"{len(log.layer_logs)} ({len(log)} layer passes)"),
        ("modules", str(max(len(log.modules) - 1, 0))),
        ("parameters", f"{log.total_params:,} ({human_readable_size(log.total_params_memory)})"),
        ("saved activations", f"{log.num_tensors_saved} ({human_readable_size(log.total_activation_memory)})"),
    ]
    inputs = [log[lab] for lab in log.input_layers]
    outputs = [log[lab] for lab in log.output_layers]
    rows.append(("inputs", ", ".join(f"{e.layer_label} {tuple(e.tensor_shape)}" for e in inputs)))
    rows.append(("outputs", ", ".join(f"{e.layer_label} {tuple(e.tensor_shape)}" for e in outputs)))
    if getattr(log, "time_total", None):
        rows.append(("logging time", f"{log.time_total:.3f} s"))
    return rows


def summary_html(log: Any) -> str:
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v)}</td></tr>"
        for k, v in _rows(log)
    )
    title = html.escape(str(log.model_name))
    return f"<table class='torchlens-summary'><caption><b>ModelLog: {title}</b></caption>{cells}</table>"


def graph_svg(log: Any) -> str | None:
    """The unrolled graph as an `<svg>` element, or None (no `dot`, too big, partial log, dot failed)."""
    dot = shutil.which("dot")
    if dot is None or len(log) > INLINE_MAX_NODES:
        return None
    try:
        source = log.to_dot()
        out = subprocess.run([dot, "-Tsvg"], input=source.encode(), capture_output=True, timeout=60, check=True)
    except Exception:
        return None
    svg = out.stdout.decode(errors="replace")
    start = svg.find("<svg")
    return None if start < 0 else svg[start:]


def repr_html(log: Any) -> str:
    """The HTML Jupyter shows for a log: the summary table and, when it can be drawn, the graph."""
    parts = [summary_html(log)]
    svg = graph_svg(log)
    if svg is not None:
        parts.append(f"<div class='torchlens-graph' style='max-width:100%;overflow:auto'>{svg}</div>")
    elif len(log) > INLINE_MAX_NODES:
        parts.append(
            f"<p>{len(log)} nodes: too many to draw inline; use <code>log.render_graph()</code> to write the graph.</p>"
        )
    return "\n".join(parts)
