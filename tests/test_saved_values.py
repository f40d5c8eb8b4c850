"""Saved activations hold the value each op produced, even when later ops write into the tensor."""

from __future__ import annotations

import torch
from torch import nn

import torchlens as tl


class InplaceOnView(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        v = y[0]
        v.add_(1)
        y[1] = 0.0
        return y.relu_()


def test_inplace_writes_do_not_change_saved_values() -> None:
    x = torch.rand(3, 4) - 0.5
    log = tl.log_forward_pass(InplaceOnView(), x)
    assert log.layer_labels == ["input_1", "mul_1_1", "getitem_1_2", "add_1_3", "setitem_1_4", "relu_1_5", "output_1"]
    assert torch.equal(log["mul_1_1"].activation, x * 2)
    assert torch.equal(log["getitem_1_2"].activation, (x * 2)[0])
    after_add = x * 2
    after_add[0] += 1
    assert torch.equal(log["add_1_3"].activation, after_add[0])
    after_set = after_add.clone()
    after_set[1] = 0.0
    assert torch.equal(log["setitem_1_4"].activation, after_set)
    assert torch.equal(log["relu_1_5"].activation, after_set.relu())
    assert torch.equal(log["output_1"].activation, after_set.relu())
    assert log["add_1_3"].parent_layers == ["getitem_1_2"]
    assert log["setitem_1_4"].parent_layers == ["mul_1_1"]


class WritesThroughOut(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + 1
        z = x * 3
        torch.mul(z, 2, out=y)  # writes into y through a path that is not an in-place method
        return y + z


def test_untracked_writes_fall_back_to_copies() -> None:
    x = torch.rand(5)
    log = tl.log_forward_pass(WritesThroughOut(), x)
    assert torch.equal(log["add_1_1"].activation, x + 1)
    assert torch.equal(log["mul_1_2"].activation, x * 3)
    with torch.no_grad():
        assert torch.equal(log["output_1"].activation, WritesThroughOut()(x))


class KeepsState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("acc", torch.zeros(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.acc.add_(x)
        return self.acc * 2


def test_buffer_values_are_copies_from_before_first_use() -> None:
    model = KeepsState()
    x = torch.ones(4)
    log = tl.log_forward_pass(model, x)
    assert torch.equal(log["buffer_1"].activation, torch.zeros(4))
    assert torch.equal(log["output_1"].activation, torch.full((4,), 2.0))
    assert not hasattr(model.acc, "_tl_id")
