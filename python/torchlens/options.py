"""TorchLens 2.15 import path `torchlens.options`: re-exports only (the classes live in `torchlens._options`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ._options import StreamingOptions, VisualizationOptions, visualization_to_render_kwargs

__all__ = ["StreamingOptions", "VisualizationOptions", "visualization_to_render_kwargs"]
