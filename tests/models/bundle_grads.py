"""Models of the gradient bundle tests (tests/test_bundle_gradients.py). Each is a Sequential, so
that a plain run's module outputs are the logged layers (the label of each is in `LAYERS`)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Sequential:
    """Linear-ReLU-Linear: input_1, linear_1_1, relu_1_2, linear_2_3, output_1."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 4))


def cnn() -> nn.Sequential:
    """Conv-ReLU-MaxPool-Flatten-Linear: input_1, conv2d_1_1, relu_1_2, maxpool2d_1_3, flatten_1_4,
    linear_1_5, output_1."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5)
    )


def mlp_input() -> torch.Tensor:
    return torch.randn(3, 6, generator=torch.Generator().manual_seed(1))


def cnn_input() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))


# label of the layer each module's output is, by model
LAYERS = {
    "mlp": {"0": "linear_1_1", "1": "relu_1_2", "2": "linear_2_3"},
    "cnn": {"0": "conv2d_1_1", "1": "relu_1_2", "2": "maxpool2d_1_3", "3": "flatten_1_4", "4": "linear_1_5"},
}
