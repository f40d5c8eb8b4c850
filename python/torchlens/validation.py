"""TorchLens 2.15 import path `torchlens.validation`: re-exports only (the checks live in `torchlens.validate`).

Nothing inside torchlens imports this module; it is kept for code written against 2.15.
"""

from __future__ import annotations

from typing import Any

import torch

from ._errors import MetadataInvariantError
from .validate import check_metadata_invariants, validate_log


def validate_saved_activations(
    self: Any, ground_truth_output_tensors: list[torch.Tensor], verbose: bool = False, validate_metadata: bool = True
) -> bool:
    """`ModelLog.validate_forward_pass` as a function of the log (spec §11.2)."""
    return validate_log(self, ground_truth_output_tensors, verbose, validate_metadata)


__all__ = ["MetadataInvariantError", "check_metadata_invariants", "validate_saved_activations"]
