"""TorchLens 2.15 import path `torchlens.user_funcs`: re-exports only (the classes live in `torchlens.api and torchlens.api_extra`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from .api import get_model_metadata, log_forward_pass, log_model_metadata, validate_forward_pass
from .api_extra import (
    show_model_graph,
    summary,
    validate_batch_of_models_and_inputs,
    validate_saved_activations,
)

__all__ = [
    "get_model_metadata",
    "log_forward_pass",
    "log_model_metadata",
    "show_model_graph",
    "summary",
    "validate_batch_of_models_and_inputs",
    "validate_forward_pass",
    "validate_saved_activations",
]
