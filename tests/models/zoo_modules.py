"""Zoo models built from nn.Modules: buffers and attributes, module nesting and sharing, loops
and typical layers (spec §5, §6.4, §7.2-7.4). Registered in `zoo.ZOO`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------- buffers / attributes


class BufferModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("scale", torch.full((4,), 2.0))
        self.register_buffer("shift", torch.arange(4, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class BNWrap(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
            self.bn.running_var.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class ConstAttr(nn.Module):
    """A plain tensor attribute (not a registered buffer)."""

    def __init__(self) -> None:
        super().__init__()
        self.const = torch.tensor([1.0, 2.0, 3.0, 4.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.const


class ActAttr(nn.Module):
    """A torch function stored as an instance attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.act = torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x)


class FrozenParams(nn.Module):
    """One frozen and one trainable layer: requires_grad must survive logging."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(4, 4)
        self.frozen.weight.requires_grad_(False)
        self.frozen.bias.requires_grad_(False)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.gelu(self.frozen(x)))


# --------------------------------------------------------------------------- module structure


class Block(nn.Module):
    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.fc = nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x))


class SharedBlockTwice(nn.Module):
    """The same block module called twice in sequence."""

    def __init__(self) -> None:
        super().__init__()
        self.block = Block()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.block(x))


class SharedAlias(nn.Module):
    """One module registered under two names, each name called once."""

    def __init__(self) -> None:
        super().__init__()
        blk = Block()
        self.first = blk
        self.second = blk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x) - 1)


class SameLinearTwoPlaces(nn.Module):
    """The same nn.Linear applied to two unrelated tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a = self.fc(x)
        b = self.fc(y)
        return a + b


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class Mid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


class Nested3(nn.Module):
    """Three levels of nesting: mid -> mid.inner -> mid.inner.fc."""

    def __init__(self) -> None:
        super().__init__()
        self.mid = Mid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mid(x) * 3


class IdentityModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ident = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ident(x) + 1


class Passthrough(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PassthroughModel(nn.Module):
    """A custom submodule that returns its input unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.pt = Passthrough()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pt(x) * 2


def make_sequential() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


class SeqInside(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Identity())
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ModuleListLoop(nn.Module):
    """A ModuleList applied repeatedly (recurrence over two distinct layers)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            for layer in self.layers:
                x = torch.tanh(layer(x))
        return x


class ShapeConditional(nn.Module):
    """Python `if` on a shape (no node) and on a tensor value (sum/gt nodes)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] > 3:
            x = x[:, :3]
        if x.sum() > 0:
            return x * 2
        return x - 1


class ValueConditional(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


# --------------------------------------------------------------------------- typical layers


class MatmulEinsum(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.matmul(x, self.w)
        outer = torch.einsum("bi,bj->bij", h, y)
        return outer @ torch.ones(3, 1) + (x @ x.t()).mean()


class NormSoftmaxDropout(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.ln(self.fc(x)))
        h = F.dropout(h, p=0.3, training=False)
        return F.softmax(h, dim=-1)


class EmbedLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 6)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.fc = nn.Linear(5, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(self.emb(tokens))
        return self.fc(out[:, -1]) + h[0].sum() * 0 + c[0].mean() * 0


class ConvPool(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.conv1d = nn.Conv1d(3, 2, 3)
        self.fc = nn.Linear(2 * 14, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(F.relu(self.conv(x)))  # (B, 3, 4, 4)
        h = h.flatten(2)  # (B, 3, 16)
        h = self.conv1d(h)  # (B, 2, 14)
        h = F.avg_pool1d(h, 1)
        return self.fc(h.flatten(1))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.relu(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(8, 8)
        self.k = nn.Linear(8, 8)
        self.v = nn.Linear(8, 8)
        self.o = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q = self.q(x).view(b, t, 2, d // 2).transpose(1, 2)
        k = self.k(x).view(b, t, 2, d // 2).transpose(1, 2)
        v = self.v(x).view(b, t, 2, d // 2).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(a.transpose(1, 2).reshape(b, t, d))
