"""TorchLens 2.15 import path `torchlens.data_classes.layer_pass_log`: re-exports only (the classes live in `torchlens.log.layer_pass_log`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.layer_pass_log import LayerPassLog

TensorLog = LayerPassLog

__all__ = ["LayerPassLog", "TensorLog"]
