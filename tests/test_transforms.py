"""torch.func transforms inside forward: capture steps aside, warns once, values stay right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import torchlens as tl


class UsesTransforms(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.vmap(lambda r: torch.sin(r) * 2)(x)
        g = torch.func.grad(lambda r: torch.sin(r).sum())(x)
        return y + 1 + g


def test_transforms_are_not_logged_and_warn() -> None:
    x = torch.rand(3, 4)
    with pytest.warns(UserWarning, match="torch.func transform"):
        log = tl.log_forward_pass(UsesTransforms(), x)
    assert log.layer_labels == ["input_1", "add_1_1", "add_2_2", "output_1"]
    assert torch.equal(log["output_1"].activation, torch.sin(x) * 2 + 1 + torch.cos(x))
    tl.unwrap_torch()
    assert torch.vmap.__module__.startswith("torch")
    assert torch.func.grad.__module__.startswith("torch")
