from __future__ import annotations

import pytest
import torch
from torch import nn


class SimpleRecurrent(nn.Module):
    """The seed README's recurrent model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features=5, out_features=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = self.fc(x)
            x = x + 1
            x = x * 2
        return x


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
