"""Pre-flight check of the tensor variants a logging call is given (spec §1.2 entry checks)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._errors import UnsupportedTensorVariantError

_ADVICE = (
    "Meta tensors have no storage, so there is no value to save: materialize the model and the inputs on a "
    "real device (for example `model.to_empty(device='cpu')` and load its weights) before logging."
)


def _walk(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth >= 5:
        return []
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in _walk(v, depth + 1)]
    return []


def check_model_and_input_variants(model: nn.Module, input_args: Any, input_kwargs: Any = None) -> None:
    """Raise UnsupportedTensorVariantError for meta tensors among the inputs or the model's parameters/buffers.

    Sparse and other non-strided inputs are accepted: the ops on them are logged like any other.
    """
    found: list[str] = []
    if any(t.is_meta for t in _walk([input_args, input_kwargs])):
        found.append("meta tensor in input")
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        found.append("meta tensor among model parameters/buffers")
    if found:
        lines = "\n".join(f"  - {f}" for f in found)
        raise UnsupportedTensorVariantError(
            f"torchlens cannot log this model/input combination. Unsupported tensor variant(s):\n{lines}\n{_ADVICE}"
        )
