"""Models that one test file is written against: its exact labels, clusters and values assume
these layers and shapes, so change a model here only together with its test."""

from __future__ import annotations

import torch
from torch import nn

# --------------------------------------------------------------------------- test_viz: nesting depths


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()
        self.post = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(torch.tanh(self.inner(x)))


class Nested(nn.Module):
    """block (Outer) -> block.inner (Inner): two cluster levels, five layers inside `block`."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Outer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) * 2


class Branching(nn.Module):
    """One input feeding two branches that join again."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sin(x)
        b = torch.cos(x)
        return a * b


# --------------------------------------------------------------------------- test_exports


class BNNet(nn.Module):
    """Linear -> BatchNorm (buffers) -> Sequential head: every export surface has rows."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.bn = nn.BatchNorm1d(4)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.fc(x)))


# --------------------------------------------------------------------------- test_transforms


class UsesTransforms(nn.Module):
    """torch.vmap and torch.func.grad inside forward; only the two adds outside them are logged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.vmap(lambda r: torch.sin(r) * 2)(x)
        g = torch.func.grad(lambda r: torch.sin(r).sum())(x)
        return y + 1 + g


# --------------------------------------------------------------------------- test_small_models


class BufferInplace(nn.Module):
    """A buffer whose first use is an in-place op on it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.count.add_(1)
        return x + self.count


# --------------------------------------------------------------------------- test_public_surface


class SeqThenLoop(nn.Module):
    """seq (Linear, ReLU), then fc applied twice, then a sum.

    Labels: input_1, linear_1_1, relu_1_2, linear_2_3:1, linear_2_3:2, sum_1_4, output_1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.seq(x)
        for _ in range(2):
            x = self.fc(x)
        return x.sum()


class SignBranch(nn.Module):
    """A data-dependent graph: relu for inputs with a positive sum, tanh then sigmoid otherwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return torch.relu(x)
        return torch.sigmoid(torch.tanh(x))
