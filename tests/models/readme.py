"""The README's recurrent model (spec §6.4 row 1): one Linear reused four times, 12 loop passes."""

from __future__ import annotations

import torch
from torch import nn


class SimpleRecurrent(nn.Module):
    """`for _ in range(4): x = fc(x); x = x + 1; x = x * 2` with fc = Linear(5, 5)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features=5, out_features=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = self.fc(x)
            x = x + 1
            x = x * 2
        return x
