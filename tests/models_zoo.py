"""A zoo of small deterministic models exercising the capture rules (spec §5, §6.4, §7.2-7.4).

Every entry of `ZOO` maps a name to a `Case`: a factory building the model (seeded, CPU, tiny
sizes) and an input function returning `(args, kwargs)` for `forward`. Inputs are drawn from a
private generator so that nothing depends on the global RNG state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


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


class SpecLoop(nn.Module):
    """Spec §6.4 row 1: `for _ in range(4): x = fc(x); x = x + 1; x = x * 2`."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = self.fc(x)
            x = x + 1
            x = x * 2
        return x


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


# --------------------------------------------------------------------------- registry


@dataclass
class Case:
    factory: Callable[[], nn.Module]
    inputs: Callable[[], tuple[tuple, dict]]
    train: bool = False
    extra: dict = field(default_factory=dict)


def _x(*shape: int, seed: int = 0) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((randn(*shape, seed=seed),), {})


def _seeded(cls: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        torch.manual_seed(0)
        return cls()

    make.__name__ = getattr(cls, "__name__", "make")
    return make


ZOO: dict[str, Case] = {
    "add_mul": Case(_seeded(AddMul), _x(2, 3)),
    "inplace_ops": Case(_seeded(InplaceOps), _x(2, 3)),
    "inplace_relu": Case(_seeded(InplaceReLU), _x(2, 4)),
    "views": Case(_seeded(Views), _x(3, 4)),
    "getitem": Case(_seeded(GetItem), _x(2, 4)),
    "getitem_mask": Case(_seeded(GetItemMask), _x(3, 4)),
    "setitem": Case(_seeded(SetItem), _x(2, 3)),
    "setitem_tensor": Case(_seeded(SetItemTensor), _x(2, 4)),
    "numpy_const": Case(_seeded(NumpyConst), _x(2, 4)),
    "zeros": Case(_seeded(Zeros), _x(2, 3)),
    "factories": Case(_seeded(Factories), _x(2, 4)),
    "new_zeros": Case(_seeded(NewZeros), _x(2, 3)),
    "orphans": Case(_seeded(Orphans), _x(2, 3)),
    "two_inputs": Case(_seeded(TwoInputs), lambda: ((randn(2, 4), randn(2, 3, seed=1)), {})),
    "kwarg_input": Case(_seeded(KwargInput), lambda: ((randn(2, 3),), {"scale": randn(2, 3, seed=1), "shift": 0.5})),
    "tuple_output": Case(_seeded(TupleOutput), _x(2, 3)),
    "dict_output": Case(_seeded(DictOutput), _x(2, 3)),
    "nested_list_output": Case(_seeded(NestedListOutput), _x(2, 3)),
    "returns_input": Case(_seeded(ReturnsInput), _x(2, 3)),
    "dup_output": Case(_seeded(DupOutput), _x(2, 3)),
    "buffers": Case(_seeded(BufferModel), _x(2, 4)),
    "batchnorm_eval": Case(_seeded(BNWrap), _x(3, 4)),
    "batchnorm_train": Case(_seeded(BNWrap), _x(3, 4), train=True),
    "const_attr": Case(_seeded(ConstAttr), _x(2, 4)),
    "act_attr": Case(_seeded(ActAttr), _x(2, 4)),
    "frozen_params": Case(_seeded(FrozenParams), _x(2, 4)),
    "shared_block_twice": Case(_seeded(SharedBlockTwice), _x(2, 4)),
    "shared_alias": Case(_seeded(SharedAlias), _x(2, 4)),
    "same_linear_two_places": Case(_seeded(SameLinearTwoPlaces), lambda: ((randn(2, 4), randn(2, 4, seed=1)), {})),
    "nested3": Case(_seeded(Nested3), _x(2, 4)),
    "identity": Case(_seeded(IdentityModel), _x(2, 3)),
    "passthrough": Case(_seeded(PassthroughModel), _x(2, 3)),
    "sequential": Case(_seeded(make_sequential), _x(3, 4)),
    "seq_inside": Case(_seeded(SeqInside), _x(3, 4)),
    "spec_loop": Case(_seeded(SpecLoop), _x(2, 5)),
    "modulelist_loop": Case(_seeded(ModuleListLoop), _x(2, 4)),
    "shape_conditional": Case(_seeded(ShapeConditional), lambda: ((randn(2, 5).abs(),), {})),
    "value_conditional": Case(_seeded(ValueConditional), lambda: ((randn(2, 3).abs(),), {})),
    "cat_stack": Case(_seeded(CatStack), _x(2, 3)),
    "split_chunk": Case(_seeded(SplitChunk), _x(2, 4)),
    "split_mul": Case(_seeded(SplitMul), _x(2, 4)),
    "max_dim": Case(_seeded(MaxDim), _x(3, 5)),
    "matmul_einsum": Case(_seeded(MatmulEinsum), lambda: ((randn(2, 4), randn(2, 3, seed=1)), {})),
    "norm_softmax_dropout": Case(_seeded(NormSoftmaxDropout), _x(3, 6)),
    "embed_lstm": Case(_seeded(EmbedLSTM), lambda: ((torch.randint(0, 10, (2, 5), generator=_gen(3)),), {})),
    "conv_pool": Case(_seeded(ConvPool), _x(2, 2, 8, 8)),
    "residual": Case(_seeded(Residual), _x(3, 4)),
    "attention": Case(_seeded(Attention), _x(2, 5, 8)),
}


def build(name: str) -> tuple[nn.Module, tuple, dict]:
    """Fresh model (in the case's train/eval mode) and fresh inputs for a zoo entry."""
    case = ZOO[name]
    model = case.factory()
    model.train(case.train)
    args, kwargs = case.inputs()
    return model, args, kwargs
