"""TorchLens 2.15 import path `torchlens.visualization`: re-exports only (the classes live in `torchlens.viz`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..viz import (
    NodeSpec,
    build_render_audit,
    model_log_to_dagua_graph,
    render_lines_to_html,
    render_model_log_with_dagua,
)

__all__ = [
    "NodeSpec",
    "build_render_audit",
    "model_log_to_dagua_graph",
    "render_lines_to_html",
    "render_model_log_with_dagua",
]
