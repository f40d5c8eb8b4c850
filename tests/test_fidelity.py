"""Logs that are right where they used to be wrong (issue 11): writes through aliases, several results
of one call consumed apart, autocast entered mid-forward, one module class nested at several depths.

Every model of `models.zoo_fidelity` is checked three ways: `validate_forward_pass` replays it, the
output layer equals what the model returned, and every module's output layer equals what a forward
hook (cloning inside the hook) saw in a plain run.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens._capture import run

from models.zoo_fidelity import ALL, AtLeast2d, BroadcastApart, ChunkOtherHalf, UnsqueezeFill, WriteInside, unet


def _args(inputs: Any) -> list[torch.Tensor]:
    return [t.clone() for t in inputs] if isinstance(inputs, list) else [inputs.clone()]


def _plain_run(model: nn.Module, args: list[torch.Tensor]) -> tuple[Any, dict[str, torch.Tensor]]:
    """The model's own result and each module call's output (`name:pass`), model state restored after."""
    calls: Counter[str] = Counter()
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str, out: Any) -> None:
        calls[name] += 1
        if type(out) is torch.Tensor:
            seen[f"{name}:{calls[name]}"] = out.detach().clone()

    handles = [
        m.register_forward_hook(lambda _m, _a, out, name=name: hook(name, out))
        for name, m in model.named_modules()
        if name
    ]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        torch.manual_seed(0)
        with torch.no_grad():
            out = model(*_args(args))
    finally:
        for h in handles:
            h.remove()
        model.load_state_dict(state)
    return out, seen


def _returned(out: Any) -> list[torch.Tensor]:
    return [out] if isinstance(out, torch.Tensor) else [o for o in out if isinstance(o, torch.Tensor)]


@pytest.mark.parametrize("name", list(ALL))
def test_validates_and_matches_plain_run(name: str) -> None:
    make, inputs = ALL[name]
    model = make()
    args = inputs()
    assert tl.validate_forward_pass(model, _args(args)) is True
    out, seen = _plain_run(model, _args(args))
    log = tl.log_forward_pass(model, _args(args), random_seed=0, detach_saved_tensors=True)
    returned = _returned(out)
    assert len(log.output_layers) == len(returned)
    for label, value in zip(log.output_layers, returned, strict=True):
        assert torch.equal(log[label].activation, value), label
    # Every submodule returning a lone tensor was compared (an LSTM returns a tuple).
    assert seen or all(isinstance(m, nn.LSTM) for n, m in model.named_modules() if n)
    for key, value in seen.items():
        address, k = key.rsplit(":", 1)
        entry = log[f"{log.modules[address].address}:{k}"]
        assert torch.equal(entry.activation, value), f"{key} -> {entry.layer_label}"


# ------------------------------------------------------------------ writes through aliases


def test_output_is_the_returned_tensor_and_the_parent_keeps_its_own_value() -> None:
    x = torch.randn(4, 5)
    log = tl.log_forward_pass(UnsqueezeFill(), x)
    assert log.layer_labels == ["input_1", "unsqueeze_1_1", "fill_1_2", "output_1"]
    assert log["output_1"].parent_layers == ["input_1"]
    assert torch.equal(log["output_1"].activation, torch.zeros(4, 5))
    # input_1 keeps the value unsqueeze_1_1 consumed; the output's different value is its version.
    assert torch.equal(log["input_1"].activation, x)
    assert torch.equal(log["unsqueeze_1_1"].activation, x.unsqueeze(0))
    versions = log["input_1"].children_tensor_versions
    assert list(versions) == ["output_1"] and torch.equal(versions["output_1"], torch.zeros(4, 5))


def test_output_value_in_every_save_mode() -> None:
    x = torch.randn(4, 5)
    zeros = torch.zeros(4, 5)
    selected = tl.log_forward_pass(UnsqueezeFill(), x, layers_to_save=["output_1"])
    assert torch.equal(selected["output_1"].activation, zeros)
    post = tl.log_forward_pass(UnsqueezeFill(), x, activation_postfunc=lambda t: t + 1)
    assert torch.equal(post["output_1"].transformed_activation, zeros + 1)
    assert torch.equal(post["input_1"].transformed_activation, x + 1)
    meta = tl.log_forward_pass(UnsqueezeFill(), x, layers_to_save=None)
    assert meta.layer_labels == selected.layer_labels


def test_stale_module_output_gets_its_own_node_in_every_save_mode() -> None:
    x = torch.randn(2, 6)
    labels = ["input_1", "relu_1_1", "add_1_2", "getitem_1_3", "mul_1_4", "identity_1_5", "linear_1_6", "output_1"]
    log = tl.log_forward_pass(WriteInside(), x)
    assert log.layer_labels == labels
    assert log["inner"].layer_label == "identity_1_5"
    assert log["linear_1_6"].parent_layers == ["identity_1_5"]
    expected = torch.relu(x) + 1
    assert torch.equal(log["add_1_2"].activation, expected)
    expected[:, :2] *= 0.5
    assert torch.equal(log["identity_1_5"].activation, expected)
    # add_1_2's saved value is what getitem_1_3 consumed; the identity node's different value is its version.
    versioned = tl.log_forward_pass(WriteInside(), x, save_function_args=True)
    versions = versioned["add_1_2"].children_tensor_versions
    assert list(versions) == ["identity_1_5"] and torch.equal(versions["identity_1_5"], expected)
    assert versioned["identity_1_5"].func_applied(expected) is expected
    assert tl.log_forward_pass(WriteInside(), x, layers_to_save=None).layer_labels == labels
    assert tl.log_forward_pass(WriteInside(), x, layers_to_save=["linear_1_6"]).layer_labels == labels


def test_write_to_another_chunk_adds_no_node() -> None:
    log = tl.log_forward_pass(ChunkOtherHalf(), torch.randn(4, 3))
    assert log.layer_labels == ["input_1", "tanh_1_1", "chunk_1_2", "chunk_2_3", "mul_1_4", "add_1_5", "output_1"]
    assert log["halves"].layer_label == "chunk_2_3"


def test_inplace_keyword_makes_a_call_in_place() -> None:
    # LeakyReLU(inplace=True) calls F.leaky_relu(x, 0.2, True): x itself changes, so the later
    # torch.cat([x, ...]) consumes the leaky_relu node; no capture re-run with copies is needed.
    model = unet().eval()
    runs: list[bool] = []
    once = run._run_capture_once

    def spy(*a: Any, **k: Any) -> Any:
        runs.append(bool(k.get("copy_all")))
        return once(*a, **k)

    run._run_capture_once = spy
    try:
        log = tl.log_forward_pass(model, torch.randn(1, 3, 16, 16))
    finally:
        run._run_capture_once = once
    assert runs == [False]
    assert log["cat_1_13"].parent_layers == ["leakyrelu_3_8", "batchnorm_3_12"]
    assert log["cat_3_21"].parent_layers == ["leakyrelu_1_2", "batchnorm_5_20"]
    assert log["leakyrelu_1_2"].parent_layers == ["conv2d_1_1"]


# ------------------------------------------------------------------ several results consumed apart


def test_broadcast_results_share_the_call_parents() -> None:
    x, t = torch.randn(4, 5), torch.randn(1, 5)
    log = tl.log_forward_pass(BroadcastApart(), [x, t], save_function_args=True)
    assert log.layer_labels == [
        "input_1",
        "input_2",
        "detach_1_1",
        "broadcasttensors_1_2",
        "broadcasttensors_2_3",
        "mul_1_4",
        "exp_1_5",
        "add_1_6",
        "output_1",
    ]
    for label in ("broadcasttensors_1_2", "broadcasttensors_2_3"):
        assert log[label].parent_layers == ["input_1", "detach_1_1"]
    # x needed no expansion and came back as itself: later uses of x are the first result (as in 2.15).
    assert log["mul_1_4"].parent_layers == ["broadcasttensors_1_2"]
    assert log["exp_1_5"].parent_layers == ["broadcasttensors_2_3"]


def test_mse_loss_parents_name_the_nodes_their_arguments_carried() -> None:
    make, inputs = ALL["mse_detached_broadcast"]
    log = tl.log_forward_pass(make(), inputs(), save_function_args=True)
    assert log["mseloss_1_5"].parent_layers == ["broadcasttensors_1_3", "detach_1_2"]
    assert log["mseloss_1_5"].parent_layer_arg_locs["args"] == {0: "broadcasttensors_1_3", 1: "detach_1_2"}


def test_fastlog_reads_parents_before_tagging_results() -> None:
    rec = tl.fastlog.record(BroadcastApart(), [torch.randn(4, 5), torch.randn(1, 5)], keep_op=lambda ctx: True)
    parents = {r.ctx.label: r.ctx.parent_labels for r in rec}
    assert parents["broadcasttensors_1_4_raw"] == ("input_1_1_raw", "detach_1_3_raw")
    assert parents["broadcasttensors_2_5_raw"] == ("input_1_1_raw", "detach_1_3_raw")


def test_atleast_2d_hands_back_its_argument() -> None:
    log = tl.log_forward_pass(AtLeast2d(), [torch.randn(3, 4), torch.randn(4)])
    assert log["relu_1_4"].parent_layers == ["atleast2d_1_2"]
    assert log["t_1_5"].parent_layers == ["atleast2d_2_3"]


# ------------------------------------------------------------------ autocast


def test_autocast_ops_keep_their_dtype_and_replay_under_autocast() -> None:
    make, inputs = ALL["autocast_linear"]
    log = tl.log_forward_pass(make(), inputs(), save_function_args=True)
    assert log.layer_labels == ["input_1", "linear_1_1:1", "linear_1_1:2", "float_1_2", "add_1_3", "output_1"]
    assert log["linear_1_1:1"].tensor_dtype == torch.float32
    assert log["linear_1_1:2"].tensor_dtype == torch.bfloat16
