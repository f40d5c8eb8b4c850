"""A model whose ops take keyword and string arguments (their fingerprints hash strings)."""

from __future__ import annotations

import torch
from torch import nn


class KwargModel(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.gelu(x.mean(dim=1, keepdim=True), approximate="tanh")
        return torch.einsum("ij,ij->ij", y, y).softmax(dim=-1)
