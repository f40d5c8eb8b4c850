"""Logging every model of `models.zoo`: structure, outputs and leftover state, and failures inside
forward (exact labels per model are in test_small_models_labels.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from torch import nn

import torchlens as tl

from models import zoo
from zoo_logging import clone_args, labels_of, log_case, log_model

TAG = "_tl_id"
LABEL_RE = re.compile(r"^[a-z0-9]+_\d+(_\d+)?(:\d+)?$")
NAMES = sorted(zoo.ZOO)


# --------------------------------------------------------------------------- helpers


def flat_tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """Tensors of a (nested) forward argument or return value, in traversal order."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if depth >= 5:
        return []
    if isinstance(obj, tuple | list):
        return [t for o in obj for t in flat_tensors(o, depth + 1)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in flat_tensors(o, depth + 1)]
    return []


def module_state(model: nn.Module) -> dict[str, tuple]:
    state = {}
    for name, m in model.named_modules(remove_duplicate=False):
        fwd = m.forward
        state[name] = ("forward" in m.__dict__, type(m).forward, getattr(fwd, "__func__", fwd))
    return state


def param_state(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters()}


def assert_untagged(tensors: list[torch.Tensor], what: str) -> None:
    for i, t in enumerate(tensors):
        assert not hasattr(t, TAG), f"{what}[{i}] still carries {TAG}"


def add_capture_hooks(model: nn.Module, sink: list[torch.Tensor]) -> list[Any]:
    """Record every tensor going in and out of every module (root included)."""

    def pre(_m: nn.Module, args: tuple, kwargs: dict) -> None:
        sink.extend(flat_tensors(args) + flat_tensors(kwargs))

    def post(_m: nn.Module, _args: tuple, _kwargs: dict, out: Any) -> None:
        sink.extend(flat_tensors(out))

    handles = []
    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True))
    return handles


# --------------------------------------------------------------------------- generic, over the zoo


def test_zoo_is_big_enough() -> None:
    assert len(zoo.ZOO) >= 32


@pytest.mark.parametrize("name", NAMES)
def test_log_structure(name: str) -> None:
    _, _, _, log = log_case(name)
    labels = log.layer_labels
    assert log.output_layers, f"no output node: {labels}"
    assert len(log) > len(log.input_layers) + len(log.output_layers), f"no operation logged: {labels}"
    assert len(log) == len(labels)
    assert len(set(labels)) == len(labels), f"duplicate labels: {labels}"
    for lab in labels:
        assert LABEL_RE.match(lab), lab
    n = len(log)
    for i, entry in enumerate(log):
        assert entry.layer_label == labels[i]
        assert log[i] is entry
        assert log[i - n] is entry
        found = log[entry.layer_label]
        assert found is entry or found == entry
        assert found.layer_label == entry.layer_label
        assert 1 <= entry.pass_num <= entry.num_passes
        assert labels[i].endswith(f":{entry.pass_num}") == (entry.num_passes > 1), labels[i]
        assert labels[i].startswith(entry.layer_type + "_")
        if not (entry.is_input_layer or entry.is_output_layer or entry.is_buffer_layer):
            # spec §5.1: layer type = raw function name, lower-cased, underscores removed
            assert entry.layer_type == entry.func_name.lower().replace("_", ""), (entry.func_name, entry.layer_type)
        cm = entry.containing_module
        assert cm is None or re.match(r"^[\w.]+:\d+$", cm), cm
        for p in entry.parent_layers:
            assert p in labels
            assert entry.layer_label in log[p].child_layers
        for c in entry.child_layers:
            assert c in labels
            assert entry.layer_label in log[c].parent_layers
        assert isinstance(entry.activation, torch.Tensor), entry.activation
        assert tuple(entry.activation.shape) == tuple(entry.tensor_shape)
        assert entry.activation.dtype == entry.tensor_dtype


@pytest.mark.parametrize("name", NAMES)
def test_inputs_and_outputs(name: str) -> None:
    model, args, kwargs, log = log_case(name)
    ref = model(*clone_args(args, kwargs)[0], **clone_args(args, kwargs)[1])
    n_in = len(flat_tensors(args)) + len(flat_tensors(kwargs))
    n_out = len(flat_tensors(ref))
    assert len(log.input_layers) == n_in
    assert len(log.output_layers) == n_out
    for lab in log.input_layers:
        e = log[lab]
        assert e.is_input_layer and not e.is_output_layer
        assert e.layer_type == "input"
        assert e.parent_layers == []
    for lab in log.output_layers:
        e = log[lab]
        assert e.is_output_layer and not e.is_input_layer
        assert e.layer_type == "output"
        assert len(e.parent_layers) == 1
        assert e.child_layers == []
    for lab in log.buffer_layers:
        assert log[lab].is_buffer_layer
        assert log[lab].parent_layers == []
    # inputs first, outputs last
    labels = log.layer_labels
    assert labels[:n_in] == log.input_layers
    assert labels[len(labels) - n_out :] == log.output_layers


@pytest.mark.parametrize("name", NAMES)
def test_output_activations_match_plain_forward(name: str) -> None:
    model, args, kwargs, log = log_case(name)
    a, k = clone_args(args, kwargs)
    torch.manual_seed(0)
    ref = flat_tensors(model(*a, **k))
    outs = [log[lab].activation for lab in log.output_layers]
    assert len(outs) == len(ref)
    for got, want in zip(outs, ref, strict=True):
        assert got.dtype == want.dtype
        assert torch.equal(got, want)
    ins = [log[lab].activation for lab in log.input_layers]
    for got, want in zip(ins, flat_tensors(args) + flat_tensors(kwargs), strict=True):
        assert torch.equal(got, want)


@pytest.mark.parametrize("name", NAMES)
def test_nothing_left_modified(name: str) -> None:
    tl.wrap_torch()  # the torch wrappers are persistent by design (spec §7.1); compare from a wrapped state
    module_call = nn.Module.__call__
    model, args, kwargs = zoo.build(name)
    before_modules = module_state(model)
    before_params = param_state(model)
    buffers_before = {n: b for n, b in model.named_buffers()}
    a, k = clone_args(args, kwargs)
    seen: list[torch.Tensor] = []
    handles = add_capture_hooks(model, seen)
    try:
        log = log_model(model, a, k)
    finally:
        for h in handles:
            h.remove()
    assert seen, "hooks saw nothing"
    assert nn.Module.__call__ is module_call
    assert module_state(model) == before_modules
    for _, m in model.named_modules():
        assert "forward" not in m.__dict__
        assert not any(isinstance(v, torch.Tensor) and hasattr(v, TAG) for v in vars(m).values())
    assert param_state(model) == before_params
    assert_untagged(seen, "module inputs/outputs seen during logging")
    assert_untagged(flat_tensors(a) + flat_tensors(k), "user inputs")
    assert_untagged(list(model.buffers()), "buffers")
    assert_untagged(list(model.parameters()), "parameters")
    assert_untagged([e.activation for e in log], "saved activations")
    # the buffers are the same objects (a plain attribute is not replaced)
    assert {n: b for n, b in model.named_buffers()}.keys() == buffers_before.keys()
    for n, b in model.named_buffers():
        assert b is buffers_before[n]
    # torch is back to normal outside the session
    t = torch.ones(2) + 1
    assert not hasattr(t, TAG)
    # and the model still runs normally
    a2, k2 = clone_args(args, kwargs)
    assert_untagged(flat_tensors(model(*a2, **k2)), "plain forward outputs")


@pytest.mark.parametrize("name", NAMES)
def test_repeatable(name: str) -> None:
    assert labels_of(name) == labels_of(name)


@pytest.mark.parametrize("name", NAMES)
def test_model_built_before_wrapping(name: str) -> None:
    """Wrapping is lazy (spec §7.1): a model built while torch is unwrapped must log identically."""
    expected = labels_of(name)
    tl.unwrap_torch()
    model, args, kwargs = zoo.build(name)
    log = log_model(model, *clone_args(args, kwargs))
    assert log.layer_labels == expected


# --------------------------------------------------------------------------- failures and re-entrancy


class Boom(nn.Module):
    def __init__(self, exc_type: type[BaseException]) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.exc_type = exc_type
        self.fail = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x) + 1
        if self.fail:
            raise self.exc_type("boom inside forward")
        return h


class BoomModel(nn.Module):
    def __init__(self, exc_type: type[BaseException]) -> None:
        super().__init__()
        self.pre = nn.Linear(3, 3)
        self.boom = Boom(exc_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.boom(torch.relu(self.pre(x)))


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_exception_in_forward_leaves_no_trace(exc_type: type[BaseException]) -> None:
    torch.manual_seed(0)
    tl.wrap_torch()
    module_call = nn.Module.__call__
    model = BoomModel(exc_type)
    before_modules = module_state(model)
    before_params = param_state(model)
    x = zoo.randn(2, 3)
    seen: list[torch.Tensor] = []
    handles = add_capture_hooks(model, seen)
    try:
        with pytest.raises(exc_type, match="boom inside forward"):
            tl.log_forward_pass(model, x)
    finally:
        for h in handles:
            h.remove()
    assert seen
    assert nn.Module.__call__ is module_call
    assert module_state(model) == before_modules
    for _, m in model.named_modules():
        assert "forward" not in m.__dict__
    assert param_state(model) == before_params
    assert_untagged([x], "user input")
    assert_untagged(seen, "tensors seen during the failed pass")
    # Module.__call__ works normally and nothing is being logged any more
    y = model.pre(x)
    assert not hasattr(y, TAG)
    assert not hasattr(torch.relu(y) + 1, TAG)
    # a second logging call works, on another model and on the same one
    log = tl.log_forward_pass(zoo.AddMul(), x)
    assert log.layer_labels == ["input_1", "add_1_1", "mul_1_2", "output_1"]
    model.boom.fail = False
    log = tl.log_forward_pass(model, x)
    assert log.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "add_1_4", "output_1"]
    assert torch.equal(log["output_1"].activation, model(x))


def test_unwrap_restores_module_call() -> None:
    tl.unwrap_torch()
    orig_call = nn.Module.__call__
    orig_tanh = torch.tanh
    assert orig_call.__module__ == "torch.nn.modules.module"
    log = tl.log_forward_pass(zoo.IdentityModel(), zoo.randn(2, 3))
    assert log.layer_labels == ["input_1", "identity_1_1", "add_1_2", "output_1"]
    tl.unwrap_torch()
    assert nn.Module.__call__ is orig_call
    assert torch.tanh is orig_tanh
    for m in zoo.IdentityModel().modules():
        assert "forward" not in m.__dict__


class Reentrant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tl.log_forward_pass(self.fc, x)
        return self.fc(x)


def test_reentrant_logging_raises() -> None:
    torch.manual_seed(0)
    model = Reentrant()
    x = zoo.randn(2, 3)
    with pytest.raises(RuntimeError, match="re-entrant"):
        tl.log_forward_pass(model, x)
    for _, m in model.named_modules():
        assert "forward" not in m.__dict__
    assert_untagged([x], "user input")
    log = tl.log_forward_pass(model.fc, x)
    assert log.layer_labels == ["input_1", "linear_1_1", "output_1"]
    log = tl.log_forward_pass(zoo.AddMul(), x)
    assert log.layer_labels == ["input_1", "add_1_1", "mul_1_2", "output_1"]
