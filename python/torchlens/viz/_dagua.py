"""The optional `dagua` renderer (spec §12.1): torchlens ships no bridge to it, so these entry points say so."""

from __future__ import annotations

import importlib.util
from typing import Any, NoReturn

_MISSING = (
    "The dagua renderer needs the optional backend `dagua`, which is not installed (torchlens draws graphs "
    "with graphviz: use vis_renderer='graphviz', the default)."
)
_NO_BRIDGE = (
    "The optional backend `dagua` is installed, but this torchlens has no dagua bridge; draw the graph with "
    "graphviz (vis_renderer='graphviz', the default)."
)


def require_dagua() -> NoReturn:
    """Raise ModuleNotFoundError naming `dagua` when it is missing, NotImplementedError when it is present."""
    if importlib.util.find_spec("dagua") is None:
        raise ModuleNotFoundError(_MISSING, name="dagua")
    raise NotImplementedError(_NO_BRIDGE)


def model_log_to_dagua_graph(
    model_log: Any,
    vis_mode: str = "unrolled",
    vis_nesting_depth: int = 1000,
    show_buffer_layers: bool = False,
    direction: str = "bottomup",
    include_gradient_edges: bool | None = None,
) -> Any:
    """A dagua graph of the log (needs the optional `dagua` backend)."""
    require_dagua()


def render_model_log_with_dagua(
    model_log: Any,
    vis_mode: str = "unrolled",
    vis_nesting_depth: int = 1000,
    vis_outpath: str = "graph.gv",
    vis_save_only: bool = False,
    vis_fileformat: str = "pdf",
    vis_buffer_layers: bool = False,
    vis_direction: str = "bottomup",
    vis_theme: str = "torchlens",
) -> Any:
    """Render the log with dagua (needs the optional `dagua` backend)."""
    require_dagua()
