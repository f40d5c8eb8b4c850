"""Benchmark models, built in code with random weights (nothing is downloaded).

`MODELS` maps a name to (build, make_input) for benches/run.py and benches/fastlog_floor.py;
OpChain and ModuleChain are benches/hotpath.py's per-op chains; LinearChain, ScalarChain,
ChunkRepeat, MulAddLoop and SinCosLoop are benches/microbench.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .readme import SimpleRecurrent


class DeepRecurrence(nn.Module):
    """One Linear(32, 32) + tanh applied 500 times."""

    def __init__(self, steps: int = 500) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = torch.tanh(self.fc(x))
        return x


class OpChain(nn.Module):
    """`n` torch.relu calls: the cost of one wrapped torch function."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = torch.relu(x)
        return x


class ModuleChain(nn.Module):
    """`n` calls of one nn.ReLU: the cost of a module call around the op."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = self.act(x)
        return x


class LinearChain(nn.Module):
    """`n` F.linear(x, W, b) calls on 8x64 tensors (a functional op with tensor args)."""

    def __init__(self, n: int, width: int = 64) -> None:
        super().__init__()
        self.n = n
        self.weight = nn.Parameter(torch.randn(width, width) / width**0.5)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = nn.functional.linear(x, self.weight, self.bias)
        return x


class ScalarChain(nn.Module):
    """`n` calls of `x * 1.0001` (a dunder op with a Python scalar)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n):
            x = x * 1.0001
        return x


class ChunkRepeat(nn.Module):
    """`n` calls of `x.chunk(2)` on the same input (an op returning a tuple: 2 layers per call)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x
        for _ in range(self.n):
            a, _b = x.chunk(2)
        return a


class MulAddLoop(nn.Module):
    """`steps` iterations of `x = x * 1.0001; x = x + 0.0001` (2 ops each)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = x * 1.0001
            x = x + 0.0001
        return x


class SinCosLoop(nn.Module):
    """`steps` iterations of `x = torch.sin(x); x = torch.cos(x)` (2 ops each)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            x = torch.sin(x)
            x = torch.cos(x)
        return x


class GatedRecurrence(nn.Module):
    """A 300-step loop whose `if` on a tensor picks one of two Linear layers at each step:
    300 bool consumptions, each attributed to an arm (the conditional-heavy benchmark)."""

    def __init__(self, steps: int = 300) -> None:
        super().__init__()
        self.up = nn.Linear(32, 32)
        self.down = nn.Linear(32, 32)
        self.steps = steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.steps):
            if x.mean() > 0:
                x = torch.tanh(self.down(x))
            else:
                x = torch.tanh(self.up(x)) + 0.1
        return x


def mlp(blocks: int) -> nn.Module:
    layers: list[nn.Module] = []
    for _ in range(blocks):
        layers += [nn.Linear(64, 64), nn.ReLU()]
    return nn.Sequential(*layers)


def _tv(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision

        return getattr(torchvision.models, name)()

    return build


def _gpt2() -> nn.Module:
    import transformers

    return transformers.GPT2LMHeadModel(transformers.GPT2Config())


def _image() -> list[Any]:
    return [torch.rand(1, 3, 224, 224)]


def _swin_image() -> list[Any]:
    return [torch.rand(1, 3, 256, 256)]


MODELS: dict[str, tuple[Callable[[], nn.Module], Callable[[], list[Any]]]] = {
    "simple_recurrent": (SimpleRecurrent, lambda: [torch.rand(6, 5)]),
    "alexnet": (_tv("alexnet"), _image),
    "resnet50": (_tv("resnet50"), _image),
    "vit_b_16": (_tv("vit_b_16"), _image),
    "swin_v2_b": (_tv("swin_v2_b"), _swin_image),
    "gpt2": (_gpt2, lambda: [torch.randint(0, 50257, (1, 128))]),
    "mlp_2000": (lambda: mlp(2000), lambda: [torch.rand(8, 64)]),
    "deep_recurrence": (DeepRecurrence, lambda: [torch.rand(8, 32)]),
    "gated_recurrence": (GatedRecurrence, lambda: [torch.rand(8, 32)]),
}

QUICK = ["simple_recurrent", "alexnet", "mlp_2000", "deep_recurrence"]
FULL = list(MODELS)
