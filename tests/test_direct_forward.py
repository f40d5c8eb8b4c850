"""Module passes span `forward`, as in 2.15: a direct `layer.forward(...)` call is a pass, hooks run
outside the pass, and every forward wrapper is gone after the log (labels: test_zoo_labels.py)."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

import torchlens as tl

from models import registry, zoo_labels3


def _log(name: str) -> tuple[nn.Module, tuple, tl.ModelLog]:
    model, args, kwargs = registry.build(name)
    return model, args, tl.log_forward_pass(model, args, kwargs, layers_to_save="all")


def test_direct_calls_are_module_passes_with_their_outputs() -> None:
    model, (x,), log = _log("lbl_direct_loop")
    assert [(m.address, m.num_passes) for m in log.modules][1:] == [
        ("layers.0", 1),
        ("layers.0.fc", 1),
        ("layers.1", 1),
        ("layers.1.fc", 1),
        ("layers.2", 1),
        ("layers.2.fc", 1),
    ]
    assert log["relu_2_5"].containing_modules == ["layers.1:1"]
    h = x
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            h = torch.relu(layer.fc(h))
            assert torch.equal(log[f"mul_{i + 1}_{3 * i + 3}"].activation, h)
    assert torch.equal(log["output_1"].activation, h)
    assert tl.validate_forward_pass(model, x)


def test_direct_and_normal_call_of_one_module_are_two_passes() -> None:
    model, (x,), log = _log("lbl_direct_keywords")
    assert log.modules["layer"].num_passes == 2
    assert log["mul_1_3"].containing_modules == ["layer:1"]
    assert log["mul_2_4"].containing_modules == ["layer:2"]
    with torch.no_grad():
        assert torch.equal(log["mul_1_3"].activation, torch.relu(model.layer.fc(x)) * 2.0)


def test_pre_hook_ops_sit_outside_the_hooked_module() -> None:
    _, _, log = _log("lbl_prehook_calls_module")
    assert log["layernorm_1_1"].containing_modules == ["norm:1"]
    assert log["linear_1_2"].containing_modules == ["body:1", "body.fc:1"]


def test_nested_direct_call_keeps_the_module_stack() -> None:
    _, _, log = _log("lbl_nested_direct")
    assert log["linear_1_1:2"].containing_modules == ["outer:1", "outer.inner:2", "outer.inner.fc:2"]
    assert log["gelu_1_5"].containing_modules == ["outer:1", "outer.act:1"]


def test_forward_wrappers_are_removed_and_user_forwards_kept() -> None:
    model = zoo_labels3.DirectLoop()
    own = model.layers[1].forward  # a user's instance-level forward survives the session
    model.layers[1].forward = lambda x, scale=1.0: own(x, scale) + 1
    user_forward = model.layers[1].__dict__["forward"]
    tl.log_forward_pass(model, torch.randn(2, 4))
    assert "forward" not in model.__dict__ and "forward" not in model.layers[0].__dict__
    assert model.layers[1].__dict__["forward"] is user_forward


def test_forward_wrappers_removed_after_an_exception() -> None:
    class Boom(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = zoo_labels3.Layer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.inner.forward(x)
            raise RuntimeError("boom")

    model = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        tl.log_forward_pass(model, torch.randn(2, 4))
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_signature_of_a_wrapped_forward_is_the_models() -> None:
    seen: list[list[str]] = []

    class Inspecting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = zoo_labels3.Layer()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # transformers reads `inspect.signature(self.forward)` inside forward
            seen.append(list(inspect.signature(self.layer.forward).parameters))
            return self.layer(x)

    tl.log_forward_pass(Inspecting(), torch.randn(2, 4))
    assert seen == [["x", "scale"]]
