"""Models for tests/test_flops.py: one per op family of the FLOPs tables (spec §7.6), with fixed
shapes so that every layer's count can be worked out by hand from the formula."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MatmulOps(nn.Module):
    """a (2,3,4), b (4,5), d (2,4,5), c (2,3,5), bias (5,)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, d: torch.Tensor, c: torch.Tensor, bias: torch.Tensor) -> list:
        return [
            a @ b,  # matmul
            torch.bmm(a, d),
            torch.mm(a[0], b),  # getitem, mm
            torch.matmul(a, b[:, 0]),  # getitem, matmul with a 1-d right operand
            torch.einsum("bij,jk->bik", a, b),
            torch.addmm(bias, a[0], b),  # getitem, addmm
            torch.baddbmm(c, a, d),
        ]


class LinearConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 6)
        self.fc_nb = nn.Linear(4, 6, bias=False)
        self.c1 = nn.Conv1d(3, 4, 3)
        self.c2 = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.c2g = nn.Conv2d(4, 6, 3, groups=2)
        self.c3 = nn.Conv3d(2, 3, 2)
        self.ct1 = nn.ConvTranspose1d(2, 3, 2)
        self.ct2 = nn.ConvTranspose2d(3, 2, 3, stride=2)

    def forward(self, x: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor, s2g: torch.Tensor, s3: torch.Tensor) -> list:
        return [
            self.fc(x),
            self.fc_nb(x),
            self.c1(s1),
            self.c2(s2),
            self.c2g(s2g),
            self.c3(s3),
            self.ct1(s1[:, :2]),  # getitem, convtranspose1d
            self.ct2(s2[:, :, :3, :3]),  # getitem, convtranspose2d
        ]


class Pooling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mp = nn.MaxPool2d(2)
        self.mp_rect = nn.MaxPool2d((2, 3))
        self.ap1 = nn.AvgPool1d(3)
        self.ap3 = nn.AvgPool3d(2)
        self.aap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> list:
        return [self.mp(x), self.mp_rect(x), self.ap1(v), self.ap3(w), self.aap(x)]


class Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(2)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.inorm = nn.InstanceNorm1d(2)
        self.rms = nn.RMSNorm(4)

    def forward(self, x: torch.Tensor, s: torch.Tensor, g: torch.Tensor, i: torch.Tensor) -> list:
        return [self.bn(x), self.ln(s), self.gn(g), self.inorm(i), self.rms(s)]


class Activations(nn.Module):
    def forward(self, x: torch.Tensor) -> list:
        return [
            torch.relu(x),
            F.gelu(x),
            F.silu(x),
            torch.sigmoid(x),
            torch.tanh(x),
            F.elu(x),
            F.softplus(x),
            F.leaky_relu(x),
            F.hardswish(x),
            F.mish(x),
            F.selu(x),
            torch.softmax(x, -1),
            torch.log_softmax(x, 1),
        ]


class Attention(nn.Module):
    """scaled_dot_product_attention with q (1,2,4,8), k (1,2,6,8), v (1,2,6,3)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class Elementwise(nn.Module):
    """x (2,3,4), y (4,)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> list:
        return [
            x + y,
            x * 2,
            y - x,
            x / y,
            torch.exp(x),
            torch.log(x.abs()),  # abs, log
            torch.sqrt(x.abs()),  # abs, sqrt
            x**2,
            torch.addcmul(x, y, y),
            torch.where(x > 0, x, y),  # gt, where
            torch.clamp(x, -1, 1),
        ]


class Reductions(nn.Module):
    """x (2,3,4)."""

    def forward(self, x: torch.Tensor) -> list:
        return [
            x.sum(),
            x.mean(1),
            x.max(dim=2).values,  # max (two outputs: values, indices)
            x.std(),
            x.norm(),
            torch.logsumexp(x, 0),
            x.argmax(),
            x.cumsum(2),
            x.sort(-1).values,  # sort (values, indices)
            x.topk(2, dim=-1).values,  # topk (values, indices)
        ]


class Misc(nn.Module):
    """Embedding, recurrent layers, interpolation, losses and the zero-cost / unknown ops."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.lstm = nn.LSTM(4, 5, batch_first=True)
        self.gru = nn.GRU(5, 3, batch_first=True)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear")
        self.ident = nn.Identity()

    def forward(self, tokens: torch.Tensor, img: torch.Tensor, target: torch.Tensor) -> list:
        e = self.emb(tokens)  # (2, 3, 4)
        h, _ = self.lstm(e)
        g, _ = self.gru(h)
        up = self.up(img)  # (1, 2, 3, 3) -> (1, 2, 6, 6)
        flat = up.view(2, -1)  # (2, 36)
        ce = F.cross_entropy(flat[:, :5], target)
        mse = F.mse_loss(g, torch.zeros_like(g))
        return [
            self.ident(g),
            torch.cat([e, e], 0),
            F.pad(img, (1, 1)),
            torch.zeros(3),
            ce,
            mse,
        ]


class IdentityAfter(nn.Module):
    """sigmoid, then an nn.Identity that returns it unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.ident = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ident(torch.sigmoid(x))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (1, 1, 6, 6)
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


class TinyTransformerBlock(nn.Module):
    """Pre-norm attention + MLP block, d=8, 2 heads; input (1, 3, 8)."""

    def __init__(self, d: int = 8, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).chunk(3, -1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class LoopedLinear(nn.Module):
    """One Linear applied three times (a layer with three passes) inside a submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.sigmoid(self.fc(x))
        return x


class AutogradOps(nn.Module):
    """Linear -> relu -> tanh, then x * x (one tensor saved twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(torch.relu(self.fc(x)))
        return h * h


class AutocastInside(nn.Module):
    """A linear under a bfloat16 CPU autocast region entered mid-forward, then plain float ops."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = self.fc(x)
        with torch.autocast("cpu", enabled=False):
            z = y.float() * 2
        return z + 1
