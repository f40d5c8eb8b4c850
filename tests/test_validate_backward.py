"""`validate_backward_pass` (spec §11.4): True on real models, False when a saved gradient is wrong."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import torchlens as tl

from models import registry
from models.training import Blocks, LstmCellLoop, LstmTagger


@pytest.mark.parametrize("name", ["blocks", "resnet18", "gpt2", "lstm", "lstm_cell"])
def test_true_on_real_models_and_false_when_perturbed(name: str) -> None:
    torch.manual_seed(0)
    if name == "resnet18":
        model, args, kwargs = torchvision.models.resnet18(weights=None), (torch.randn(2, 3, 32, 32),), {}
    elif name == "gpt2":
        model, args, kwargs = registry.build("hf_gpt2_lm")
    else:
        cls = {"blocks": Blocks, "lstm": LstmTagger, "lstm_cell": LstmCellLoop}[name]
        model, args, kwargs = cls(), ((torch.randn(3, 6),) if name == "blocks" else (torch.randn(2, 3, 5),)), {}
    assert tl.validate_backward_pass(model, args, kwargs)
    assert not tl.validate_backward_pass(model, args, kwargs, perturb_saved_gradients=True)


def test_custom_loss_and_the_gradients_left_as_found() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x = torch.randn(4, 6)
    model(x).sum().backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert tl.validate_backward_pass(model, x, loss_fn=lambda out: out.square().mean())
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())


def test_a_wrong_loss_function_is_caught() -> None:
    class NoTensor(nn.Module):
        def forward(self, x: torch.Tensor) -> dict:
            return {"n": int(x.shape[0])}

    with pytest.raises(ValueError, match="no tensor"):
        tl.validate_backward_pass(NoTensor(), torch.randn(2, 3))
