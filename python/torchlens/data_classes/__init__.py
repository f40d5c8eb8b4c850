"""TorchLens 2.15 import path `torchlens.data_classes`: re-exports only (the classes live in `torchlens.log`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.accessors import BufferAccessor, LayerAccessor, ModuleAccessor, ParamAccessor
from ..log.call_stack import FuncCallLocation
from ..log.layer_log import LayerLog
from ..log.layer_pass_log import BufferLog, LayerPassLog
from ..log.model_log import ModelLog
from ..log.modules import ModuleLog, ModulePassLog
from ..log.params import ParamLog

TensorLog = LayerPassLog

__all__ = [
    "BufferAccessor",
    "BufferLog",
    "FuncCallLocation",
    "LayerAccessor",
    "LayerLog",
    "LayerPassLog",
    "ModelLog",
    "ModuleAccessor",
    "ModuleLog",
    "ModulePassLog",
    "ParamAccessor",
    "ParamLog",
    "TensorLog",
]
