"""Zoo models built from torch functions and tensor methods: chains, in-place ops, indexing,
factories, input/output shapes and multi-output ops (spec §5, §7.2-7.4). Registered in `zoo.ZOO`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

# --------------------------------------------------------------------------- simple chains


class AddMul(nn.Module):
    """`y = x + 1; y = y * 2` -> input_1, add_1_1, mul_1_2, output_1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + 1
        y = y * 2
        return y


class InplaceOps(nn.Module):
    """add_ / mul_ on a clone; records whether the in-place call returned the same object."""

    def __init__(self) -> None:
        super().__init__()
        self.same_object: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        r = y.add_(1)
        self.same_object.append(r is y)
        y.mul_(2)
        return y


class InplaceReLU(nn.Module):
    """Linear followed by nn.ReLU(inplace=True) (torch.relu_) and then an in-place add on an input."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc(x))
        x.add_(1)  # in-place on the (cloned) model input
        return h + x


class Views(nn.Module):
    """view -> transpose -> reshape -> permute -> unsqueeze -> expand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.view(2, 6)
        y = y.transpose(0, 1)
        y = y.reshape(3, 4)
        y = y.permute(1, 0)
        y = y.unsqueeze(0)
        y = y.expand(2, 4, 3)
        return y


class GetItem(nn.Module):
    """Slicing and indexing with a tensor index built inside forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = x[:, 1:3]
        idx = torch.tensor([0, 2])
        b = x[:, idx]
        return a + b


class GetItemMask(nn.Module):
    """Integer indexing plus boolean-mask indexing with a mask computed from the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row = x[0]
        mask = x > 0
        picked = x[mask]
        return row.sum() + picked.sum()


class SetItem(nn.Module):
    """`y[:, 0] = 0.0` on a clone, then `y * 2`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.clone()
        y[:, 0] = 0.0
        return y * 2


class SetItemTensor(nn.Module):
    """`__setitem__` whose value is itself a computed tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.zeros(2, 4)
        y[0] = x.sum(dim=0)
        return y + x


class NumpyConst(nn.Module):
    """torch.from_numpy inside forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.linspace(0.0, 1.0, 4, dtype=np.float32)
        t = torch.from_numpy(arr)
        return x + t


class Zeros(nn.Module):
    """torch.zeros inside forward -> zeros_1_1 before add_1_2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(2, 3)
        return x + z


class Factories(nn.Module):
    """zeros / ones / arange / randn (with its own generator) / new_zeros / full inside forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(123)
        a = torch.zeros(2, 4)
        b = torch.ones(2, 4)
        c = torch.arange(4, dtype=torch.float32)
        d = torch.randn(2, 4, generator=g)
        e = x.new_zeros(2, 4)
        f = torch.full((2, 4), 0.5)
        return x + a + b + c + d + e + f


class NewZeros(nn.Module):
    """`x.new_zeros` creates a fresh tensor: a parentless node per the spec."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.new_zeros(2, 3)
        return z + x


class Orphans(nn.Module):
    """A computation connected to neither input nor output (removed as orphans)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        junk = torch.ones(3) * 5
        del junk
        return x + 1


# --------------------------------------------------------------------------- inputs / outputs


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * y


class KwargInput(nn.Module):
    def forward(self, x: torch.Tensor, *, scale: torch.Tensor | None = None, shift: float = 0.0) -> torch.Tensor:
        out = x * scale if scale is not None else x
        return out + shift


class TupleOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sin(x), torch.cos(x)


class DictOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"a": x + 1, "b": x * 2}


class NestedListOutput(nn.Module):
    def forward(self, x: torch.Tensor) -> list[Any]:
        return [x.exp(), [x.abs(), (x.neg(),)]]


class ReturnsInput(nn.Module):
    """Returns its input unchanged plus a computed value."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x + 1


class DupOutput(nn.Module):
    """The same tensor returned at two positions (two output nodes, spec §5.4)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x * 2
        return y, y


# --------------------------------------------------------------------------- multi-output ops


class CatStack(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.cat([x, x * 2], dim=1)
        s = torch.stack([c, c + 1], dim=0)
        return s


class SplitChunk(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = torch.split(x, 2, dim=1)
        c, d = x.chunk(2, dim=0)
        return a * b, c - d


class SplitMul(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, 2, dim=1)
        return a * b


class MaxDim(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.max(x, dim=1)
        return values, indices
