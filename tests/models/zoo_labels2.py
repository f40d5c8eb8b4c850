"""More label-class models (see `zoo_labels`): loop detection, outputs held by objects, torchvision's
compiled ops and identity modules. Exact 2.15 labels are in tests/test_zoo_labels.py."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .zoo import randn

Spec = tuple[Callable[[], nn.Module], Callable[[], tuple[tuple, dict]]]


def _x(*shape: int) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((randn(*shape, seed=1),), {})


# ------------------------------------------------------------------------------- loop detection
# BART's encoder layer: dropout + residual add after attention and again after the MLP, a layer
# norm between. 2.15 makes the two dropouts (and adds) passes of one layer; a parameter-free op
# in that place does not link them.


class ResidualPair(nn.Module):
    """Two dropout + residual blocks joined by `mid` (a layer norm, or a parameter-free op)."""

    def __init__(self, mid: str = "norm", depth: int = 2) -> None:
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(4, 4) for _ in range(depth)])
        self.norms = nn.ModuleList([nn.LayerNorm(4) for _ in range(depth)])
        self.mid = mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for lin, norm in zip(self.lins, self.norms, strict=True):
            a = h + F.dropout(lin(h), 0.1, self.training)
            h = norm(a) if self.mid == "norm" else torch.exp(a) if self.mid == "exp" else a
        return h


class ParamFreeCarry(nn.Module):
    """A loop body `sin, add, exp` run `n` times: with two runs 2.15 keeps the exps apart."""

    def __init__(self, n: int = 2) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 2
        for _ in range(self.n):
            h = torch.exp(torch.sin(h) + h)
        return h


class LstmStates(nn.Module):
    """An LSTM's output, h and c: passes of one layer (same function, same parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(x)
        return out[:, -1] + h[0] * c[0]


class TwoInputsOneConv(nn.Module):
    """Two same-shaped inputs through one conv: 2.15 merges them into `input_1:1`, `input_1:2`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.conv(a) - self.conv(b)


# ----------------------------------------------------------------- outputs held by other objects


@dataclass
class Pair:
    value: torch.Tensor
    aux: torch.Tensor


class Cache:
    """A transformers-style cache: a list of layers holding `keys` and `values`."""

    class Layer:
        def __init__(self, k: torch.Tensor, v: torch.Tensor) -> None:
            self.keys = k
            self.values = v
            self._seen = k.shape[-1]

    def __init__(self) -> None:
        self.layers: list[Cache.Layer] = []

    def update(self, k: torch.Tensor, v: torch.Tensor) -> None:
        self.layers.append(Cache.Layer(k, v))


class Decoded(dict):
    """A dict subclass with an attribute alias, like transformers' `ModelOutput`."""

    @property
    def past(self) -> Cache:
        return self["cache"]


Scores = namedtuple("Scores", ["logits", "probs"])


class ReturnsDataclass(nn.Module):
    def forward(self, x: torch.Tensor) -> Pair:
        return Pair(value=x * 2, aux=x.sum(0))


class ReturnsCache(nn.Module):
    """Returns hidden states and a cache (2.15 lists every cached tensor as an output)."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = nn.ModuleList([nn.Linear(4, 8), nn.Linear(4, 8)])

    def forward(self, x: torch.Tensor) -> Decoded:
        cache = Cache()
        h = x
        for lin in self.kv:
            k, v = lin(h).chunk(2, -1)
            cache.update(k, v)
            h = torch.tanh(k + v)
        return Decoded(hidden=h, cache=cache)


class ReturnsNamedTuple(nn.Module):
    def forward(self, x: torch.Tensor) -> Scores:
        logits = x * 3
        return Scores(logits, logits.softmax(-1))


class ReturnsPrivate(nn.Module):
    """An object with private and name-mangled attributes (addresses drop the underscores)."""

    class Out:
        def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
            self._a = a
            self.__b = b
            self.c = [a, b]

    def forward(self, x: torch.Tensor) -> ReturnsPrivate.Out:
        return ReturnsPrivate.Out(x + 1, x - 1)


class Images:
    """torchvision's `ImageList`: a tensor plus sizes."""

    def __init__(self, tensors: torch.Tensor) -> None:
        self.tensors = tensors
        self.sizes = [tuple(t.shape[-2:]) for t in tensors]


class Batcher(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[Images, None]:
        batch = x.new_full((x.shape[0] + 1, *x.shape[1:]), 0.0)
        batch[: x.shape[0]].copy_(x * 2)
        return Images(batch), None


class ObjectThroughModule(nn.Module):
    """A submodule returning an object (detection's transform): its tensors exit the submodule."""

    def __init__(self) -> None:
        super().__init__()
        self.batcher = Batcher()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images, _ = self.batcher(x)
        return self.conv(images.tensors)


# --------------------------------------------------------------------------- torchvision ops
# 2.15 wraps torch.ops.torchvision.* through each op's `_op`: every one logs as `op`.

_BOXES = [[0, 0.0, 0.0, 3.0, 3.0], [0, 1.0, 1.0, 4.0, 5.0]]


class RoiAlign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.roi_align(x * 2, torch.tensor(_BOXES), output_size=2).relu()


class RoiPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.roi_pool(x + 1, torch.tensor(_BOXES), output_size=2).sum((2, 3))


class PsRoiAlign(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torchvision.ops.ps_roi_align(x.repeat(1, 4, 1, 1), torch.tensor(_BOXES), output_size=2)


class Nms(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes = torch.tensor(_BOXES)[:, 1:] + x.mean() * 0
        keep = torchvision.ops.nms(boxes, x.flatten()[:2].sigmoid(), 0.3)
        return boxes[keep].sum() + x.sum()


class DeformConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.offset = nn.Conv2d(2, 18, 3, padding=1)
        self.deform = torchvision.ops.DeformConv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deform(x, self.offset(x))


# ------------------------------------------------------------------------------ identity modules
# A module that returns one of its inputs gets an identity node, which in 2.15 is a dead end: the
# caller goes on with the input itself (efficientnet's StochasticDepth in eval, QuantStub, ...).


class PassThrough(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class SkipBlock(nn.Module):
    """Conv, norm, a pass-through `drop` module and the residual add (efficientnet's MBConv)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.drop = PassThrough()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.conv(x)) + x


class IdentityChain(nn.Module):
    """Four skip blocks in a row (swin's stages): the identity nodes stay separate layers."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[SkipBlock() for _ in range(4)])
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x)).mean((2, 3))


class StubbedNet(nn.Module):
    """Quantization stubs around a net (torchvision's quantizable models, `quantize=False`)."""

    def __init__(self) -> None:
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True), nn.Identity(), nn.Linear(4, 2))
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dequant(self.body(self.quant(x)))


class ReturnsInputInTuple(nn.Module):
    """A module handing back one of its inputs inside a tuple."""

    class Split(nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, y * 2

    def __init__(self) -> None:
        super().__init__()
        self.split = ReturnsInputInTuple.Split()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.split(x, x + 1)
        return a * b


class PasteWithTensorBounds(nn.Module):
    """maskrcnn's `paste_mask_in_image`: `canvas[y0:y1, x0:x1] = patch` with 0-d tensor bounds (the
    slice runs wrapped calls inside `__setitem__`; its first argument must stay the canvas's node)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        canvas = torch.zeros(6, 6)
        y0 = (x.abs().sum() * 0 + 1).long()
        canvas[y0:4, y0:5] = x * 2
        return canvas + 1


def _two() -> tuple[tuple, dict]:
    return (randn(1, 2, 4, 4, seed=1), randn(1, 2, 4, 4, seed=2)), {}


FAMILIES: dict[str, Callable[[], dict[str, Spec]]] = {
    "labels-loops": lambda: {
        "lbl_residual_pair_norm": (lambda: ResidualPair("norm"), _x(2, 4)),
        "lbl_residual_pair_exp": (lambda: ResidualPair("exp"), _x(2, 4)),
        "lbl_residual_triple_plain": (lambda: ResidualPair("plain", 3), _x(2, 4)),
        "lbl_param_free_carry_2": (lambda: ParamFreeCarry(2), _x(2, 3)),
        "lbl_param_free_carry_3": (lambda: ParamFreeCarry(3), _x(2, 3)),
        "lbl_lstm_states": (LstmStates, _x(2, 3, 4)),
        "lbl_two_inputs_one_conv": (TwoInputsOneConv, _two),
    },
    "labels-outputs": lambda: {
        "lbl_returns_dataclass": (ReturnsDataclass, _x(2, 3)),
        "lbl_returns_cache": (ReturnsCache, _x(2, 4)),
        "lbl_returns_namedtuple": (ReturnsNamedTuple, _x(2, 3)),
        "lbl_returns_private": (ReturnsPrivate, _x(2, 3)),
        "lbl_object_through_module": (ObjectThroughModule, _x(1, 2, 3, 3)),
    },
    "labels-tvops": lambda: {
        "lbl_roi_align": (RoiAlign, _x(1, 1, 6, 6)),
        "lbl_roi_pool": (RoiPool, _x(1, 1, 6, 6)),
        "lbl_ps_roi_align": (PsRoiAlign, _x(1, 1, 6, 6)),
        "lbl_nms": (Nms, _x(2, 3)),
        "lbl_deform_conv": (DeformConv, _x(1, 2, 5, 5)),
    },
    "labels-identity": lambda: {
        "lbl_skip_block": (SkipBlock, _x(1, 2, 4, 4)),
        "lbl_identity_chain": (IdentityChain, _x(1, 2, 4, 4)),
        "lbl_stubbed_net": (StubbedNet, _x(2, 4)),
        "lbl_returns_input_in_tuple": (ReturnsInputInTuple, _x(2, 3)),
        "lbl_passthrough_module": (lambda: nn.Sequential(nn.Linear(4, 4), PassThrough(), nn.Tanh()), _x(2, 4)),
    },
    "toy-capture": lambda: {"paste_with_tensor_bounds": (PasteWithTensorBounds, _x(3, 4))},
}
