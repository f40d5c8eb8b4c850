"""TorchLens 2.15 import path `torchlens.data_classes.model_log`: re-exports only (the classes live in `torchlens.log.model_log`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.model_log import ModelLog

__all__ = ["ModelLog"]
