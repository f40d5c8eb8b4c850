"""Log objects (spec §3-4, §7.6, §8.2-8.4, §2.7): fields, printouts, modules, params, buffers, call stacks."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision
from torch import nn

import torchlens as tl
from torchlens.log.call_stack import FuncCallLocation
from torchlens.log.modules import ModuleLog, ModulePassLog
from torchlens.log.params import ParamLog

from models import SimpleRecurrent


@pytest.fixture(scope="module")
def alex() -> tl.ModelLog:
    torch.manual_seed(0)
    model = torchvision.models.alexnet().eval()
    return tl.log_forward_pass(model, torch.randn(1, 3, 224, 224), random_seed=1)


def test_alexnet_layer_printout_matches_a2(alex: tl.ModelLog) -> None:
    lines = str(alex["conv2d_3_7"]).split("\n")
    assert lines[0] == "Layer conv2d_3_7, operation 7/22:"
    # Spec A.2 prints "dype" (a typo in 2.15); this release prints "dtype" (docs/api.md).
    assert lines[1] == "\tOutput tensor: shape=(1, 384, 13, 13), dtype=torch.float32, size=253.5 KB"
    assert lines[2].startswith("\t\ttensor([[") and lines[9].endswith("]])...")
    rest = lines[10:]
    assert rest[:7] == [
        "\tRelated Layers:",
        "\t\t- parent layers: maxpool2d_2_6",
        "\t\t- child layers: relu_3_8",
        "\t\t- shares parents with no other layers",
        "\t\t- shares children with no other layers",
        "\t\t- descendent of input layers: input_1",
        "\t\t- ancestor of output layers: output_1",
    ]
    assert rest[7] == (
        "\tParams: Computed from params with shape (384, 192, 3, 3), (384,); 663936 params total (2.5 MB)"
    )
    assert rest[8] == "\tFunction: conv2d (grad_fn: ConvolutionBackward0) "
    assert rest[9] == "\tComputed inside module: features.6:1"
    assert rest[10] == "\tConfig: out_channels=384, in_channels=192, kernel_size=(3, 3), padding=(1, 1)"
    assert rest[11].startswith("\tTime elapsed: ") and rest[11].endswith("s") and "E-" in rest[11]
    assert rest[11][len("\tTime elapsed:") :].startswith("  ")  # the space flag of `: .3E`
    assert rest[12:] == [
        "\tOutput of modules: features.6",
        "\tOutput of bottom-level module: features.6:1",
        "\tLookup keys: -17, 7, conv2d_3, conv2d_3:1, conv2d_3_7, conv2d_3_7:1, features.6, features.6:1",
    ]
    assert repr(alex["conv2d_3_7"]) == str(alex["conv2d_3_7"])


def test_alexnet_lookups_and_fields(alex: tl.ModelLog) -> None:
    e = alex["conv2d_3_7"]
    for key in ("conv2d_3", "conv2d_3_7:1", "features.6", 7, -17):
        assert alex[key] == e
    assert e.lookup_keys == [
        -17,
        7,
        "conv2d_3",
        "conv2d_3:1",
        "conv2d_3_7",
        "conv2d_3_7:1",
        "features.6",
        "features.6:1",
    ]
    assert e.func_config == {"out_channels": 384, "in_channels": 192, "kernel_size": (3, 3), "padding": (1, 1)}
    assert alex["linear_1_17"].func_config == {"out_features": 4096, "in_features": 9216}
    assert alex["dropout_1_16"].func_config == {"p": 0.5}
    assert alex["maxpool2d_1_3"].func_config == {"kernel_size": 3, "stride": 2, "padding": 0}
    assert e.func_name == "conv2d" and e.layer_type == "conv2d"
    assert e.parent_layer_arg_locs == {"args": {0: "maxpool2d_2_6"}, "kwargs": {}}
    assert e.root_ancestors == ["input_1"]
    assert e.num_params_total == 663936 and e.num_params_trainable == 663936 and e.num_params_frozen == 0
    assert [p.address for p in e.parent_param_logs] == ["features.6.weight", "features.6.bias"]
    assert e.params["weight"].shape == (384, 192, 3, 3)
    assert e.equivalent_operations == {"conv2d_3_7"}
    assert e.recurrent_group == ["conv2d_3_7:1"]
    assert e.feeds_output is False and alex["linear_3_22"].feeds_output is True
    assert e.func_is_inplace is False and alex["relu_1_2"].func_is_inplace is True
    assert e.func_argnames[:3] == ("input", "weight", "bias")
    assert e.min_distance_from_input is None  # only with compute_input_output_distances=True
    assert e.transformed_activation is None and e.extra_data == {}
    assert e.captured_args is None and e.args_captured is False
    assert isinstance(e.func_time, float) and e.func_time > 0
    assert e.flops_forward == 2 * 384 * 13 * 13 * 192 * 9 + 384 * 13 * 13  # multiply-adds, then the bias add
    assert e.macs_forward == e.flops_forward // 2
    assert e.source_model_log is alex
    assert e.modules_entered == ["features.7"] and e.is_submodule_input
    assert not e.in_cond_branch and e.conditional_branch_stack == []


def test_alexnet_call_stack(alex: tl.ModelLog) -> None:
    stack = alex["conv2d_3_7"].func_call_stack
    assert [f.func_name for f in stack] == [
        "forward",
        "forward",
        "forward",
        "_conv_forward",
        "test_alexnet_call_stack",
    ] or [f.func_name for f in stack][:4] == ["forward", "forward", "forward", "_conv_forward"]
    assert stack[0].file.endswith("alexnet.py")
    assert stack[1].file.endswith("container.py")
    assert stack[2].file.endswith("conv.py") and stack[3].file.endswith("conv.py")
    # The frame that called log_forward_pass comes last (spec §3.5 quirk).
    assert stack[-1].file == __file__
    fcl = stack[3]
    assert isinstance(fcl, FuncCallLocation)
    assert fcl.code_qualname.endswith("_conv_forward")
    # save_source_context=False (default): the no-source state.
    assert fcl.code_context is None and fcl.source_context == "None" and fcl.call_line == ""
    assert "code: source unavailable" in repr(fcl)
    assert len(fcl) == 0


def test_call_stack_with_source_context() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x)  # the call line

    log = tl.log_forward_pass(M(), torch.randn(2), save_source_context=True, source_context_lines=2)
    stack = log["relu_1_1"].func_call_stack
    assert [f.func_name for f in stack] == ["forward", "test_call_stack_with_source_context"]
    fcl = stack[0]
    assert fcl.call_line == "return torch.relu(x)  # the call line"
    assert len(fcl.code_context) == 5
    assert "--->  " in fcl.code_context_labeled
    assert fcl[2].strip() == fcl.call_line
    assert fcl.func_signature.startswith("def forward")


def test_layer_log_aggregates_and_per_pass_errors() -> None:
    log = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5), random_seed=0)
    lay = log.layers["linear_1_1"]
    assert isinstance(lay, tl.LayerLog)
    assert len(lay) == 4 and lay.num_passes == 4
    assert lay.pass_labels == ["linear_1_1:1", "linear_1_1:2", "linear_1_1:3", "linear_1_1:4"]
    assert lay.func_config == {"out_features": 5, "in_features": 5}
    with pytest.raises(ValueError, match="has 4 passes. Access 'activation' on a specific pass"):
        _ = lay.activation
    with pytest.raises(ValueError, match="captured_args"):
        _ = lay.captured_args
    assert log.layers["linear_1_1:2"] == log["linear_1_1:2"]
    assert log.layers[1] is log.layer_logs["linear_1_1"]
    assert "linear_1_1" in log.layers and "nope" not in log.layers
    with pytest.raises(KeyError, match="Layer 'nope' not found"):
        _ = log.layers["nope"]
    assert repr(log.layers).startswith("LayerAccessor(5 layers):")
    assert "'linear_1_1': linear (shape=[6, 5], passes=4)" in repr(log.layers)
    assert str(lay).split("\n")[0] == "Layer linear_1_1: (4 passes)"
    assert str(log["linear_1_1:2"]).split("\n")[0] == "Layer linear_1_1 (pass 2/4), operation 4/12:"
    assert log["linear_1_1:2"].recurrent_group == lay.pass_labels
    assert log["linear_1_1:2"].equivalent_operations == set(lay.pass_labels)


def test_modules() -> None:
    log = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5), random_seed=0)
    mods = log.modules
    assert mods.keys() == ["self", "fc"]
    assert mods[0] is log.root_module and mods[""] is log.root_module
    fc = mods["fc"]
    assert isinstance(fc, ModuleLog) and log["fc"] is fc
    assert fc.module_class_name == "Linear" and fc.num_passes == 4
    assert fc.address_parent == "self" and fc.address_depth == 1 and fc.nesting_depth == 1
    assert fc.pass_labels == ["fc:1", "fc:2", "fc:3", "fc:4"]
    assert fc.all_layers == ["linear_1_1"] and fc.num_layers == 1
    assert fc.num_params == 30 and fc.params_memory == 120 and fc.requires_grad
    assert fc.call_parent == "self"
    with pytest.raises(AttributeError, match="has 4 passes"):
        _ = fc.layers
    p2 = mods["fc:2"]
    assert isinstance(p2, ModulePassLog)
    assert log["fc:2"].layer_label == "linear_1_1:2"  # a module pass label that is a layer key -> the layer
    assert p2.layers == ["linear_1_1:2"] and p2.output_layers == ["linear_1_1:2"]
    assert p2.call_parent == "self:1"
    assert repr(p2).startswith("ModulePassLog: fc:2\n  layers: 1")
    assert repr(fc).split("\n")[:5] == [
        "ModuleLog: fc (Linear)",
        "  nesting_depth: 1, address_depth: 1",
        "  num_params: 30",
        "  num_layers: 1",
        "  num_passes: 4",
    ]
    assert "'fc': Linear (depth=1, params=30, layers=1, passes=4)" in repr(mods)
    root = log.root_module
    assert root.address == "self" and root.call_children == ["fc"] and root.nesting_depth == 0
    with pytest.raises(KeyError, match="Module 'zz' not found"):
        _ = mods["zz"]
    assert "Address" in mods.summary()


def test_nested_modules_and_per_pass(alex: tl.ModelLog) -> None:
    feats = alex.modules["features"]
    assert feats.address_children[:2] == ["features.0", "features.1"]
    assert feats.call_children[:2] == ["features.0", "features.1"]
    assert feats.layers[0] == "conv2d_1_1"
    assert alex.modules["features.6"].call_parent == "features"
    assert alex.modules["features.6"].nesting_depth == 2
    assert [e.layer_label for e in alex.modules["classifier"]][:2] == ["dropout_1_16", "linear_1_17"]
    assert alex.modules["classifier"]["linear_2"].layer_label == "linear_2_20"
    assert alex.modules["features.0"].is_training is False
    assert alex.modules["features.0"].class_docstring.strip().startswith("Applies a 2D convolution")


def test_params() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model[2].bias.requires_grad_(False)
    log = tl.log_forward_pass(model, torch.randn(1, 3))
    params = log.params
    assert params is log.param_logs and len(params) == 4
    assert params.keys() == ["0.weight", "0.bias", "2.weight", "2.bias"]
    w = params["0.weight"]
    assert isinstance(w, ParamLog) and params[0] is w
    assert (w.name, w.shape, w.dtype, w.num_params, w.memory, w.memory_str) == (
        "weight",
        (4, 3),
        torch.float32,
        12,
        48,
        "48 B",
    )
    assert w.trainable and not params["2.bias"].trainable
    assert w.module_address == "0" and w.module_type == "Linear"
    assert w.used_by_layers == ["linear_1_1"] and w.num_passes == 1
    assert w.linked_params == ["0.bias"]
    assert w.is_quantized is False and w.has_optimizer is None and len(w) == 12
    assert w.has_grad is False
    with pytest.raises(KeyError, match="Ambiguous short name 'weight'"):
        _ = params["weight"]
    assert "0.weight" in params and 3 in params and "nope" not in params
    assert "'0.weight': ParamLog (4, 3) torch.float32 trainable" in repr(params)
    assert repr(w).split("\n")[:2] == ["ParamLog: 0.weight", "  shape: (4, 3)"]
    assert log.total_params_frozen == 2 and log.total_params_trainable == 24


def test_buffers() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).eval()
    log = tl.log_forward_pass(model, torch.randn(3, 4))
    bufs = log.buffers
    assert len(bufs) == 2
    b = bufs["1.running_mean"]
    assert isinstance(b, tl.LayerPassLog) and type(b).__name__ == "BufferLog"
    assert b.name == "running_mean" and b.module_address == "1"
    assert bufs["running_var"].buffer_address == "1.running_var"
    assert repr(b).split("\n")[0] == "BufferLog: 1.running_mean"
    assert str(b).startswith("Layer buffer_1, operation 0/")
    assert log.modules["1"].buffer_layers == [bufs[0].layer_label, bufs[1].layer_label]
    assert log.buffer_num_passes == {"1.running_mean": 1, "1.running_var": 1}


def test_printing_big_log_is_lazy() -> None:
    layers: list[nn.Module] = []
    for _ in range(1000):
        layers += [nn.Linear(4, 4), nn.ReLU()]
    log = tl.log_forward_pass(nn.Sequential(*layers), torch.randn(1, 4), layers_to_save=None)
    assert len(log) == 2002
    text = str(log)
    assert "(2000) relu_1000_2000" in text
    assert len(log._entries) == 0  # no LayerPassLog built for the printout
    _ = repr(log)
    assert len(log._entries) == 0


def test_activation_postfunc_and_raw() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    log = tl.log_forward_pass(model, torch.randn(2, 4), activation_postfunc=lambda t: t.mean(dim=0))
    e = log["linear_1_1"]
    assert e.transformed_activation_shape == (4,)
    assert e.transformed_activation_dtype == torch.float32
    assert e.transformed_activation_memory == 16
    assert torch.allclose(e.transformed_activation, e.activation.mean(dim=0))
    assert log.activation_postfunc_repr.startswith("<function")
    # the postfunc's own torch calls are not logged
    assert log.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "output_1"]

    x2 = torch.randn(2, 4)
    log2 = tl.log_forward_pass(model, x2, activation_postfunc=torch.sigmoid, save_raw_activation=False)
    e2 = log2["relu_1_2"]
    with torch.no_grad():
        expected = torch.sigmoid(model(x2))
    assert e2.activation is None and torch.equal(e2.transformed_activation, expected)
    assert e2.has_saved_activations  # the transformed value counts as saved (spec §8.1)
    assert e2.tensor_shape == (2, 4)  # metadata describes the raw tensor
    assert torch.equal(log2["output_1"].transformed_activation, expected)

    def bad(t: torch.Tensor) -> torch.Tensor:
        raise KeyError("boom")

    with pytest.raises(
        tl.TorchLensPostfuncError,
        match=r"activation_postfunc raised for layer input_1_raw \(raw=input_1_raw, func=none, shape=\(2, 4\)",
    ) as ei:
        tl.log_forward_pass(model, torch.randn(2, 4), activation_postfunc=bad)
    assert isinstance(ei.value.__cause__, KeyError)
    assert not tl._capture.wrap.is_wrapped() or tl._capture.hot.get_session() is None


def test_captured_args_and_rng_states() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    x = torch.randn(2, 3)
    log = tl.log_forward_pass(model, x, save_function_args=True, save_rng_states=True, random_seed=5)
    e = log["linear_1_1"]
    assert e.args_captured and e.func_applied.__name__ == "linear"
    assert torch.equal(e.func_applied(x, model[0].weight, model[0].bias), e.activation)
    assert torch.equal(e.captured_args[0], log["input_1"].activation)
    assert e.captured_args[1] is model[0].weight
    d = log["dropout_1_2"]
    assert d.captured_args[1:] == (0.5, True) and d.captured_kwargs == {}
    assert set(d.func_rng_states) == {"cpu", "cuda"}
    assert d.parent_layer_arg_locs == {"args": {0: "linear_1_1"}, "kwargs": {}}


def test_children_tensor_versions() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x + 1
            z = y * 2
            y.add_(5)  # y changes after z consumed it
            return z + y

    log = tl.log_forward_pass(M(), torch.randn(3), save_function_args=True)
    # the saved activation of add_1_1 is its value at creation, which is what mul_1_2 saw
    assert log["add_1_1"].children_tensor_versions == {}
    assert tl.validate_forward_pass(M(), torch.randn(3)) is True


def test_random_seed_recorded_and_reproducible() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).train()
    x = torch.randn(4, 3)
    a = tl.log_forward_pass(model, x, random_seed=123)
    b = tl.log_forward_pass(model, x, random_seed=123)
    assert a.random_seed_used == 123
    assert "\tRandom seed: 123" in str(a)
    assert torch.equal(a["dropout_1_2"].activation, b["dropout_1_2"].activation)
    c = tl.log_forward_pass(model, x)
    assert 1 <= c.random_seed_used <= 4294967294


def test_distances() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = x + 1
            b = a * 2
            return a + b

    log = tl.log_forward_pass(M(), torch.randn(2), compute_input_output_distances=True)
    assert (log["add_2_3"].min_distance_from_input, log["add_2_3"].max_distance_from_input) == (2, 3)
    assert (log["add_1_1"].min_distance_from_output, log["add_1_1"].max_distance_from_output) == (2, 3)
    assert log["input_1"].min_distance_from_input == 0
    meta = tl.log_model_metadata(M(), torch.randn(2))
    assert meta["mul_1_2"].min_distance_from_input == 2
    assert meta["mul_1_2"].activation is None
    with pytest.warns(DeprecationWarning):
        old = tl.get_model_metadata(M(), torch.randn(2))
    assert old.layer_labels == meta.layer_labels


def test_layer_pass_field_order_is_complete() -> None:
    from torchlens.log.export import LAYER_PASS_LOG_FIELD_ORDER

    log = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5))
    e = log["add_1_2:3"]
    for name in LAYER_PASS_LOG_FIELD_ORDER:
        getattr(e, name)
    buf = io.StringIO()
    import contextlib

    with contextlib.redirect_stdout(buf):
        e.print_all_fields()
    assert "layer_label: add_1_2:3" in buf.getvalue()


class TinySummaryModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(256, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.flatten(self.relu(self.conv(x))))


def test_summary_overview_table() -> None:
    log = tl.log_forward_pass(TinySummaryModel(), torch.randn(1, 3, 8, 8), layers_to_save=None)
    text = log.summary()
    assert text.split("\n")[:11] == [
        "Model: TinySummaryModel",
        "+-------------------+--------------+--------+-------+",
        "| Layer             | Output Shape | Params | Train |",
        "+-------------------+--------------+--------+-------+",
        "| input             | [1,3,8,8]    | 0      | -     |",
        "| conv (Conv2d)     | [1,4,8,8]    | 108    | yes   |",
        "| relu (ReLU)       | [1,4,8,8]    | 0      | -     |",
        "| flatten (Flatten) | [1,256]      | 0      | -     |",
        "| fc (Linear)       | [1,5]        | 1.3 K  | yes   |",
        "| output            | [1,5]        | -      | -     |",
        "+-------------------+--------------+--------+-------+",
    ]
    assert "Params: 1,393 unique; trainable: 1,393" in text
    assert "Ops: 4 total" in text and "Saved activations: 0 B" in text
    assert log.summary("memory").startswith("Memory Summary: TinySummaryModel")
    assert log.summary("cost").startswith("Compute Summary: TinySummaryModel")
    assert log.summary(preset="graph").startswith("Graph Summary: TinySummaryModel")
    assert "Operations:" in log.summary(show_ops=True)
    with pytest.raises(ValueError, match="Unsupported summary fields"):
        log.summary(fields=["bogus"])
    with pytest.raises(ValueError):
        log.summary("nope")


def test_layer_log_unions_over_passes() -> None:
    log = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5))
    lay = log.layers["linear_1_1"]
    assert lay.parent_layers == ["input_1", "mul_1_3"]
    assert lay.parent_layers_per_pass[1] == ["input_1"] and lay.parent_layers_per_pass[2] == ["mul_1_3:1"]
    assert lay.edges_vary_across_passes is True
    assert lay.parent_passes_per_layer == {"input_1": ["input_1"], "mul_1_3": ["mul_1_3:1", "mul_1_3:2", "mul_1_3:3"]}
    assert lay.leaf_module_passes == ["fc:1", "fc:2", "fc:3", "fc:4"]
    assert lay.modules_exited == ["fc"] and lay.has_input_ancestor
    assert lay.parent_layer_arg_locs == {"args": {0: "input_1"}, "kwargs": {}}
    lay.extra_data["note"] = 1
    assert log.layers["linear_1_1"].extra_data == {"note": 1}
    assert log.layers["mul_1_3"].io_role is None
    out = log.layers["output_1"]
    assert out.io_role == "output"


def test_raw_labels_follow_2_15() -> None:
    # Reference: TorchLens 2.15.0 on the same model prints exactly these raw labels.
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.l = nn.Linear(3, 3)
            self.register_buffer("b", torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.l(x) + self.b)

    log = tl.log_forward_pass(M(), torch.randn(2, 3))
    assert [e.tensor_label_raw for e in log] == [
        "input_1_raw",
        "linear_1_2_raw",
        "buffer_1_raw",
        "add_1_4_raw",
        "relu_1_5_raw",
        "output_1_raw",
    ]
