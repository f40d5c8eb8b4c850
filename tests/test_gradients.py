"""Tensor-hook gradients (spec §14-15, mechanism 1): after the user's `.backward()`, every kept
layer holds the gradient autograd sent to its tensor. References never go through torchlens:
tensor hooks registered by hand in forward hooks of a plain run, and `torch.autograd.grad`."""

from __future__ import annotations

import gc
import pickle
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import torchlens as tl

from models import registry
from models.training import Blocks, InplaceChain, LstmCellLoop, LstmTagger


def _tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, tuple | list):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return [t for o in vars(out).values() for t in _tensors(o)] if hasattr(out, "__dataclass_fields__") else []


def _first(out: Any) -> torch.Tensor:
    return _tensors(out)[0]


def hand_hooked_grads(
    model: nn.Module, args: tuple, kwargs: dict, loss_fn: Any
) -> tuple[dict[tuple[str, int], torch.Tensor], dict[str, torch.Tensor]]:
    """A plain run with a tensor hook on each module call's single output, registered by a forward
    hook; returns {(address, call number): gradient} and the parameters' gradients."""
    grads: dict[tuple[str, int], torch.Tensor] = {}
    calls: dict[str, int] = {}

    def on_output(name: str) -> Any:
        def hook(_m: nn.Module, _i: Any, out: Any) -> None:
            k = calls[name] = calls.get(name, 0) + 1
            ts = _tensors(out)
            if len(ts) == 1 and ts[0].requires_grad:
                ts[0].register_hook(lambda g, key=(name, k): grads.__setitem__(key, g.clone()))

        return hook

    handles = [m.register_forward_hook(on_output(n)) for n, m in model.named_modules() if n]
    model.zero_grad()
    try:
        loss_fn(model(*args, **kwargs)).backward()
    finally:
        for h in handles:
            h.remove()
    params = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads, params


def _logged_backward(model: nn.Module, args: tuple, kwargs: dict, loss_fn: Any, **kw: Any) -> tl.ModelLog:
    log = tl.log_forward_pass(model, args, kwargs, save_gradients=True, **kw)
    model.zero_grad()
    out = log[log.output_layers[0]].activation
    loss_fn(out).backward()
    return log


def _compare_module_outputs(log: tl.ModelLog, ref: dict[tuple[str, int], torch.Tensor]) -> int:
    """Every module pass with one output: the logged layer leaving it has the hand-hooked gradient."""
    compared = 0
    for (addr, k), g in ref.items():
        labels = log.modules[addr].passes[k].output_layers
        if len(labels) != 1 or log[labels[0]].layer_type == "identity":
            continue  # a module handing back its input: 2.15's identity node is a dead-end side branch
        assert log[labels[0]].has_gradient, (addr, k, labels)
        assert torch.equal(log[labels[0]].gradient, g), (addr, k, labels)
        compared += 1
    return compared


def _compare_with_autograd(log: tl.ModelLog, loss: torch.Tensor) -> int:
    """Each kept activation that is the graph tensor itself: its gradient is `autograd.grad`'s."""
    labels = [lab for lab in log.layer_labels if log[lab].has_gradient and log[lab].activation is not None]
    acts = [log[lab].activation for lab in labels]
    kept = {lab: log[lab].gradient.clone() for lab in labels}
    refs = torch.autograd.grad(loss, acts, allow_unused=True, retain_graph=True)
    compared = 0
    for lab, r in zip(labels, refs, strict=True):
        if r is not None and not log[lab].is_output_layer:
            assert torch.equal(kept[lab], r), lab
            compared += 1
    return compared


def _square_mean(out: Any) -> torch.Tensor:
    return _first(out).float().square().mean()


@pytest.mark.parametrize("name", ["resnet18", "gpt2", "lstm", "lstm_cell"])
def test_gradients_equal_hand_hooks_and_autograd(name: str) -> None:
    torch.manual_seed(0)
    if name == "resnet18":
        model = torchvision.models.resnet18(weights=None).eval()
        args, kwargs = (torch.randn(1, 3, 64, 64),), {}
    elif name == "gpt2":
        model, args, kwargs = registry.build("hf_gpt2_lm")
    elif name == "lstm":
        model, args, kwargs = LstmTagger(), (torch.randn(2, 4, 5),), {}
    else:
        model, args, kwargs = LstmCellLoop(), (torch.randn(2, 4, 5),), {}
    ref, ref_params = hand_hooked_grads(model, args, kwargs, _square_mean)
    log = tl.log_forward_pass(model, args, kwargs, save_gradients=True)
    model.zero_grad()
    loss = _square_mean(log[log.output_layers[0]].activation)
    loss.backward(retain_graph=True)
    assert log.has_gradients
    assert _compare_module_outputs(log, ref) >= {"resnet18": 40, "gpt2": 15, "lstm": 2, "lstm_cell": 4}[name]
    assert _compare_with_autograd(log, loss) >= {"resnet18": 40, "gpt2": 40, "lstm": 4, "lstm_cell": 12}[name]
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, ref_params[n]), n


def test_arrival_order_and_output_nodes() -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    log = _logged_backward(m, (torch.randn(3, 4),), {}, lambda o: o.square().mean())
    # reverse topological, an output node right after its producer (TorchLens 2.15.0 gives this list)
    assert log.layers_with_saved_gradients == ["linear_2_3", "output_1", "relu_1_2", "linear_1_1"]
    assert torch.equal(log["output_1"].gradient, log["linear_2_3"].gradient)
    assert not log["input_1"].has_gradient  # the input does not require grad
    assert log["linear_1_1"].grad_shape == (3, 8) and log["linear_1_1"].grad_dtype == torch.float32
    assert log["linear_1_1"].grad_memory == 3 * 8 * 4 and log["linear_1_1"].save_gradients


def test_in_place_versions_get_their_own_gradients() -> None:
    torch.manual_seed(0)
    model = InplaceChain()
    x = torch.randn(2, 4)
    log = _logged_backward(model, (x,), {}, lambda o: (o * torch.arange(2.0)).sum())
    assert log.layer_labels == ["input_1", "linear_1_1", "mul_1_2", "detach_1_3", "mul_2_4", "sum_1_5", "output_1"]
    h = model.fc(x)
    m = h * 3.0
    g_lin, g_mul = torch.autograd.grad(((m * m.detach()).sum(-1) * torch.arange(2.0)).sum(), [h, m])
    assert torch.equal(log["linear_1_1"].gradient, g_lin)
    assert torch.equal(log["mul_1_2"].gradient, g_mul)
    assert not torch.equal(g_lin, g_mul)


def test_gradients_to_save_selects_and_implies_train_mode() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x = torch.randn(5, 6)
    log = tl.log_forward_pass(model, x, gradients_to_save=["gelu", "linear_3"])
    assert log.train_mode and log.save_gradients
    log["output_1"].activation.sum().backward()
    assert log.layers_with_saved_gradients == ["linear_3_5", "gelu_1_2"]
    assert log["gelu_1_2"].save_gradients and not log["linear_1_1"].save_gradients
    assert not log["linear_1_1"].has_gradient and log["linear_1_1"].gradient is None
    with pytest.raises(ValueError, match="Omit train_mode or set train_mode=True"):
        tl.log_forward_pass(model, x, gradients_to_save="all", train_mode=False)


def test_gradient_postfunc_and_raw_gradient() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x = torch.randn(5, 6)
    ref, _ = hand_hooked_grads(model, (x,), {}, lambda o: o.sum())
    log = tl.log_forward_pass(
        model, x, save_gradients=True, gradient_postfunc=lambda g: g.abs().amax(0), save_raw_gradient=False
    )
    log["output_1"].activation.sum().backward()
    assert log["linear_1_1"].gradient is None and log["linear_1_1"].has_gradient
    assert torch.equal(log["linear_1_1"].transformed_gradient, ref[("block1.0", 1)].abs().amax(0))
    assert log["linear_1_1"].transformed_gradient_shape == (12,)
    assert log.gradient_postfunc_repr is not None and log.save_raw_gradient is False

    def bad(g: torch.Tensor) -> torch.Tensor:
        raise KeyError("no")

    log = tl.log_forward_pass(model, x, save_gradients=True, gradient_postfunc=bad)
    with pytest.raises(tl.TorchLensPostfuncError, match="gradient_postfunc raised for layer"):
        log["output_1"].activation.sum().backward()


def test_a_log_is_not_kept_alive_by_its_hooks() -> None:
    torch.manual_seed(0)
    model = Blocks()
    log = tl.log_forward_pass(model, torch.randn(2, 6), save_gradients=True)
    out = log["output_1"].activation
    ref = weakref.ref(log)
    del log
    gc.collect()
    assert ref() is None
    out.sum().backward()  # the hooks find no store and do nothing
    assert model.head.weight.grad is not None


def test_save_new_activations_replaces_gradients() -> None:
    torch.manual_seed(0)
    model = Blocks()
    x1, x2 = torch.randn(4, 6), torch.randn(4, 6)
    log = tl.log_forward_pass(model, x1, save_gradients=True)
    log["output_1"].activation.sum().backward()
    old = log["gelu_1_2"].gradient.clone()
    log.save_new_activations(model, x2)
    assert not log.has_gradients and log.layers_with_saved_gradients == []
    log["output_1"].activation.square().sum().backward()
    fresh = tl.log_forward_pass(model, x2, save_gradients=True)
    fresh["output_1"].activation.square().sum().backward()
    assert log.layers_with_saved_gradients == fresh.layers_with_saved_gradients
    for lab in fresh.layer_labels:
        assert torch.equal(log[lab].activation, fresh[lab].activation), lab
        if fresh[lab].has_gradient:
            assert torch.equal(log[lab].gradient, fresh[lab].gradient), lab
    assert not torch.equal(log["gelu_1_2"].gradient, old)


def _edges(dot: str, color: str) -> set[tuple[str, str]]:
    out = set()
    for line in dot.splitlines():
        if "->" in line and f'color="{color}"' in line:
            a, b = line.split("[")[0].split("->")
            out.add((a.strip().strip('"'), b.strip().strip('"')))
    return out


def test_unrolled_graph_draws_gradient_edges_child_to_parent() -> None:
    torch.manual_seed(0)
    model = Blocks()
    log = tl.log_forward_pass(model, torch.randn(2, 6), gradients_to_save=["linear", "output"])
    assert _edges(log.to_dot(), "#9197F6") == set()  # no backward yet
    log["output_1"].activation.sum().backward()
    dot = log.to_dot(vis_gradient_edge_overrides={"penwidth": lambda lg, par, ch: str(len(par.layer_label))})
    forward = _edges(dot, "black")
    want = {(c, p) for p, c in forward if log[p].has_gradient and log[c].has_gradient}
    assert want == {("output_1", "linear_3_5")}  # the only drawn edge between two layers with gradients
    assert _edges(dot, "#9197F6") == want
    assert 'penwidth="10"' in dot  # the override's callable saw the parent entry (linear_3_5)
    assert _edges(log.to_dot(vis_mode="rolled"), "#9197F6") == set()  # unrolled graphs only
    full = tl.log_forward_pass(model, torch.randn(2, 6), save_gradients=True)
    full["output_1"].activation.sum().backward()
    dot = full.to_dot()
    assert _edges(dot, "#9197F6") == {(c, p) for p, c in _edges(dot, "black") if p != "input_1"}


def test_log_backward_streams_the_gradients_it_brings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Blocks()
    log = tl.log_forward_pass(model, torch.randn(3, 6))  # no save_gradients: hooked by log_backward
    loss = log["output_1"].activation.square().sum()
    want = torch.autograd.grad(loss, [log["gelu_1_2"].activation], retain_graph=True)[0]
    log.log_backward(loss, save_gradients_to=tmp_path / "grads")
    assert torch.equal(log["gelu_1_2"].gradient, want)
    loaded = tl.load(tmp_path / "grads")
    assert loaded.layers_with_saved_gradients == log.layers_with_saved_gradients
    assert torch.equal(loaded["gelu_1_2"].gradient, want)


def test_pickle_and_cleanup_with_gradients() -> None:
    torch.manual_seed(0)
    model = Blocks()
    log = tl.log_forward_pass(model, torch.randn(3, 6), save_gradients=True, gradient_postfunc=lambda g: g.sum())
    log.log_backward(log["output_1"].activation.sum())
    copy = pickle.loads(pickle.dumps(log))
    assert copy.layers_with_saved_gradients == log.layers_with_saved_gradients
    assert torch.equal(copy["linear_1_1"].gradient, log["linear_1_1"].gradient)
    assert copy["linear_1_1"].gradient.grad_fn is None
    assert copy.gradient_postfunc is None  # a lambda does not pickle; its repr stays
    assert copy.gradient_postfunc_repr == log.gradient_postfunc_repr
    assert torch.equal(copy["linear_1_1"].transformed_gradient, log["linear_1_1"].transformed_gradient)
    assert copy.num_grad_fns == log.num_grad_fns
    log.cleanup()
    assert not log.has_gradients and log.layers_with_saved_gradients == []
    assert log["linear_1_1"].gradient is None and log.num_grad_fns == 0
