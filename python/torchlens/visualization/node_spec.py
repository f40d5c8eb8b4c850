"""TorchLens 2.15 import path `torchlens.visualization.node_spec`: re-exports only (the classes live in `torchlens.viz`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..viz import NodeSpec, render_lines_to_html

__all__ = ["NodeSpec", "render_lines_to_html"]
