"""Graphviz rendering of a ModelLog (spec §12): `build_dot` writes the DOT source, `render` runs `dot`.

Layout: `_dot` (DOT writing primitives), `_focus` (`module=` focus), `_build` (the graph, step by
step), `_caption` (caption and header), `_spec` (`NodeSpec`, HTML labels, the caller's hooks, the
render audit), `_presets` (node modes), `_code_panel` (the source panel), `_interactive` (SVG
anchors of big graphs), `_notebook` (Jupyter display), `_render` (graphviz, viewer, notebook display),
`_dagua` (the optional dagua backend).
"""

from ._backward import backward_dot, render_backward_graph, show_backward_graph
from ._build import AUTO_COLLAPSE_NODES, build_dot
from ._code_panel import add_code_panel, capture_source, panel_text
from ._dagua import model_log_to_dagua_graph, render_model_log_with_dagua, require_dagua
from ._dot import FILL_FROZEN, FILL_INPUT, FILL_OUTPUT, FILL_TRAINABLE
from ._notebook import repr_html
from ._presets import NODE_MODES, apply_preset
from ._render import layout_engine, render
from ._spec import (
    NodeSpec,
    RenderHooks,
    TorchLensRenderAudit,
    build_render_audit,
    check_render_options,
    render_lines_to_html,
)

__all__ = [
    "AUTO_COLLAPSE_NODES",
    "NODE_MODES",
    "FILL_FROZEN",
    "FILL_INPUT",
    "FILL_OUTPUT",
    "FILL_TRAINABLE",
    "NodeSpec",
    "RenderHooks",
    "TorchLensRenderAudit",
    "add_code_panel",
    "apply_preset",
    "backward_dot",
    "build_dot",
    "build_render_audit",
    "capture_source",
    "check_render_options",
    "layout_engine",
    "model_log_to_dagua_graph",
    "panel_text",
    "render",
    "render_backward_graph",
    "render_lines_to_html",
    "render_model_log_with_dagua",
    "repr_html",
    "require_dagua",
    "show_backward_graph",
]
