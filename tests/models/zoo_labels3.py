"""Label-class models where a module's `forward` is reached without `Module.__call__`.

SqueezeBERT's encoder calls `layer.forward(...)`; checkpointing helpers take `block.forward` as a
callable. TorchLens 2.15 counts each such call as a pass of that module; so must we.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .zoo_labels import _x

Spec = tuple[Callable[[], nn.Module], Callable[[], tuple[tuple, dict]]]


class Layer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return torch.relu(self.fc(x)) * scale


class DirectLoop(nn.Module):
    """SqueezeBERT's encoder: `for layer in self.layers: x = layer.forward(x)`."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList([Layer() for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer.forward(x)
        return x


class DirectKeywords(nn.Module):
    """A direct call with keyword arguments next to a normal call of the same module."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = Layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer.forward(x=x, scale=2.0) + self.layer(x)


def _run(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    return fn(x)


class ForwardAsCallable(nn.Module):
    """A helper given `block.forward` (the shape of `torch.utils.checkpoint(block.forward, x)`)."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(4, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(_run(self.block.forward, x))


class PreHookCallsModule(nn.Module):
    """A forward pre-hook that runs another module before the hooked module's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4)
        self.body = Layer()
        self.body.register_forward_pre_hook(lambda _m, args: (self.norm(args[0]),))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).sum(-1)


class NestedDirect(nn.Module):
    """A direct call whose forward calls its children normally, two levels deep."""

    class Outer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Layer()
            self.act = nn.GELU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.inner.forward(x) + self.inner(x))

    def __init__(self) -> None:
        super().__init__()
        self.outer = NestedDirect.Outer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.outer.forward(x) * 3


FAMILIES: dict[str, Callable[[], dict[str, Spec]]] = {
    "labels-direct-forward": lambda: {
        "lbl_direct_loop": (DirectLoop, _x(2, 4)),
        "lbl_direct_keywords": (DirectKeywords, _x(2, 4)),
        "lbl_forward_as_callable": (ForwardAsCallable, _x(2, 4)),
        "lbl_prehook_calls_module": (PreHookCallsModule, _x(2, 4)),
        "lbl_nested_direct": (NestedDirect, _x(2, 4)),
    },
}
