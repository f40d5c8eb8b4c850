"""First-class backward capture (spec §14-15, §12.6): `log_backward`, `recording_backward`,
GradFnLog / GradFnPassLog / GradFnAccessor and `show_backward_graph`.

The grad_fns a loss reaches are checked against an independent breadth-first walk of
`loss.grad_fn`; gradients against `torch.autograd.grad` and plain autograd on the model; labels
against the lists TorchLens 2.15.0 prints for the same models (run as a black box from its own
venv). 2.15's saved activations are graph-attached clones, ours are the op outputs themselves, so
a 2.15 loss on a saved activation passes through one extra `CloneBackward0`: these tests add that
clone explicitly (`out.clone()`), which makes the two autograd graphs identical.
"""

from __future__ import annotations

import gc
import re
import weakref
from collections import deque
from typing import Any

import pytest
import torch
import torchvision

import torchlens as tl

from models.backward import CustomFn, Looped, mlp

# TorchLens 2.15.0, `log.log_backward(log["output_1"].activation.square().mean())` on `mlp()`.
MLP_LABELS_215 = """mean_back_1_1 pow_back_1_2 clone_back_1_3 addmm_back_1_4 accumulategrad_back_1_5 relu_back_1_2
t_back_1_7 addmm_back_1_1 accumulategrad_back_2_9 accumulategrad_back_3_10 t_back_2_11 accumulategrad_back_4_12""".split()
MLP_MATCHED_215 = {"addmm_back_1_4": "output_1", "relu_back_1_2": "relu_1_2", "addmm_back_1_1": "linear_1_1"}

# TorchLens 2.15.0, `mlp()`: `log_backward(c.sum(), retain_graph=True)`, then
# `log_backward(c.sum() + w.t().sum())` (`c` the saved output, `w` a leaf): labels and pass counts.
REPEAT_LABELS_215 = """sum_back_1_1 clone_back_1_2 addmm_back_1_4 accumulategrad_back_1_4 relu_back_1_2 t_back_1_6
addmm_back_1_1 accumulategrad_back_2_8 accumulategrad_back_3_9 t_back_2_10 accumulategrad_back_4_11 add_back_1_12
sum_back_1_13 sum_back_2_14 t_back_1_15 accumulategrad_back_1_16""".split()
REPEAT_PASSES_215 = [1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1]

# TorchLens 2.15.0, `Looped()`: `log_backward(((c * 2.0) * c.sum()).sum())`.
LOOPED_LABELS_215 = """sum_back_1_1 mul_back_1_2 mul_back_2_3 sum_back_2_4 clone_back_1_5 relu_back_1_3 addmm_back_1_1
accumulategrad_back_1_8 relu_back_1_2 t_back_1_10 addmm_back_1_1 accumulategrad_back_2_12 relu_back_1_2 t_back_2_14
addmm_back_1_1 t_back_3_16""".split()
LOOPED_MATCHED_215 = [
    ("relu_back_1_3", "output_1"),
    ("addmm_back_1_1", "linear_1_1:3"),
    ("relu_back_1_2", "relu_1_2:2"),
    ("addmm_back_1_1", "linear_1_1:2"),
    ("relu_back_1_2", "relu_1_2:1"),
    ("addmm_back_1_1", "linear_1_1:1"),
]

# TorchLens 2.15.0, `CustomFn()`: `log_backward(c.sum())`: (label, name, module_path, is_custom).
CUSTOM_215 = [
    ("sum_back_1_1", "SumBackward0", "builtins", False),
    ("clone_back_1_2", "CloneBackward0", "builtins", False),
    ("t_back_1_4", "TBackward0", "builtins", False),
    ("doubler_back_1_4", "DoublerBackward", "torch.autograd.function", True),
    ("addmm_back_1_1", "AddmmBackward0", "builtins", False),
    ("accumulategrad_back_1_6", "AccumulateGrad", "builtins", False),
    ("t_back_1_7", "TBackward0", "builtins", False),
    ("accumulategrad_back_2_8", "AccumulateGrad", "builtins", False),
]

# TorchLens 2.15.0, resnet18 (weights=None, 1x3x64x64): `log_backward(out.square().mean())`: 160 grad_fns,
# 91 intervening, and the forward layer -> label of the 69 matched ones. 2.15 runs in-place ops
# (`relu_`, `+=`) on a clone, so their layers' grad_fn is a `CloneBackward0` followed by an intervening
# ReluBackward0/AddBackward0; here it is the op's own grad_fn (docs/limitations.md).
RESNET_COUNTS_215 = (160, 91)
RESNET_MATCHED_215 = dict(
    pair.split("=")
    for pair in """output_1=addmm_back_1_70 flatten_1_68=view_back_1_68 adaptiveavgpool2d_1_67=mean_back_1_67
relu_17_66=clone_back_17_66 iadd_8_65=clone_back_8_65 batchnorm_20_64=nativebatchnorm_back_20_64
relu_15_59=clone_back_15_59 conv2d_20_63=convolution_back_20_63 relu_16_62=clone_back_16_62
iadd_7_58=clone_back_7_58 batchnorm_19_61=nativebatchnorm_back_19_61 batchnorm_17_55=nativebatchnorm_back_17_55
batchnorm_18_57=nativebatchnorm_back_18_57 conv2d_19_60=convolution_back_19_60 conv2d_17_54=convolution_back_17_54
conv2d_18_56=convolution_back_18_56 relu_14_53=clone_back_14_53 relu_13_50=clone_back_13_50
batchnorm_16_52=nativebatchnorm_back_16_52 iadd_6_49=clone_back_6_49 conv2d_16_51=convolution_back_16_51
batchnorm_15_48=nativebatchnorm_back_15_48 relu_11_43=clone_back_11_43 conv2d_15_47=convolution_back_15_47
relu_12_46=clone_back_12_46 iadd_5_42=clone_back_5_42 batchnorm_14_45=nativebatchnorm_back_14_45
batchnorm_12_39=nativebatchnorm_back_12_39 batchnorm_13_41=nativebatchnorm_back_13_41
conv2d_14_44=convolution_back_14_44 conv2d_12_38=convolution_back_12_38 conv2d_13_40=convolution_back_13_40
relu_10_37=clone_back_10_37 relu_9_34=clone_back_9_34 batchnorm_11_36=nativebatchnorm_back_11_36
iadd_4_33=clone_back_4_33 conv2d_11_35=convolution_back_11_35 batchnorm_10_32=nativebatchnorm_back_10_32
relu_7_27=clone_back_7_27 conv2d_10_31=convolution_back_10_31 relu_8_30=clone_back_8_30 iadd_3_26=clone_back_3_26
batchnorm_9_29=nativebatchnorm_back_9_29 batchnorm_7_23=nativebatchnorm_back_7_23
batchnorm_8_25=nativebatchnorm_back_8_25 conv2d_9_28=convolution_back_9_28 conv2d_7_22=convolution_back_7_22
conv2d_8_24=convolution_back_8_24 relu_6_21=clone_back_6_21 relu_5_18=clone_back_5_18
batchnorm_6_20=nativebatchnorm_back_6_20 iadd_2_17=clone_back_2_17 conv2d_6_19=convolution_back_6_19
batchnorm_5_16=nativebatchnorm_back_5_16 relu_3_11=clone_back_3_11 conv2d_5_15=convolution_back_5_15
relu_4_14=clone_back_4_14 iadd_1_10=clone_back_1_10 batchnorm_4_13=nativebatchnorm_back_4_13
batchnorm_3_9=nativebatchnorm_back_3_9 maxpool2d_1_4=maxpool2dwithindices_back_1_4 conv2d_4_12=convolution_back_4_12
conv2d_3_8=convolution_back_3_8 relu_1_3=clone_back_1_3 relu_2_7=clone_back_2_7
batchnorm_1_2=nativebatchnorm_back_1_2 batchnorm_2_6=nativebatchnorm_back_2_6 conv2d_1_1=convolution_back_1_1
conv2d_2_5=convolution_back_2_5""".split()
)


def bfs(root: Any) -> list[Any]:
    """Every grad_fn reachable from `root`, breadth-first (the reference walk)."""
    seen = {id(root)}
    out = [root]
    queue = deque([root])
    while queue:
        for nxt, _ in queue.popleft().next_functions:
            if nxt is not None and id(nxt) not in seen:
                seen.add(id(nxt))
                out.append(nxt)
                queue.append(nxt)
    return out


def mlp_log() -> tuple[torch.nn.Module, torch.Tensor, tl.ModelLog]:
    torch.manual_seed(0)
    model = mlp()
    x = torch.randn(2, 4)
    return model, x, tl.log_forward_pass(model, x)


def output_of(log: tl.ModelLog) -> torch.Tensor:
    return log[log.output_layers[0]].activation


# --------------------------------------------------------------------------- the graph and its labels


def test_mlp_backward_graph_lists_exactly_the_grad_fns_the_loss_reaches() -> None:
    _, _, log = mlp_log()
    assert not log.has_backward_log and log.num_grad_fns == 0 and log.backward_num_passes == 0
    assert log.backward_root_grad_fn_id is None and log.backward_memory_backend == "unknown"
    assert log.grad_fn_logs == {} and log.grad_fn_order == [] and repr(log.grad_fns) == "GradFnAccessor({})"
    loss = output_of(log).clone().square().mean()
    reference = bfs(loss.grad_fn)
    assert log.log_backward(loss) is log
    assert log.grad_fn_order == [id(n) for n in reference]
    assert [g.name for g in log.grad_fns] == [type(n).__name__ for n in reference]
    assert [g.label for g in log.grad_fns] == MLP_LABELS_215
    assert log.num_grad_fns == len(reference) == 12 and log.num_intervening_grad_fns == 9
    assert log.has_backward_log and log.backward_num_passes == 1 and log.backward_root_grad_fn_id == id(loss.grad_fn)
    assert log.backward_memory_backend == "cpu" and log.backward_peak_memory_bytes == 0
    assert list(log.grad_fn_logs) == log.grad_fn_order
    for g, node in zip(log.grad_fns, reference, strict=True):
        assert g.next_grad_fn_ids == [id(n) for n, _ in node.next_functions if n is not None]
        assert g.grad_fn_type == re.sub(r"Backward\d*$", "", g.name).lower()
        assert g.module_path == "builtins" and g.is_custom is False
        assert g.is_intervening == (g.label not in MLP_MATCHED_215)
    matched = {g.label: g.corresponding_layer.layer_label for g in log.grad_fns if not g.is_intervening}
    assert matched == MLP_MATCHED_215
    assert isinstance(log.grad_fns["relu_back_1_2"].corresponding_layer, tl.LayerLog)


def test_forward_entries_point_at_their_grad_fns() -> None:
    _, _, log = mlp_log()
    entries = {e.layer_label: e for e in log}
    assert entries["input_1"].grad_fn_id is None and entries["input_1"].grad_fn_object is None
    for label in ("linear_1_1", "relu_1_2", "linear_2_3"):
        e = entries[label]
        assert e.grad_fn_object is e.activation.grad_fn and e.grad_fn_id == id(e.activation.grad_fn)
    # An output node shares its producer's grad_fn.
    assert entries["output_1"].grad_fn_id == entries["linear_2_3"].grad_fn_id
    assert all(e.corresponding_grad_fn is None for e in log)
    log.log_backward(output_of(log).clone().square().mean())
    corr = {e.layer_label: getattr(e.corresponding_grad_fn, "label", None) for e in log}
    # As in 2.15: the output node, last in execution order, takes the grad_fn it shares with linear_2_3.
    assert corr == {
        "input_1": None,
        "linear_1_1": "addmm_back_1_1",
        "relu_1_2": "relu_back_1_2",
        "linear_2_3": None,
        "output_1": "addmm_back_1_4",
    }
    assert log.grad_fns["addmm_back_1_1"].grad_fn_id == entries["linear_1_1"].grad_fn_id
    assert all(e.grad_fn_object is None for e in log), "released after the backward call"
    layer = log.layers["relu_1_2"]
    assert layer.grad_fn_id == entries["relu_1_2"].grad_fn_id
    assert layer.corresponding_grad_fn is log.grad_fns["relu_back_1_2"]


def test_accessor_lookups() -> None:
    _, _, log = mlp_log()
    loss = output_of(log).clone().square().mean()
    log.log_backward(loss, retain_graph=True)
    log.log_backward(loss)
    acc = log.grad_fns
    assert len(acc) == 12 and [g.label for g in acc] == acc.keys() == MLP_LABELS_215
    assert acc[0].label == "mean_back_1_1" and acc[-1].label == "accumulategrad_back_4_12"
    assert acc["addmm_back_1_1"].corresponding_layer.layer_label == "linear_1_1"
    p = acc["addmm_back_1_1:2"]
    assert isinstance(p, tl.GradFnPassLog) and p.pass_num == 2 and p is acc["addmm_back_1_1"].passes[2]
    assert acc["relu"].label == "relu_back_1_2" and acc["accumulate"].label == "accumulategrad_back_1_5"
    assert "relu" in acc and "t_back_2_11" in acc and 11 in acc and "zzz" not in acc and 12 not in acc
    assert "relu_back_1_2:3" not in acc
    with pytest.raises(KeyError, match=r"GradFn 'zzz' not found. Valid labels: \['mean_back_1_1', 'pow_back_1_2'"):
        acc["zzz"]
    with pytest.raises(KeyError, match="GradFn 'relu_back_1_2:9' not found"):
        acc["relu_back_1_2:9"]
    with pytest.raises(IndexError):
        acc[12]
    lines = repr(acc).splitlines()
    assert lines[0] == "GradFnAccessor(12 grad_fns):"
    assert lines[1] == "  'mean_back_1_1': MeanBackward0 (passes=2, intervening=True)"
    assert lines[4] == "  'addmm_back_1_4': AddmmBackward0 (passes=2, intervening=False)"
    g = acc["relu_back_1_2"]
    assert g.num_passes == 2 and g.pass_labels == ["relu_back_1_2:1", "relu_back_1_2:2"]
    assert repr(g).startswith(f"GradFnLog(grad_fn_id={g.grad_fn_id}, name='ReluBackward0', module_path='builtins'")
    assert repr(g.passes[1]).startswith("GradFnPassLog(pass_num=1, grad_inputs=(tensor(")
    row = g.to_pandas()
    assert list(row.columns) == [
        "grad_fn_id",
        "name",
        "label",
        "grad_fn_type",
        "grad_fn_type_num",
        "grad_fn_total_num",
        "module_path",
        "is_custom",
        "is_intervening",
        "corresponding_layer",
        "next_grad_fn_ids",
        "passes",
        "num_passes",
        "pass_labels",
    ]
    assert len(row) == 1 and row.loc[0, "label"] == "relu_back_1_2" and row.loc[0, "num_passes"] == 2
    prow = g.passes[2].to_pandas()
    assert list(prow.columns) == ["pass_num", "grad_inputs", "grad_outputs", "time_started", "time_finished"]
    assert prow.loc[0, "pass_num"] == 2


def test_each_backward_call_adds_a_pass_with_the_gradients_autograd_computes() -> None:
    model, x, log = mlp_log()
    entries = {e.layer_label: e for e in log}
    out = output_of(log).clone()
    loss = out.square().mean()
    watched = [entries[k].activation for k in ("linear_1_1", "relu_1_2", "linear_2_3")]
    params = [model[0].bias, model[2].bias, model[2].weight]
    ref = torch.autograd.grad(loss, [*watched, *params], retain_graph=True)
    log.log_backward(loss, retain_graph=True)
    log.log_backward(loss, retain_graph=True)
    assert log.backward_num_passes == 2
    # The same gradient from a plain forward of the model (no torchlens): d mean(y^2) / dy = 2y / numel.
    y = model(x)
    assert torch.allclose(ref[2], 2 * y / y.numel())
    by_label = {"addmm_back_1_1": ref[0], "relu_back_1_2": ref[1], "addmm_back_1_4": ref[2]}
    for label, expected in by_label.items():
        g = log.grad_fns[label]
        assert sorted(g.passes) == [1, 2]
        for n, p in g.passes.items():
            assert p.pass_num == n and p.time_started <= p.time_finished
            assert len(p.grad_outputs) == 1 and torch.equal(p.grad_outputs[0], expected), (label, n)
            assert not p.grad_outputs[0].requires_grad
    # grad_inputs are what the grad_fn computed for addmm(bias, input, weight.t()); none for the model input.
    for n in (1, 2):
        ins = log.grad_fns["addmm_back_1_4"].passes[n].grad_inputs
        assert torch.equal(ins[0], ref[4]) and torch.equal(ins[1], ref[1]) and torch.equal(ins[2], ref[5].t())
        ins = log.grad_fns["addmm_back_1_1"].passes[n].grad_inputs
        assert torch.equal(ins[0], ref[3]) and ins[1] is None
    for g in log.grad_fns:
        assert g.num_passes == 2
        if g.is_intervening:
            assert all(p.grad_inputs is None and p.grad_outputs is None for p in g.passes.values())
    # The hooks are gone: a plain backward after log_backward records nothing.
    loss2 = out.sum()
    loss2.backward()
    assert log.backward_num_passes == 2 and log.grad_fns["addmm_back_1_4"].num_passes == 2


def test_a_later_call_adds_its_new_grad_fns_after_the_known_ones() -> None:
    _, _, log = mlp_log()
    c = output_of(log).clone()
    log.log_backward(c.sum(), retain_graph=True)  # the temporary loss and its SumBackward0 are freed here
    w = torch.randn(3, 2, requires_grad=True)
    log.log_backward(c.sum() + w.t().sum())
    assert [g.label for g in log.grad_fns] == REPEAT_LABELS_215
    assert [g.num_passes for g in log.grad_fns] == REPEAT_PASSES_215
    assert log.backward_num_passes == 2 and log.num_grad_fns == 16


def test_a_freed_forward_graph_matches_no_layer() -> None:
    # Nothing saved: the logged pass's grad_fns are freed, and a new forward of the same model may put
    # its grad_fns at their ids. As in 2.15 (which keeps the forward grad_fns alive), none is matched.
    torch.manual_seed(0)
    model, x = mlp(), torch.randn(2, 4)
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    with log.recording_backward():
        model(x).square().mean().backward()
    # TorchLens 2.15.0, the same calls.
    assert [g.label for g in log.grad_fns] == [
        "mean_back_1_1",
        "pow_back_1_2",
        "addmm_back_1_3",
        "accumulategrad_back_1_4",
        "relu_back_1_5",
        "t_back_1_6",
        "addmm_back_2_7",
        "accumulategrad_back_2_8",
        "accumulategrad_back_3_9",
        "t_back_2_10",
        "accumulategrad_back_4_11",
    ]
    assert log.num_intervening_grad_fns == log.num_grad_fns == 11
    assert all(e.corresponding_grad_fn is None for e in log)


def test_recording_backward_records_and_always_restores_tensor_backward() -> None:
    _, _, log = mlp_log()
    original = torch.Tensor.backward
    loss = output_of(log).clone().square().mean()
    with log.recording_backward():
        assert torch.Tensor.backward is not original
        loss.backward(retain_graph=True)
        log.log_backward(loss, retain_graph=True)  # inside the block: recorded once, not twice
    assert torch.Tensor.backward is original
    assert log.backward_num_passes == 2 and [g.label for g in log.grad_fns] == MLP_LABELS_215
    assert all(g.num_passes == 2 for g in log.grad_fns)
    with pytest.raises(RuntimeError, match="boom"), log.recording_backward():
        loss.backward(retain_graph=True)
        raise RuntimeError("boom")
    assert torch.Tensor.backward is original and log.backward_num_passes == 3
    with pytest.raises(ValueError, match="log_backward requires a loss tensor with a grad_fn."):
        with log.recording_backward():
            torch.randn(2).sum().backward()
    assert torch.Tensor.backward is original
    with log.recording_backward():
        pass
    assert log.backward_num_passes == 3


def test_bad_arguments() -> None:
    _, _, log = mlp_log()
    for bad in (torch.randn(3).sum(), 1.0):
        with pytest.raises(ValueError, match="log_backward requires a loss tensor with a grad_fn."):
            log.log_backward(bad)  # type: ignore[arg-type]
    assert not log.has_backward_log


def test_hooks_hold_the_log_weakly() -> None:
    _, _, log = mlp_log()
    loss = output_of(log).clone().square().mean()
    log.log_backward(loss, retain_graph=True)
    ref = weakref.ref(log)
    del log
    gc.collect()
    assert ref() is None
    loss.backward()  # the graph outlives the log: nothing is recorded and nothing fails

    _, _, log = mlp_log()
    loss = output_of(log).clone().sum()
    with log.recording_backward() as recorder:
        assert recorder.model_log is log
        ref = weakref.ref(log)
        del log
        gc.collect()
        assert ref() is None and recorder.model_log is None
        loss.backward()  # the patched backward falls back to the original one


# --------------------------------------------------------------------------- other models


def test_multi_pass_layers_and_their_grad_fns() -> None:
    torch.manual_seed(0)
    log = tl.log_forward_pass(Looped(), torch.randn(2, 3))
    c = output_of(log).clone()
    loss = ((c * 2.0) * c.sum()).sum()
    reference = bfs(loss.grad_fn)
    log.log_backward(loss)
    assert [g.label for g in log.grad_fns] == LOOPED_LABELS_215
    assert log.grad_fn_order == [id(n) for n in reference]
    matched = [(g.label, g.corresponding_layer.layer_label) for g in log.grad_fns if not g.is_intervening]
    assert matched == LOOPED_MATCHED_215
    assert isinstance(log.grad_fns["addmm_back_1_1"].corresponding_layer, tl.LayerPassLog)
    layer = log.layers["linear_1_1"]
    assert layer.grad_fn_id == layer.passes[1].grad_fn_id != layer.passes[2].grad_fn_id
    assert layer.corresponding_grad_fn is layer.passes[1].corresponding_grad_fn
    assert layer.passes[1].corresponding_grad_fn.corresponding_layer.layer_label == "linear_1_1:1"
    assert (
        log["relu_1_2:3"].corresponding_grad_fn is None
        and log["output_1"].corresponding_grad_fn.label == "relu_back_1_3"
    )


def test_custom_autograd_functions(tmp_path: Any) -> None:
    torch.manual_seed(0)
    log = tl.log_forward_pass(CustomFn(), torch.randn(3, 3))
    log.log_backward(output_of(log).clone().sum())
    assert [(g.label, g.name, g.module_path, g.is_custom) for g in log.grad_fns] == CUSTOM_215
    dot = log.show_backward_graph(vis_save_only=True, vis_outpath=str(tmp_path / "custom"), vis_fileformat="svg")
    assert '<TD ALIGN="CENTER">[i] doubler_back_1_4 [custom]</TD>' in dot


def test_resnet18_backward_graph_against_2_15() -> None:
    torch.manual_seed(0)
    log = tl.log_forward_pass(torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 64, 64))
    loss = output_of(log).clone().square().mean()
    reference = bfs(loss.grad_fn)
    log.log_backward(loss)
    assert log.grad_fn_order == [id(n) for n in reference]
    inplace = {e.layer_label for e in log if e.func_is_inplace}
    assert len(inplace) == 25 and {log[k].func_name for k in inplace} == {"relu_", "__iadd__"}
    assert (log.num_grad_fns + len(inplace), log.num_intervening_grad_fns + len(inplace)) == RESNET_COUNTS_215
    matched = {g.corresponding_layer.layer_label: g for g in log.grad_fns if not g.is_intervening}
    assert set(matched) == set(RESNET_MATCHED_215)
    for layer, g in matched.items():
        expected = RESNET_MATCHED_215[layer]
        if layer in inplace:
            assert expected.startswith("clone_back_") and g.name in ("ReluBackward0", "AddBackward0")
            expected = expected.replace("clone", g.grad_fn_type, 1)
        assert g.label == expected, layer
        assert g.passes[1].grad_outputs[0].shape == log[layer].tensor_shape


# --------------------------------------------------------------------------- show_backward_graph


def test_show_backward_graph_dot(tmp_path: Any) -> None:
    _, _, log = mlp_log()
    with pytest.raises(ValueError, match=r"No backward graph is available; call log_backward\(loss\) first."):
        log.show_backward_graph(vis_outpath=str(tmp_path / "none"), vis_save_only=True)
    log.log_backward(output_of(log).clone().square().mean())
    dot = log.show_backward_graph(vis_outpath=str(tmp_path / "bw"), vis_save_only=True, vis_fileformat="svg")
    assert (tmp_path / "bw.svg").exists()
    lines = dot.splitlines()
    assert lines[0] == 'digraph "Sequential_backward" {'
    assert (
        "label=<<B>Sequential backward graph</B><br align='left'/>12 grad_fn nodes<br align='left'/>"
        "1 backward pass(es)<br align='left'/>>" in dot
    )
    assert 'rankdir="TB"' in dot and 'edge [color="#9197F6" fontcolor="#9197F6"]' in dot
    nodes = [ln for ln in lines if ln.startswith('  "grad_fn_') and "->" not in ln]
    edges = [ln for ln in lines if "->" in ln]
    assert [re.search(r'"grad_fn_(\d+)"', ln).group(1) for ln in nodes] == [str(i) for i in log.grad_fn_order]
    assert len(edges) == sum(len(g.next_grad_fn_ids) for g in log.grad_fns) == 11
    for ln in nodes:
        assert 'shape="oval"' in ln and 'fillcolor="#F2F3FF"' in ln and 'color="#9197F6"' in ln
        assert 'penwidth="1.8"' in ln
    rows = [re.findall(r'<TD ALIGN="CENTER">([^<]*)</TD>', ln) for ln in nodes]
    assert rows[0] == ["[i] mean_back_1_1", "grad unknown"]
    assert rows[3] == ["addmm_back_1_4", "@output_1", "grad 2x3"]
    assert rows[7] == ["addmm_back_1_1", "@linear_1_1", "grad 2x8"]
    first, second = log.grad_fns[0].grad_fn_id, log.grad_fns[1].grad_fn_id
    assert edges[0] == f'  "grad_fn_{first}" -> "grad_fn_{second}"'
    seen: list[Any] = []

    def spec(g: tl.GradFnLog, default: tl.NodeSpec) -> tl.NodeSpec | None:
        seen.append(g)
        return tl.NodeSpec(lines=["x", g.label]) if g.is_intervening else None

    dot = tl.show_backward_graph(
        log,
        vis_outpath=str(tmp_path / "bw2"),
        vis_save_only=True,
        vis_fileformat="svg",
        vis_direction="leftright",
        vis_graph_overrides={"bgcolor": "red"},
        vis_edge_overrides={"penwidth": 3},
        node_spec_fn=spec,
    )
    assert (tmp_path / "bw2.svg").exists() and 'rankdir="LR"' in dot and 'bgcolor="red"' in dot
    assert 'edge [color="#9197F6" fontcolor="#9197F6" penwidth="3"]' in dot
    assert [g.label for g in seen] == MLP_LABELS_215
    assert '<TD ALIGN="CENTER">x</TD></TR><TR><TD ALIGN="CENTER">mean_back_1_1</TD>' in dot
    options = tl.VisualizationOptions(direction="bottomup", output_path=str(tmp_path / "bw3"), save_only=True)
    dot = tl.show_backward_graph(log, vis_direction="leftright", vis_fileformat="svg", visualization=options)
    assert 'rankdir="BT"' in dot and (tmp_path / "bw3.svg").exists()
    dot = log.show_backward_graph(vis_outpath=str(tmp_path / "cp"), vis_save_only=True, code_panel=True)
    assert "cluster_torchlens_code_panel" in dot and "<FONT FACE='Courier'>def forward(self" in dot
    with pytest.raises(NotImplementedError, match="node_mode='vision'"):
        log.show_backward_graph(vis_outpath=str(tmp_path / "cp"), vis_save_only=True, vis_node_mode="vision")
