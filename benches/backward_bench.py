"""Backward with gradient capture (issue 12): ratios, in one process, of

* the backward of a log made with `save_gradients=True` (every layer's gradient kept), and
* the backward of a plain run whose every op output got a hand-written tensor hook keeping the same
  gradients (`register_hook` from a TorchFunctionMode: the floor for hook-based capture),

to the plain backward. Only `loss.backward()` is timed; each repetition runs a fresh forward.

Usage: python benches/backward_bench.py [--models resnet50,gpt2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torchlens as tl  # noqa: E402


def _resnet50() -> tuple[torch.nn.Module, tuple, dict]:
    import torchvision

    return torchvision.models.resnet50(weights=None).eval(), (torch.randn(1, 3, 224, 224),), {}


def _gpt2() -> tuple[torch.nn.Module, tuple, dict]:
    import transformers

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config()).eval()
    return model, (torch.randint(0, 50257, (1, 128)),), {"use_cache": False}


MODELS: dict[str, Callable[[], tuple[torch.nn.Module, tuple, dict]]] = {"resnet50": _resnet50, "gpt2": _gpt2}


def _first(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, tuple | list):
        return _first(out[0])
    return _first(out[next(iter(out.keys()))]) if hasattr(out, "keys") else out.logits


class _HookEveryOutput(TorchFunctionMode):
    """Keeps each op output's gradient, as a user would write it by hand."""

    def __init__(self, store: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.store = store

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if type(t) is torch.Tensor and t.requires_grad:
                key = len(self.store)
                self.store[key] = None  # type: ignore[assignment]
                t.register_hook(lambda g, key=key: self.store.__setitem__(key, g.detach().clone()))
        return out


def _timed_backward(make_loss: Callable[[], torch.Tensor], repeat: int) -> float:
    times = []
    for _ in range(repeat + 1):
        loss = make_loss()
        t0 = time.perf_counter()
        loss.backward()
        times.append(time.perf_counter() - t0)
        del loss
    return statistics.median(times[1:])  # the first one warms the allocator


def bench(name: str, repeat: int) -> dict[str, float]:
    model, args, kwargs = MODELS[name]()
    counts: dict[str, int] = {}

    def plain() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        return _first(model(*args, **kwargs)).float().square().mean()

    def hand() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        store: dict[int, torch.Tensor] = {}
        with _HookEveryOutput(store):
            loss = _first(model(*args, **kwargs)).float().square().mean()
        counts["hand"] = len(store)
        return loss

    logs: list[tl.ModelLog] = []

    def ours() -> torch.Tensor:
        model.zero_grad(set_to_none=True)
        logs.clear()
        # Saved activations are the graph's own tensors (no copies): the loss is taken from the log.
        log = tl.log_forward_pass(model, args, kwargs, save_gradients=True)
        logs.append(log)
        return _first(log[log.output_layers[0]].activation).float().square().mean()

    t_plain = _timed_backward(plain, repeat)
    t_hand = _timed_backward(hand, repeat)
    t_ours = _timed_backward(ours, repeat)
    kept = len(logs[0].layers_with_saved_gradients) if logs else 0
    return {
        "plain_s": t_plain,
        "hand_ratio": t_hand / t_plain,
        "ours_ratio": t_ours / t_plain,
        "ours_vs_hand": t_ours / t_hand,
        "hand_hooks": counts.get("hand", 0),
        "ours_gradients": kept,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet50,gpt2")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        "| model | hooks by hand | gradients kept (ours) | hand hooks / plain backward | ours / plain backward | ours / hand hooks |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in a.models.split(","):
        r = bench(name, a.repeat)
        print(
            f"| {name} | {r['hand_hooks']} | {r['ours_gradients']} | {r['hand_ratio']:.2f}x | {r['ours_ratio']:.2f}x | "
            f"{r['ours_vs_hand']:.2f}x |"
        )


if __name__ == "__main__":
    main()
