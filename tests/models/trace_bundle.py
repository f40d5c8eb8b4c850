"""Models for the multi-trace bundle tests (tests/test_trace_bundle.py)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv -> relu -> conv -> relu -> flatten -> linear on 1x3x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3)
        self.conv2 = nn.Conv2d(4, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class BranchNet(nn.Module):
    """Runs `a` and a sigmoid only when the relu'd input sums to more than 1."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.c = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)
        if x.sum() > 1:
            x = torch.sigmoid(self.a(x))
        x = self.b(x)
        return self.c(torch.tanh(x))


class LoopNet(nn.Module):
    """Applies `fc` `steps` times (a recurrent layer whose pass count the caller sets)."""

    def __init__(self, steps: int = 3) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = torch.tanh(self.fc(x))
        return x * 2
