"""`train_mode=True` (spec §8.6, the seed README's "Training from saved activations"): saved
activations feed real training steps, checked against the same step written with forward hooks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import torchlens as tl
from torchlens import fastlog

from models.training import Backbone, Blocks


def _hooked_output(model: nn.Module, address: str, x: torch.Tensor) -> torch.Tensor:
    """The (graph-connected) output of one module in a plain run, taken by a forward hook."""
    got: list[torch.Tensor] = []
    h = model.get_submodule(address).register_forward_hook(lambda _m, _i, o: got.append(o))
    try:
        model(x)
    finally:
        h.remove()
    return got[0]


def _grads(model: nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()}


def test_aux_loss_step_equals_hooked_step() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x = torch.randn(8, 6)
    _hooked_output(model, "block1", x).square().mean().backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    log = tl.log_forward_pass(model, x, layers_to_save=["block1"], train_mode=True)
    assert log.train_mode and log["block1"].activation.grad_fn is not None
    log["block1"].activation.square().mean().backward()
    got = _grads(model)
    assert want.keys() == got.keys()
    for name, g in want.items():
        assert (g is None and got[name] is None) or torch.equal(g, got[name]), name
    assert got["block1.0.weight"] is not None and got["head.weight"] is None


def test_frozen_backbone_probe() -> None:
    torch.manual_seed(0)
    backbone = Backbone().eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    probe = nn.Linear(8, 3)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 2, 1, 0])
    F.cross_entropy(probe(_hooked_output(backbone, "pool", x).flatten(1)), y).backward()
    want = _grads(probe)
    probe.zero_grad(set_to_none=True)
    log = tl.log_forward_pass(backbone, x, layers_to_save=["pool"], train_mode=True)
    F.cross_entropy(probe(log["pool"].activation.flatten(1)), y).backward()
    for name, g in _grads(probe).items():
        assert torch.equal(g, want[name]), name
    assert all(not p.requires_grad and p.grad is None for p in backbone.parameters())  # frozen stays frozen


def test_teacher_student_distillation_step() -> None:
    torch.manual_seed(0)
    teacher, student = Backbone().eval(), Backbone().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    x = torch.randn(4, 3, 8, 8)
    F.mse_loss(_hooked_output(student, "conv2", x), _hooked_output(teacher, "conv2", x)).backward()
    want = _grads(student)
    student.zero_grad(set_to_none=True)
    t_log = tl.log_forward_pass(teacher, x, layers_to_save=["conv2"])
    s_log = tl.log_forward_pass(student, x, layers_to_save=["conv2"], train_mode=True)
    F.mse_loss(s_log["conv2"].activation, t_log["conv2"].activation).backward()
    for name, g in _grads(student).items():
        assert torch.equal(g, want[name]), name


def test_fastlog_keep_grad_step() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x = torch.randn(8, 6)
    _hooked_output(model, "block2.1", x).square().mean().backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    rec = tl.fastlog.record(model, x, keep_op=lambda c: c.layer_type == "relu", train_mode=True)
    assert len(rec) == 1 and rec[0].spec.keep_grad
    rec[0].ram_payload.square().mean().backward()
    for name, g in _grads(model).items():
        assert (g is None and want[name] is None) or torch.equal(g, want[name]), name


def test_save_new_activations_in_train_mode() -> None:
    torch.manual_seed(0)
    model = Blocks()
    log = tl.log_forward_pass(model, torch.randn(3, 6), detach_saved_tensors=True)
    assert log["gelu_1_2"].activation.grad_fn is None
    x2 = torch.randn(3, 6)
    log.save_new_activations(model, x2, train_mode=True)
    log["gelu_1_2"].activation.sum().backward()
    want = _hooked_output(model, "block1", x2)
    assert torch.equal(log["gelu_1_2"].activation, want)
    assert log.train_mode


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"detach_saved_tensors": True},
            "train_mode=True requires detach_saved_tensors=False so gradients can propagate",
        ),
        ({"streaming": "BUNDLE"}, "train_mode=True is not compatible with slow/replay activation disk saves"),
        ({"save_gradients_to": "BUNDLE"}, "train_mode=True is not compatible with slow/replay gradient disk saves"),
        (
            {"activation_postfunc": lambda t: tuple(t.shape)},
            "activation_postfunc must return a torch.Tensor while train_mode=True for layer linear_1_2_raw.",
        ),
        (
            {"activation_postfunc": lambda t: t.long()},
            "train_mode=True with non-grad dtype torch.int64 on layer linear_1_2_raw. Integer and bool dtypes cannot "
            "propagate gradients.",
        ),
        (
            {"activation_postfunc": lambda t: t.detach()},
            "activation_postfunc returned a tensor disconnected from the autograd graph (grad_fn is None) while "
            "train_mode=True. The transformed activation must remain differentiable.",
        ),
    ],
)
def test_misconfigurations_raise_their_message(kwargs: dict, message: str, tmp_path: Path) -> None:
    if kwargs.get("streaming") == "BUNDLE":
        kwargs = {"streaming": tl.StreamingOptions(bundle_path=tmp_path / "b")}
    elif kwargs.get("save_gradients_to") == "BUNDLE":
        kwargs = {"save_gradients_to": tmp_path / "b"}
    model = Blocks()
    with pytest.raises(tl.TrainingModeConfigError) as info:
        tl.log_forward_pass(model, torch.randn(2, 6), train_mode=True, **kwargs)
    assert message in str(info.value)
    assert not (tmp_path / "b").exists()
    assert "forward" not in model.__dict__  # torch and the model left as found


def test_inference_mode_and_compiled_models_are_refused() -> None:
    model = Blocks()
    with torch.inference_mode(), pytest.raises(tl.TrainingModeConfigError, match="inference mode is active"):
        tl.log_forward_pass(model, torch.randn(2, 6), train_mode=True)
    with pytest.raises(RuntimeError, match="torch.compile"):
        tl.log_forward_pass(torch.compile(model), torch.randn(2, 6), train_mode=True)
    with pytest.raises(RuntimeError, match="torch.compile"):
        tl.fastlog.record(torch.compile(model), torch.randn(2, 6), keep_op=lambda c: True, train_mode=True)


def test_fastlog_train_mode_conflicts() -> None:
    model = Blocks()
    x = torch.randn(2, 6)
    with pytest.raises(tl.TrainingModeConfigError):
        tl.fastlog.record(model, x, keep_op=lambda c: True, train_mode=True, default_op=fastlog.CaptureSpec())
    # an integer activation cannot keep a graph: recorded without it, the float ones keep theirs
    rec = tl.fastlog.record(model, x, keep_op=lambda c: c.layer_type in ("relu", "gelu"), train_mode=True)
    assert all(r.ram_payload.grad_fn is not None for r in rec)


def test_fastlog_train_mode_guard_rails() -> None:
    model = Blocks()
    x = torch.randn(2, 6)
    with torch.inference_mode(), pytest.raises(tl.TrainingModeConfigError, match="inference mode is active"):
        tl.fastlog.record(model, x, keep_op=lambda c: True, train_mode=True)
    with pytest.raises(tl.TrainingModeConfigError, match="disconnected from the autograd graph"):
        tl.fastlog.record(
            model,
            x,
            keep_op=lambda c: c.layer_type == "gelu",
            train_mode=True,
            activation_postfunc=lambda t: t.detach(),
        )
    with pytest.raises(tl.TrainingModeConfigError, match="non-grad dtype torch.int64"):
        tl.fastlog.record(
            model, x, keep_op=lambda c: c.layer_type == "gelu", train_mode=True, activation_postfunc=lambda t: t.long()
        )
    rec = tl.fastlog.record(
        model, x, keep_op=lambda c: c.layer_type == "gelu", train_mode=True, activation_postfunc=lambda t: t * 2
    )
    assert rec[0].transformed_ram_payload.grad_fn is not None
    assert "forward" not in model.__dict__
