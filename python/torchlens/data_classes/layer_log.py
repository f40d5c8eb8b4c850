"""TorchLens 2.15 import path `torchlens.data_classes.layer_log`: re-exports only (the classes live in `torchlens.log`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.accessors import LayerAccessor
from ..log.layer_log import LayerLog

__all__ = ["LayerAccessor", "LayerLog"]
