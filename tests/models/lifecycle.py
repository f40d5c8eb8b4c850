"""Models for the log-lifecycle and summary-table tests: buffers used several times or shared,
the spec's summary example, and small nets whose summaries TorchLens 2.15 printed.
"""

from __future__ import annotations

import torch
from torch import nn


# ------------------------------------------------------------------ buffers (spec §7.3)
class BufferManyUses(nn.Module):
    """One registered buffer read three times in one forward."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.full((4,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale
        y = y + self.scale
        return y - self.scale


class BufferInner(nn.Module):
    def __init__(self, t: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("s", t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.s


class SharedBufferTwoModules(nn.Module):
    """The same tensor registered as a buffer of two submodules."""

    def __init__(self) -> None:
        super().__init__()
        t = torch.arange(4.0) + 1
        self.a = BufferInner(t)
        self.b = BufferInner(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class SharedBufferLoop(nn.Module):
    """Two submodules sharing one buffer, both called twice in a loop."""

    def __init__(self) -> None:
        super().__init__()
        t = torch.full((4,), 1.5)
        self.a = BufferInner(t)
        self.b = BufferInner(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(2):
            x = self.b(self.a(x))
        return x


class BufferModuleCalledTwice(nn.Module):
    """A module with a buffer, called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.blk = BufferInner(torch.full((4,), 3.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blk(self.blk(x) + 1)


class BufferInLoop(nn.Module):
    """A buffer added in every iteration of a loop."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("b", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.relu(x + self.b)
        return x


class BufferReadFromRoot(nn.Module):
    """A submodule's buffer used inside the submodule and again by the root."""

    def __init__(self) -> None:
        super().__init__()
        self.sub = BufferInner(torch.full((4,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.sub(x) + self.sub.s


class EqualBuffersTwoModules(nn.Module):
    """Two different buffers with equal values: two buffer layers."""

    def __init__(self) -> None:
        super().__init__()
        self.a = BufferInner(torch.full((4,), 2.0))
        self.b = BufferInner(torch.full((4,), 2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


class BatchNormTwice(nn.Module):
    """One BatchNorm (running statistics are buffers updated in place) applied twice."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(torch.relu(self.bn(x)))


class BufferListAttr(nn.Module):
    """Plain tensors in a list attribute, one of them read twice."""

    def __init__(self) -> None:
        super().__init__()
        self.ts = [torch.ones(4), torch.full((4,), 2.0)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ts[0] + self.ts[1] + self.ts[0]


# ------------------------------------------------------------------ summaries (spec §2.7)
class TinySummaryModel(nn.Module):
    """The model of the spec's golden `summary()` example (1,388 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(256, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.relu(self.conv(x))))


class LoopSummaryNet(nn.Module):
    """A recurrent cell: `auto` summaries list passes."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = nn.Linear(5, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.relu(self.cell(x))
        return x


class TwoPathSummaryNet(nn.Module):
    """Two inputs, a frozen module, a parameter-free module called twice, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6, bias=False)
        self.b = nn.Sequential(nn.Linear(6, 6, bias=False), nn.ReLU())
        self.frozen = nn.Linear(6, 6, bias=False)
        for p in self.frozen.parameters():
            p.requires_grad_(False)
        self.act = nn.ReLU()
        self.head = nn.Linear(6, 2, bias=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.a(x)
        v = self.b(y)
        w = self.act(self.frozen(u + v))
        w = self.act(w * 2)
        return self.head(w), w + u


class WideParamNet(nn.Module):
    """A root-level parameter used in a loop over large tensors (no submodules)."""

    def __init__(self) -> None:
        super().__init__()
        self.s = nn.Parameter(torch.ones(200000))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = x * self.s
        return x[:100000] + 1


# ------------------------------------------------------------------ keep_unsaved_layers (spec §2.4)
class LinearReluBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.lin(x))


class LoopedBlocks(nn.Module):
    """An embedding layer, one block applied three times, and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 8)
        self.block = LinearReluBlock()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x) * 2
        for _ in range(3):
            x = self.block(x)
        return self.head(torch.tanh(x))
