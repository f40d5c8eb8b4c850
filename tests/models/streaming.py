"""Models for the streaming tests (activation callbacks, streamed postfunc outputs, recovery)."""

from __future__ import annotations

import torch
from torch import nn


class LoopWithBuffer(nn.Module):
    """An input, a buffer, one linear layer applied three times (a loop) and a head.

    TorchLens 2.15 reports, for a single exhaustive pass, the raw labels `input_1_raw`,
    `linear_1_2_raw`, `relu_1_3_raw`, `buffer_1_raw`, `add_1_5_raw`, `linear_2_6_raw`,
    `relu_2_7_raw`, `linear_3_8_raw`, `relu_3_9_raw`, `linear_4_10_raw`, and the final labels
    `input_1`, `linear_1_1:1..3`, `relu_1_2:1..3`, `buffer_1`, `add_1_3`, `linear_2_4`, `output_1`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 4)
        self.l2 = nn.Linear(4, 3)
        self.register_buffer("b", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.l1(x)) + self.b
        for _ in range(2):
            y = torch.relu(self.l1(y))
        return self.l2(y)


class FailsMidway(nn.Module):
    """200 tanh(linear) steps; raises at step `fail_at` (a crash in the middle of a streamed capture)."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.fail_at = fail_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(200):
            x = torch.tanh(self.fc(x))
            if i == self.fail_at:
                raise RuntimeError(f"failed at step {i}")
        return x
