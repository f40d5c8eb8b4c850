"""Factories the command-line tests name as `models.cli_models:FACTORY` (tests/test_cli.py)."""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """conv -> relu -> maxpool -> conv -> relu -> mean -> linear, on 3-channel images.

    `extra_relu=True` applies a second (idempotent) ReLU after the first: the same values
    everywhere, but every later layer gets another label, so two runs only line up by matching.
    """

    def __init__(self, extra_relu: bool = False) -> None:
        super().__init__()
        self.extra_relu = extra_relu
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))
        if self.extra_relu:
            x = torch.relu(x)
        x = self.pool(x)
        x = torch.relu(self.conv2(x))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


def small_cnn() -> SmallCNN:
    return SmallCNN()


def small_cnn_extra_relu() -> SmallCNN:
    return SmallCNN(extra_relu=True)


def broken_factory() -> nn.Module:
    raise ValueError("this factory fails on purpose")


def not_a_model() -> int:
    return 3


class CallCounter(nn.Module):
    """Scales its input by how often it has been called: every run differs from the last, so
    `validate_forward_pass` (a plain run, then a logged one) finds the outputs changed."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.fc(x) * self.calls
