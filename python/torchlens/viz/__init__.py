"""Graphviz rendering of a ModelLog (spec §12): `build_dot` writes the DOT source, `render` runs `dot`.

Layout: `_dot` (DOT writing primitives), `_focus` (`module=` focus), `_build` (the graph, step by
step), `_render` (graphviz, viewer, notebook display).
"""

from ._build import AUTO_COLLAPSE_NODES, build_dot
from ._dot import FILL_FROZEN, FILL_INPUT, FILL_OUTPUT, FILL_TRAINABLE
from ._render import render

__all__ = [
    "AUTO_COLLAPSE_NODES",
    "FILL_FROZEN",
    "FILL_INPUT",
    "FILL_OUTPUT",
    "FILL_TRAINABLE",
    "build_dot",
    "render",
]
