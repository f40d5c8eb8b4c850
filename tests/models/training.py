"""Models of the training and gradient tests (tests/test_gradients.py, tests/test_train_mode.py)."""

from __future__ import annotations

import torch
from torch import nn


class Blocks(nn.Module):
    """The seed README's auxiliary-loss example: `block1`'s output feeds an extra loss."""

    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Linear(6, 12), nn.GELU())
        self.block2 = nn.Sequential(nn.Linear(12, 12), nn.ReLU(inplace=True))
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(x)))


class Backbone(nn.Module):
    """A small CNN: a frozen backbone under a linear probe, or a teacher/student pair."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv1(x)))
        return self.pool(torch.relu(self.conv2(h))).flatten(1)


class LstmTagger(nn.Module):
    """An LSTM over a short sequence, read out per step (recurrent layers with several passes)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(5, 8)
        self.lstm = nn.LSTM(8, 8, batch_first=True)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(torch.tanh(self.embed(x)))
        return self.out(h)


class InplaceChain(nn.Module):
    """Outputs changed in place after they were produced: each version has its own gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        h.mul_(3.0)  # its backward needs no saved value, so the graph stays differentiable
        return (h * h.detach()).sum(-1)


class LstmCellLoop(nn.Module):
    """An `nn.LSTMCell` stepped in Python: every step is one more pass of the same layers."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(5, 6)
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = torch.zeros(x.shape[0], 6)
        outs = []
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(self.out(h))
        return torch.stack(outs, 1)
