"""Models for the graph presets and the code panel (tests/test_viz_presets.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyAttention(nn.Module):
    """Attention three ways: an `nn.MultiheadAttention`, a hand-written softmax(q @ k^T) @ v, and SDPA."""

    def __init__(self, dim: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.q = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = self.mha(x, x, x, need_weights=False)
        q = self.q(a)
        weights = torch.softmax(q @ x.transpose(1, 2), dim=-1)
        y = self.norm(weights @ x)
        return F.scaled_dot_product_attention(y, y, y)


class SmallConv(nn.Module):
    """A conv, a pool, a linear: the profiling preset's rows and the code panel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(36, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.relu(self.conv(x)))
        return self.fc(x.flatten(1))
