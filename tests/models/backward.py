"""Models of the backward-graph tests (tests/test_backward_graph.py)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Sequential:
    """Linear-ReLU-Linear: the backward graph of a loss on its output is small enough to list."""
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


class Looped(nn.Module):
    """One Linear+ReLU applied three times: each pass has its own grad_fn, all labelled alike."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.relu(self.fc(x))
        return x


class Doubler(torch.autograd.Function):
    """A custom autograd Function: its grad_fn (`DoublerBackward`) is defined in Python."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x * 2

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        return grad * 2


class CustomFn(nn.Module):
    """A Linear, a custom Function, a transpose."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return Doubler.apply(self.fc(x)).t()
