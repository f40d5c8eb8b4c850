"""Exact labels and per-model capture rules over `models.zoo` (the structure-wide checks are in
test_small_models.py).

Exact label lists are derived by hand from spec §5.3 (type counter per layer type, total counter
over non-input/buffer layers, outputs last), §6.4 (loops) and §7.2-7.4 (what becomes a node).
"""

from __future__ import annotations

import pytest
import torch

import torchlens as tl

from models import zoo
from models.small import BufferInplace
from zoo_logging import labels_of, log_case

# --------------------------------------------------------------------------- exact labels


def passes(prefix: str, n: int) -> list[str]:
    return [f"{prefix}:{i}" for i in range(1, n + 1)]


EXPECTED_LABELS: dict[str, list[str]] = {
    "add_mul": ["input_1", "add_1_1", "mul_1_2", "output_1"],
    "inplace_ops": ["input_1", "clone_1_1", "add_1_2", "mul_1_3", "output_1"],
    "inplace_relu": ["input_1", "linear_1_1", "relu_1_2", "add_1_3", "add_2_4", "output_1"],
    "views": [
        "input_1",
        "view_1_1",
        "transpose_1_2",
        "reshape_1_3",
        "permute_1_4",
        "unsqueeze_1_5",
        "expand_1_6",
        "output_1",
    ],
    "getitem": ["input_1", "getitem_1_1", "tensor_1_2", "getitem_2_3", "add_1_4", "output_1"],
    "setitem": ["input_1", "clone_1_1", "setitem_1_2", "mul_1_3", "output_1"],
    "setitem_tensor": ["input_1", "zeros_1_1", "sum_1_2", "setitem_1_3", "add_1_4", "output_1"],
    "numpy_const": ["input_1", "fromnumpy_1_1", "add_1_2", "output_1"],
    "zeros": ["input_1", "zeros_1_1", "add_1_2", "output_1"],
    "new_zeros": ["input_1", "newzeros_1_1", "add_1_2", "output_1"],
    "orphans": ["input_1", "add_1_1", "output_1"],
    "two_inputs": ["input_1", "input_2", "linear_1_1", "mul_1_2", "output_1"],
    "kwarg_input": ["input_1", "input_2", "mul_1_1", "add_1_2", "output_1"],
    "tuple_output": ["input_1", "sin_1_1", "cos_1_2", "output_1", "output_2"],
    "dict_output": ["input_1", "add_1_1", "mul_1_2", "output_1", "output_2"],
    "nested_list_output": ["input_1", "exp_1_1", "abs_1_2", "neg_1_3", "output_1", "output_2", "output_3"],
    "returns_input": ["input_1", "add_1_1", "output_1", "output_2"],
    "dup_output": ["input_1", "mul_1_1", "output_1", "output_2"],
    "buffers": ["input_1", "buffer_1", "mul_1_1", "buffer_2", "add_1_2", "output_1"],
    "batchnorm_eval": ["input_1", "buffer_1", "buffer_2", "batchnorm_1_1", "output_1"],
    "batchnorm_train": ["input_1", "buffer_1", "buffer_2", "batchnorm_1_1", "output_1"],
    "const_attr": ["input_1", "buffer_1", "add_1_1", "output_1"],
    "act_attr": ["input_1", "tanh_1_1", "output_1"],
    "frozen_params": ["input_1", "linear_1_1", "gelu_1_2", "linear_2_3", "output_1"],
    "shared_block_twice": [
        "input_1",
        "linear_1_1:1",
        "relu_1_2:1",
        "linear_1_1:2",
        "relu_1_2:2",
        "output_1",
    ],
    "shared_alias": [
        "input_1",
        "linear_1_1:1",
        "relu_1_2:1",
        "sub_1_3",
        "linear_1_1:2",
        "relu_1_2:2",
        "output_1",
    ],
    # Two same-shaped inputs feeding one parameter op merge into one input layer, as in 2.15.
    "same_linear_two_places": ["input_1:1", "input_1:2", "linear_1_1:1", "linear_1_1:2", "add_1_2", "output_1"],
    "nested3": ["input_1", "linear_1_1", "mul_1_2", "output_1"],
    "identity": ["input_1", "identity_1_1", "add_1_2", "output_1"],
    "passthrough": ["input_1", "identity_1_1", "mul_1_2", "output_1"],
    "sequential": ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "output_1"],
    "seq_inside": ["input_1", "linear_1_1", "tanh_1_2", "identity_1_3", "linear_2_4", "output_1"],
    "spec_loop": ["input_1"]
    + [lab for k in range(1, 5) for lab in (f"linear_1_1:{k}", f"add_1_2:{k}", f"mul_1_3:{k}")]
    + ["output_1"],
    "value_conditional": ["input_1", "sum_1_1", "gt_1_2", "mul_1_3", "output_1"],
    "cat_stack": ["input_1", "mul_1_1", "cat_1_2", "add_1_3", "stack_1_4", "output_1"],
    "split_mul": ["input_1", "split_1_1", "split_2_2", "mul_1_3", "output_1"],
    "max_dim": ["input_1", "max_1_1", "max_2_2", "output_1", "output_2"],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LABELS))
def test_exact_labels(name: str) -> None:
    assert labels_of(name) == EXPECTED_LABELS[name]


def test_exact_labels_cover_enough_models() -> None:
    assert len(EXPECTED_LABELS) >= 10
    assert set(EXPECTED_LABELS) <= set(zoo.ZOO)


def parents(log: tl.ModelLog, label: str) -> set[str]:
    return set(log[label].parent_layers)


def test_add_mul_graph() -> None:
    _, _, _, log = log_case("add_mul")
    assert log["add_1_1"].parent_layers == ["input_1"]
    assert log["mul_1_2"].parent_layers == ["add_1_1"]
    assert log["output_1"].parent_layers == ["mul_1_2"]
    assert log["add_1_1"].func_name == "__add__"
    assert log["mul_1_2"].func_name == "__mul__"
    assert log["add_1_1"].containing_module is None
    assert log[0] is log["input_1"] and log[-1] is log["output_1"]


def test_inplace_ops_keep_identity_and_chain() -> None:
    model, _, _, log = log_case("inplace_ops")
    assert model.same_object == [True], "x.add_(1) is x must stay True during logging"
    assert [log[lab].func_name for lab in ("clone_1_1", "add_1_2", "mul_1_3")] == ["clone", "add_", "mul_"]
    assert log["add_1_2"].parent_layers == ["clone_1_1"]
    assert log["mul_1_3"].parent_layers == ["add_1_2"]
    assert log["output_1"].parent_layers == ["mul_1_3"]
    x = zoo.ZOO["inplace_ops"].inputs()[0][0]
    assert torch.equal(log["clone_1_1"].activation, x)
    assert torch.equal(log["add_1_2"].activation, x + 1)
    assert torch.equal(log["mul_1_3"].activation, (x + 1) * 2)


def test_inplace_relu_and_inplace_on_input() -> None:
    _, args, _, log = log_case("inplace_relu")
    x = args[0]
    assert log["relu_1_2"].func_name == "relu_"
    assert log["relu_1_2"].parent_layers == ["linear_1_1"]
    assert log["add_1_3"].func_name == "add_"
    assert log["add_1_3"].parent_layers == ["input_1"]
    assert parents(log, "add_2_4") == {"relu_1_2", "add_1_3"}
    assert log["act"] is log["relu_1_2"]
    assert log["fc"] is log["linear_1_1"]
    assert log["relu_1_2"].containing_module == "act:1"
    # the input activation is a snapshot taken before the in-place add, and the user's tensor is untouched
    assert torch.equal(log["input_1"].activation, x)
    assert torch.equal(log["add_1_3"].activation, x + 1)
    assert torch.equal(x, zoo.ZOO["inplace_relu"].inputs()[0][0])


def test_getitem_tensor_index_parents() -> None:
    _, _, _, log = log_case("getitem")
    assert log["getitem_1_1"].parent_layers == ["input_1"]
    assert log["tensor_1_2"].parent_layers == []
    assert parents(log, "getitem_2_3") == {"input_1", "tensor_1_2"}
    assert log["getitem_1_1"].func_name == "__getitem__"


def test_setitem_is_a_node_on_the_written_tensor() -> None:
    _, _, _, log = log_case("setitem")
    e = log["setitem_1_2"]
    assert e.func_name == "__setitem__"
    assert e.parent_layers == ["clone_1_1"]
    assert log["mul_1_3"].parent_layers == ["setitem_1_2"]
    assert torch.all(e.activation[:, 0] == 0)
    log2 = log_case("setitem_tensor")[3]
    assert parents(log2, "setitem_1_3") == {"zeros_1_1", "sum_1_2"}
    assert parents(log2, "add_1_4") == {"setitem_1_3", "input_1"}


def test_factories_are_parentless() -> None:
    for name, lab in (("zeros", "zeros_1_1"), ("numpy_const", "fromnumpy_1_1")):
        log = log_case(name)[3]
        assert log[lab].parent_layers == [], (name, log[lab].parent_layers)
        assert log[lab].child_layers == ["add_1_2"]
        assert parents(log, "add_1_2") == {"input_1", lab}
    log = log_case("factories")[3]
    types = [log[lab].layer_type for lab in log.layer_labels]
    for t in ("zeros", "ones", "arange", "randn", "newzeros", "full"):
        assert t in types, (t, types)
    for lab in log.layer_labels:
        if log[lab].layer_type in ("zeros", "ones", "arange", "randn", "full"):
            assert log[lab].parent_layers == []


def test_new_zeros_is_parentless() -> None:
    """Spec §7.3: factory calls inside forward, `new_*` included, are nodes with no parents."""
    log = log_case("new_zeros")[3]
    assert log["newzeros_1_1"].child_layers == ["add_1_2"]
    assert log["newzeros_1_1"].parent_layers == []
    assert parents(log, "add_1_2") == {"input_1", "newzeros_1_1"}


def test_orphans_removed() -> None:
    log = log_case("orphans")[3]
    assert len(log.orphan_layers) == 2
    assert all(lab.endswith("_raw") for lab in log.orphan_layers)


def test_multiple_inputs_and_kwargs() -> None:
    log = log_case("two_inputs")[3]
    assert log.input_layers == ["input_1", "input_2"]
    assert log["linear_1_1"].parent_layers == ["input_1"]
    assert parents(log, "mul_1_2") == {"linear_1_1", "input_2"}
    log = log_case("kwarg_input")[3]
    assert log.input_layers == ["input_1", "input_2"]
    assert log["input_1"].io_role == "input.x"
    assert log["input_2"].io_role == "input.scale"
    assert parents(log, "mul_1_1") == {"input_1", "input_2"}


def test_output_roles() -> None:
    log = log_case("dict_output")[3]
    assert [log[lab].io_role for lab in log.output_layers] == ["output.a", "output.b"]
    assert log["output_1"].parent_layers == ["add_1_1"]
    assert log["output_2"].parent_layers == ["mul_1_2"]
    log = log_case("nested_list_output")[3]
    assert [log[lab].io_role for lab in log.output_layers] == ["output.0", "output.1.0", "output.1.1.0"]
    log = log_case("tuple_output")[3]
    assert [log[lab].io_role for lab in log.output_layers] == ["output.0", "output.1"]


def test_same_tensor_returned_twice() -> None:
    log = log_case("dup_output")[3]
    assert log["output_1"].parent_layers == ["mul_1_1"]
    assert log["output_2"].parent_layers == ["mul_1_1"]
    assert [log[lab].io_role for lab in log.output_layers] == ["output.0", "output.1"]


def test_returns_input_unchanged() -> None:
    _, args, _, log = log_case("returns_input")
    assert log["output_1"].parent_layers == ["input_1"]
    assert log["output_2"].parent_layers == ["add_1_1"]
    assert torch.equal(log["output_1"].activation, args[0])


def test_buffer_nodes() -> None:
    log = log_case("buffers")[3]
    assert log.buffer_layers == ["buffer_1", "buffer_2"]
    assert log["buffer_1"].buffer_address == "scale"
    assert log["buffer_2"].buffer_address == "shift"
    assert parents(log, "mul_1_1") == {"input_1", "buffer_1"}
    assert parents(log, "add_1_2") == {"mul_1_1", "buffer_2"}
    assert torch.equal(log["buffer_2"].activation, torch.arange(4, dtype=torch.float32))
    log = log_case("const_attr")[3]
    assert log["buffer_1"].buffer_address == "const"
    assert parents(log, "add_1_1") == {"input_1", "buffer_1"}


@pytest.mark.parametrize("name", ["batchnorm_eval", "batchnorm_train"])
def test_batchnorm_buffers(name: str) -> None:
    model, _, _, log = log_case(name)
    assert model.training == (name == "batchnorm_train")
    assert [log[b].buffer_address for b in log.buffer_layers] == ["bn.running_mean", "bn.running_var"]
    assert parents(log, "batchnorm_1_1") == {"input_1", "buffer_1", "buffer_2"}
    assert log["batchnorm_1_1"].containing_module == "bn:1"
    assert log["bn"] is log["batchnorm_1_1"]
    if name == "batchnorm_train":
        # num_batches_tracked.add_(1) touches neither input nor output: an orphan pair
        assert len(log.orphan_layers) == 2
        assert int(model.bn.num_batches_tracked) == 1
    # the buffer nodes hold the running statistics the op read (before its in-place update in train mode)
    assert torch.equal(log["buffer_1"].activation, torch.tensor([0.1, -0.2, 0.3, 0.0]))
    assert torch.equal(log["buffer_2"].activation, torch.tensor([1.0, 2.0, 0.5, 1.5]))


def test_buffer_first_used_by_inplace_op() -> None:
    """The buffer node records the value the op read (spec §7.2: buffers are logged before the call)."""
    model = BufferInplace()
    x = zoo.randn(2, 3)
    log = tl.log_forward_pass(model, x, random_seed=0)
    assert log.layer_labels == ["input_1", "buffer_1", "add_1_1", "add_2_2", "output_1"]
    assert log["buffer_1"].buffer_address == "count"
    assert log["add_1_1"].func_name == "add_"
    assert log["add_1_1"].parent_layers == ["buffer_1"]
    assert parents(log, "add_2_2") == {"input_1", "add_1_1"}
    assert torch.equal(model.count, torch.ones(3))
    assert torch.equal(log["add_1_1"].activation, torch.ones(3))
    assert torch.equal(log["output_1"].activation, x + 1)
    assert torch.equal(log["buffer_1"].activation, torch.zeros(3)), log["buffer_1"].activation


def test_act_attr_bound_before_wrapping() -> None:
    """`self.act = torch.tanh` captured while torch is unwrapped must still be logged (spec §7.1)."""
    tl.unwrap_torch()
    model = zoo.ActAttr()
    x = zoo.randn(2, 4)
    log = tl.log_forward_pass(model, x, random_seed=0)
    assert log.layer_labels == ["input_1", "tanh_1_1", "output_1"]
    assert torch.equal(log["output_1"].activation, torch.tanh(x))


def test_shared_block_twice_modules() -> None:
    log = log_case("shared_block_twice")[3]
    assert log["linear_1_1:1"].containing_module == "block.fc:1"
    assert log["linear_1_1:2"].containing_module == "block.fc:2"
    assert log["relu_1_2:1"].containing_module == "block:1"
    assert log["relu_1_2:2"].containing_module == "block:2"
    assert log["relu_1_2:2"].modules_exited == ["block"]
    assert log["block:1"] is log["relu_1_2:1"]
    assert log["block:2"] is log["relu_1_2:2"]
    assert log["linear_1_1:2"].parent_layers == ["relu_1_2:1"]
    assert log["linear_1_1:1"].num_passes == 2


def test_same_linear_two_places_is_one_layer() -> None:
    log = log_case("same_linear_two_places")[3]
    assert log["linear_1_1:1"].parent_layers == ["input_1:1"]
    assert log["linear_1_1:2"].parent_layers == ["input_1:2"]
    assert log["linear_1_1:2"].pass_num == 2
    assert parents(log, "add_1_2") == {"linear_1_1:1", "linear_1_1:2"}


def test_nested_three_levels() -> None:
    log = log_case("nested3")[3]
    e = log["linear_1_1"]
    assert e.containing_module == "mid.inner.fc:1"
    assert e.modules_exited == ["mid.inner.fc", "mid.inner", "mid"]
    assert log["mid"] is e
    assert log["mid.inner"] is e
    assert log["mid.inner.fc:1"] is e
    assert log["mul_1_2"].containing_module is None
    assert log["mul_1_2"].modules_exited == []


def test_identity_modules() -> None:
    log = log_case("identity")[3]
    e = log["identity_1_1"]
    assert e.parent_layers == ["input_1"]
    assert e.containing_module == "ident:1"
    assert e.modules_exited == ["ident"]
    assert log["ident"] is e
    log = log_case("passthrough")[3]
    assert log["pt"] is log["identity_1_1"]
    assert log["identity_1_1"].parent_layers == ["input_1"]
    # As in 2.15 the identity node is a dead end: the caller goes on with the input itself.
    assert log["identity_1_1"].child_layers == []
    assert log["mul_1_2"].parent_layers == ["input_1"]


def test_sequential_lookups() -> None:
    log = log_case("sequential")[3]
    assert log["0"] is log["linear_1_1"]
    assert log["1"] is log["relu_1_2"]
    assert log["2"] is log["linear_2_3"]
    log = log_case("seq_inside")[3]
    # The Identity's node is a side branch; `features` returns tanh's tensor (2.15's lookups).
    assert log["features"] is log["tanh_1_2"]
    assert log["features.2"] is log["identity_1_3"]
    assert log["identity_1_3"].modules_exited == ["features.2"]
    assert log["tanh_1_2"].modules_exited == ["features.1", "features"]
    assert log["linear_2_4"].parent_layers == ["tanh_1_2"]
    assert log["head"] is log["linear_2_4"]
    assert log["output_1"].modules_exited == ["head"]


def test_spec_loop_passes() -> None:
    log = log_case("spec_loop")[3]
    assert log["linear_1_1:3"].parent_layers == ["mul_1_3:2"]
    assert log["linear_1_1:1"].num_passes == 4
    assert log["fc:4"] is log["linear_1_1:4"]


def test_modulelist_loop_passes() -> None:
    log = log_case("modulelist_loop")[3]
    first = log["layers.0:1"]
    assert first.layer_label == "linear_1_1:1"
    assert first.num_passes == 3
    assert log["layers.1:3"].num_passes == 3
    assert log["layers.1:3"].layer_type == "linear"
    assert log["layers.0:2"].layer_label == "linear_1_1:2"


def test_value_conditional() -> None:
    log = log_case("value_conditional")[3]
    assert log["gt_1_2"].parent_layers == ["sum_1_1"]
    assert log["gt_1_2"].child_layers == []
    assert log["gt_1_2"].tensor_dtype == torch.bool
    assert log["mul_1_3"].parent_layers == ["input_1"]
    log = log_case("shape_conditional")[3]
    assert log.layer_labels[1] == "getitem_1_1"  # shape tests add no node


def test_multi_output_ops() -> None:
    log = log_case("split_mul")[3]
    assert log["split_1_1"].parent_layers == ["input_1"]
    assert log["split_2_2"].parent_layers == ["input_1"]
    assert parents(log, "mul_1_3") == {"split_1_1", "split_2_2"}
    log = log_case("max_dim")[3]
    assert log["max_1_1"].tensor_dtype == torch.float32
    assert log["max_2_2"].tensor_dtype == torch.int64
    assert log["output_2"].parent_layers == ["max_2_2"]
    log = log_case("split_chunk")[3]
    types = [log[lab].layer_type for lab in log.layer_labels]
    assert types.count("split") == 2 and types.count("chunk") == 2


def test_cat_stack_parents() -> None:
    log = log_case("cat_stack")[3]
    assert parents(log, "cat_1_2") == {"input_1", "mul_1_1"}
    assert parents(log, "stack_1_4") == {"cat_1_2", "add_1_3"}


def test_typical_layer_types_present() -> None:
    cases = {
        "matmul_einsum": {"matmul", "einsum"},
        "norm_softmax_dropout": {"linear", "layernorm", "dropout", "softmax"},
        "embed_lstm": {"embedding", "lstm", "zeros", "linear"},
        "conv_pool": {"conv2d", "relu", "maxpool2d", "conv1d", "linear"},
        "attention": {"linear", "scaleddotproductattention"},
        "frozen_params": {"linear", "gelu"},
    }
    for name, want in cases.items():
        log = log_case(name)[3]
        types = {log[lab].layer_type for lab in log.layer_labels}
        assert want <= types, (name, want - types)
