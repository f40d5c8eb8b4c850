"""TorchLens 2.15 import path `torchlens._robustness`: re-exports only (the classes live in `torchlens._errors and torchlens._variants`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from ._errors import UnsupportedTensorVariantError
from ._variants import check_model_and_input_variants

__all__ = ["UnsupportedTensorVariantError", "check_model_and_input_variants"]
