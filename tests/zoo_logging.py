"""How the zoo tests log a `models.zoo` case: fresh inputs, every activation saved, fixed seed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import torchlens as tl

from models import zoo


def clone_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def c(a: Any) -> Any:
        return a.clone() if isinstance(a, torch.Tensor) else a

    return tuple(c(a) for a in args), {k: c(v) for k, v in kwargs.items()}


def log_model(model: nn.Module, args: tuple, kwargs: dict, **opts: Any) -> tl.ModelLog:
    opts.setdefault("layers_to_save", "all")
    opts.setdefault("random_seed", 0)
    return tl.log_forward_pass(model, list(args), input_kwargs=dict(kwargs) or None, **opts)


def log_case(name: str) -> tuple[nn.Module, tuple, dict, tl.ModelLog]:
    # Build with the torch wrappers installed, so that results do not depend on test order
    # (models built before wrapping are covered by test_model_built_before_wrapping).
    tl.wrap_torch()
    model, args, kwargs = zoo.build(name)
    a, k = clone_args(args, kwargs)
    return model, args, kwargs, log_model(model, a, k)


def labels_of(name: str) -> list[str]:
    return log_case(name)[3].layer_labels
