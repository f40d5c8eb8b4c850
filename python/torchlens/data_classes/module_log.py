"""TorchLens 2.15 import path `torchlens.data_classes.module_log`: re-exports only (the classes live in `torchlens.log`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.accessors import ModuleAccessor
from ..log.modules import ModuleLog, ModulePassLog

__all__ = ["ModuleAccessor", "ModuleLog", "ModulePassLog"]
