"""Models for tests/test_compare.py (run-vs-run comparison)."""

from __future__ import annotations

import torch
from torch import nn

from .trace_bundle import SmallCNN


class SmallCNNPlusZero(SmallCNN):
    """SmallCNN with an extra `+ 0` after the first relu: same values, shifted labels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x)) + 0
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


class LogAndFFT(nn.Module):
    """Infinities, NaNs (log of 0 and of a negative) and a complex intermediate (fft)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = torch.fft.fft(x)
        return torch.log(x) * 2 + spectrum.abs()
