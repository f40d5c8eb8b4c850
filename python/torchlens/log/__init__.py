"""Log objects: a thin facade over the core's columns (ModelLog, layers, modules, params, buffers)."""

from __future__ import annotations

from .layer_log import LayerLog as LayerLog
from .layer_pass_log import LayerPassLog as LayerPassLog
from .model_log import ModelLog as ModelLog

__all__ = ["LayerLog", "LayerPassLog", "ModelLog"]
