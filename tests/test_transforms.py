"""torch.func transforms inside forward: capture steps aside, warns once, values stay right."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import torchlens as tl

from models.small import UsesTransforms


def test_transforms_are_not_logged_and_warn() -> None:
    x = torch.rand(3, 4)
    with pytest.warns(UserWarning, match="torch.func transform"):
        log = tl.log_forward_pass(UsesTransforms(), x)
    assert log.layer_labels == ["input_1", "add_1_1", "add_2_2", "output_1"]
    assert torch.equal(log["output_1"].activation, torch.sin(x) * 2 + 1 + torch.cos(x))
    tl.unwrap_torch()
    # A wrapper may copy __module__ (functools.wraps does), so check where the code really lives.
    torch_dir = Path(torch.__file__).resolve().parent
    for name, fn in (
        ("torch.vmap", torch.vmap),
        ("torch.func.vmap", torch.func.vmap),
        ("torch.func.grad", torch.func.grad),
    ):
        assert Path(fn.__code__.co_filename).resolve().is_relative_to(torch_dir), (name, fn.__code__.co_filename)
