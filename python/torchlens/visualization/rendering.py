"""TorchLens 2.15 import path `torchlens.visualization.rendering`: re-exports only.

`render_graph(model_log, ...)` is `ModelLog.render_graph` called as a function (graphs are drawn by
`torchlens.viz`). Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.model_log import ModelLog
from ..viz import NodeSpec, render_lines_to_html

render_graph = ModelLog.render_graph

__all__ = ["NodeSpec", "render_graph", "render_lines_to_html"]
