"""Module outputs seen by plain forward hooks equal the activations torchlens logged (issue: engine)."""

from __future__ import annotations

from collections import Counter

import torch
import torchvision
import transformers
from torch import nn

import torchlens as tl


def hooked_outputs(model: nn.Module, args: list, kwargs: dict) -> dict[str, torch.Tensor]:
    """Address (or address:pass for modules that run several times) -> cloned tensor output."""
    calls: Counter[str] = Counter()
    seen: dict[str, torch.Tensor] = {}

    def hook(mod: nn.Module, inp: object, out: object, name: str) -> None:
        calls[name] += 1
        if type(out) is torch.Tensor:
            seen[f"{name}:{calls[name]}"] = out.detach().clone()

    handles = [
        m.register_forward_hook(lambda mod, a, out, name=name: hook(mod, a, out, name))
        for name, m in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return seen


def check_against_hooks(model: nn.Module, args: list, kwargs: dict | None = None) -> int:
    model.eval()
    kwargs = kwargs or {}
    seen = hooked_outputs(model, args, kwargs)
    with torch.no_grad():
        log = tl.log_forward_pass(model, args, kwargs, layers_to_save="all", detach_saved_tensors=True)
    assert seen
    for key, value in seen.items():
        entry = log[key]
        assert torch.equal(entry.activation, value), f"{key} -> {entry.layer_label}"
    return len(seen)


def test_resnet50_matches_hooks() -> None:
    model = torchvision.models.resnet50()
    n = check_against_hooks(model, [torch.rand(1, 3, 224, 224)])
    assert n > 150


def test_vit_b_16_matches_hooks() -> None:
    model = torchvision.models.vit_b_16()
    n = check_against_hooks(model, [torch.rand(1, 3, 224, 224)])
    assert n > 100


def test_gpt2_matches_hooks() -> None:
    # GPT-2 small's real widths (768, 12 heads, full vocabulary), two of its twelve blocks to keep CI fast.
    config = transformers.GPT2Config(n_layer=2)
    model = transformers.GPT2LMHeadModel(config)
    ids = torch.randint(0, config.vocab_size, (1, 32))
    n = check_against_hooks(model, [ids])
    assert n > 15
