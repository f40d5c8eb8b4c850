"""TorchLens 2.15 import path `torchlens.data_classes.func_call_location`: re-exports only (the classes live in `torchlens.log.call_stack`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ..log.call_stack import FuncCallLocation

__all__ = ["FuncCallLocation"]
