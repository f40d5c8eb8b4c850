"""Models of tests/test_fastlog_preview.py: a small CNN with a multi-op block (one cluster) and an MLP
whose loop calls the same modules three times (multi-pass layers and module passes)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """stem conv -> block (conv, bn, relu: a cluster) -> pool -> flatten -> head linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        x = self.block(x) + x
        return self.head(torch.flatten(self.pool(x), 1))


class LoopMLP(nn.Module):
    """inp linear, then three rounds of cell (linear, tanh) plus a residual add, then out linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(6, 8)
        self.cell = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for _ in range(3):
            h = self.cell(h) + h
        return self.out(h)


class IdentityBN(nn.Module):
    """linear -> nn.Identity (log_forward_pass adds an identity node) -> BatchNorm1d (in train mode its
    num_batches_tracked update is an orphan) -> relu -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.skip = nn.Identity()
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.bn(self.skip(self.fc1(x)))))
