"""Models whose logs were wrong before issue 11, by class (see tests/test_fidelity.py).

`ALIAS`: a tensor is changed in place through a view (unsqueeze, reshape, transpose, slicing,
diagonal, chains of views) after its op ran, then returned or passed on. `MULTI`: an op returns
several tensors, one of them an argument handed back unchanged (`broadcast_tensors`,
`atleast_2d`), and the results are consumed apart. `AUTOCAST`: `torch.autocast` entered in the
middle of `forward`. `NESTED`: one module class nested in itself at several depths.

Each table maps a name to `(model factory, input factory)`; inputs are a tensor or a list of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Case = tuple[Callable[[], nn.Module], Callable[[], Any]]


def _randn(*shape: int) -> Callable[[], torch.Tensor]:
    return lambda: torch.randn(*shape)


# --------------------------------------------------------------------------- writes through aliases


class UnsqueezeFill(nn.Module):
    """The input is zeroed through an unsqueezed view and returned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.unsqueeze(0)
        y.fill_(0)
        return x


class ReshapeScale(nn.Module):
    """An intermediate is scaled through a flat reshape view and returned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(x)
        h.reshape(-1).mul_(2)
        return h


class TransposeAfterUse(nn.Module):
    """`z` consumes `h` before `h` is changed through its transpose; both are returned."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(x) + 0.5
        z = h + 1
        h.t().mul_(3)
        return h, z


class SliceZero(nn.Module):
    """A block of an intermediate is zeroed through a slice."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 2
        h[1:3, 2:4].zero_()
        return h


class InputSliceZero(nn.Module):
    """A block of the input itself is zeroed through a slice and the input is returned."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x[1:3, 2:4].zero_()
        return x


class DiagonalFill(nn.Module):
    """The diagonal of an intermediate is overwritten, then the result feeds a matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x @ x.t()
        h.diagonal().fill_(5.0)
        return h


class ViewChain(nn.Module):
    """Several views in a row (view, transpose, slice, unsqueeze), then a write through the last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(x)
        h.view(4, 6).transpose(0, 1)[1:4].unsqueeze(0).mul_(-1)
        return h


class StridedSelectCopy(nn.Module):
    """Every other element of one row is overwritten (select + strided slice + copy_)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.exp()
        h.select(0, 1)[::2].copy_(torch.ones(3))
        return h - 1


class WriteThenConsume(nn.Module):
    """A later op consumes the changed tensor, and the changed tensor is returned as well."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(x)
        h.unsqueeze(0).add_(2)
        return h * 3, h


class ChunkOtherHalf(nn.Module):
    """Writing one chunk leaves the other chunk's node valid: no extra node for `b`."""

    def __init__(self) -> None:
        super().__init__()
        self.halves = HalfWriter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.halves(x) + 1


class HalfWriter(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.tanh(x).chunk(2)
        a.mul_(2)
        return b


class WriteInside(nn.Module):
    """A submodule changes its result through a view before returning it."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = ViewWriter()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.inner(x))


class ViewWriter(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(x) + 1
        h[:, :2].mul_(0.5)
        return h


class DetachedWrite(nn.Module):
    """A submodule writes its result through a detached alias (same storage, no autograd view)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _DetachWriter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * 2


class _DetachWriter(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(x)
        h.detach()[0].zero_()
        return h


ALIAS: dict[str, Case] = {
    "unsqueeze_fill": (UnsqueezeFill, _randn(4, 5)),
    "reshape_scale": (ReshapeScale, _randn(3, 4)),
    "transpose_after_use": (TransposeAfterUse, _randn(4, 4)),
    "slice_zero": (SliceZero, _randn(4, 5)),
    "input_slice_zero": (InputSliceZero, _randn(4, 5)),
    "diagonal_fill": (DiagonalFill, _randn(4, 3)),
    "view_chain": (ViewChain, _randn(2, 12)),
    "strided_select_copy": (StridedSelectCopy, _randn(3, 6)),
    "write_then_consume": (WriteThenConsume, _randn(3, 4)),
    "chunk_other_half": (ChunkOtherHalf, _randn(4, 3)),
    "write_inside": (WriteInside, _randn(2, 6)),
    "detached_write": (DetachedWrite, _randn(3, 4)),
}


# --------------------------------------------------------------------------- several results consumed apart


class MseDetached(nn.Module):
    """`F.mse_loss` broadcasts a detached target; the input comes back from broadcast_tensors as is."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.fc(x), t.detach())


class BroadcastApart(nn.Module):
    """broadcast_tensors called directly; its results go to different ops."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, b = torch.broadcast_tensors(x, t.detach())
        return a * 2 + b.exp()


class BroadcastThree(nn.Module):
    """Three tensors, only two of them expanded."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b, c = torch.broadcast_tensors(x, y, x[:, :1].detach())
        return a.sin() + b * c


class LossFamily(nn.Module):
    """Several losses that broadcast their (detached) target."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        d = t.detach()
        return F.l1_loss(x, d) + F.smooth_l1_loss(x, d) + F.huber_loss(x * 2, d)


class AtLeast2d(nn.Module):
    """atleast_2d hands back its 2-d argument itself next to a reshaped 1-d one."""

    def forward(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        a, b = torch.atleast_2d(x, v.detach())
        return a.relu() @ b.t()


class MaxApart(nn.Module):
    """max(dim) values and indices used by different consumers; an LSTM's h detached."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(5, 3, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(x)
        vals, idx = out.max(dim=1)
        return vals + h.detach()[0] * idx.float() + c[0]


MULTI: dict[str, Case] = {
    "mse_detached_broadcast": (MseDetached, lambda: [torch.randn(4, 5), torch.randn(1, 5)]),
    "mse_detached_same_shape": (MseDetached, lambda: [torch.randn(4, 5), torch.randn(4, 5)]),
    "broadcast_apart": (BroadcastApart, lambda: [torch.randn(4, 5), torch.randn(1, 5)]),
    "broadcast_three": (BroadcastThree, lambda: [torch.randn(3, 4), torch.randn(4)]),
    "loss_family": (LossFamily, lambda: [torch.randn(3, 4), torch.randn(1, 4)]),
    "atleast_2d": (AtLeast2d, lambda: [torch.randn(3, 4), torch.randn(4)]),
    "max_apart": (MaxApart, _randn(2, 4, 5)),
}


# --------------------------------------------------------------------------- autocast entered mid-forward


class AutocastLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.fc(x)
        return y.float() + x


class AutocastConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = torch.relu(self.conv(x))
        return self.head(h.float())


class AutocastAttention(nn.Module):
    """Matmuls and a softmax under autocast, a layer norm after it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q, k, v = self.qkv(x).chunk(3, dim=-1)
            att = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1)
            y = att @ v
        return self.norm(y.float() + x)


class AutocastNestedOff(nn.Module):
    """An autocast region with a nested region that turns it off again."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            h = self.a(x)
            with torch.autocast("cpu", enabled=False):
                g = self.b(h.float())
            h = self.a(g)
        return h.float().sum(dim=0)


class AutocastSubmodule(nn.Module):
    """The autocast region is opened inside a submodule's forward."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _AutocastInner()
        self.out = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.inner(x).float() * 2)


class _AutocastInner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.bmm(self.fc(x), x.transpose(1, 2)) @ x


AUTOCAST: dict[str, Case] = {
    "autocast_linear": (AutocastLinear, _randn(3, 4)),
    "autocast_conv": (AutocastConv, _randn(1, 3, 8, 8)),
    "autocast_attention": (AutocastAttention, _randn(2, 5, 8)),
    "autocast_nested_off": (AutocastNestedOff, _randn(3, 4)),
    "autocast_submodule": (AutocastSubmodule, _randn(2, 3, 6)),
}


# --------------------------------------------------------------------------- one class at several depths


class Cell(nn.Module):
    """Nests itself; every level scales half its result through a view after the inner level ran."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.inner = Cell(depth - 1) if depth > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(x)
        if self.inner is not None:
            out = self.inner(out)
        out[:, :2].mul_(0.5)
        return out


class UnetBlock(nn.Module):
    """pix2pix's skip-connection block: nests itself, with in-place LeakyReLU/ReLU on its input."""

    def __init__(self, outer: int, inner: int, sub: nn.Module | None = None, outermost: bool = False) -> None:
        super().__init__()
        self.outermost = outermost
        down = nn.Conv2d(outer, inner, 4, stride=2, padding=1, bias=False)
        if sub is None:
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), down, nn.ReLU(True), up, nn.BatchNorm2d(outer)]
        elif outermost:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1)
            layers = [down, sub, nn.ReLU(True), up, nn.Tanh()]
        else:
            up = nn.ConvTranspose2d(inner * 2, outer, 4, stride=2, padding=1, bias=False)
            layers = [nn.LeakyReLU(0.2, True), down, nn.BatchNorm2d(inner), sub, nn.ReLU(True), up]
            layers.append(nn.BatchNorm2d(outer))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


def unet() -> nn.Module:
    block = UnetBlock(16, 16)
    block = UnetBlock(8, 16, block)
    block = UnetBlock(4, 8, block)
    return UnetBlock(3, 4, block, outermost=True)


class Fractal(nn.Module):
    """FractalNet-style: f_{d} = mean(conv(x), f_{d-1}(f_{d-1}(x)))."""

    def __init__(self, depth: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.deeper = nn.ModuleList([Fractal(depth - 1), Fractal(depth - 1)]) if depth > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        if self.deeper is None:
            return y
        z = self.deeper[1](self.deeper[0](x))
        return (y + z) / 2


class TreeShared(nn.Module):
    """A branch class at several depths; one instance is also called again at the top."""

    def __init__(self) -> None:
        super().__init__()
        self.leaf = Branch(None)
        self.tree = Branch(Branch(Branch(self.leaf)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.leaf(self.tree(x))


class Branch(nn.Module):
    def __init__(self, sub: nn.Module | None) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.sub = sub

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        if self.sub is not None:
            h = h + self.sub(h)
        h.unsqueeze(0).mul_(0.9)
        return h


class Wrapped(nn.Module):
    """A pass-through wrapper class nested in itself around an in-place ReLU and an Identity."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class WrappedStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.a = Wrapped(Wrapped(nn.Sequential(nn.ReLU(inplace=True), Wrapped(nn.Identity()))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return self.a(h) * 2


NESTED: dict[str, Case] = {
    "cell_depth_4": (lambda: Cell(4), _randn(2, 4)),
    "unet_train": (lambda: unet().train(), _randn(2, 3, 16, 16)),
    "unet_eval": (lambda: unet().eval(), _randn(1, 3, 16, 16)),
    "fractal_3": (lambda: Fractal(3), _randn(1, 3, 6, 6)),
    "tree_shared": (TreeShared, _randn(3, 4)),
    "wrapped_stack": (WrappedStack, _randn(2, 4)),
}

ALL: dict[str, Case] = {**ALIAS, **MULTI, **AUTOCAST, **NESTED}
