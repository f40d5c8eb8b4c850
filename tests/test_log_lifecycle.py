"""A log's lifecycle (spec §2.4, §2.6, §7.3): `keep_unsaved_layers=False`, buffer nodes,
`release_param_refs()` / `cleanup()`, and plain pickling.

Expected labels, printouts and buffer tables are those TorchLens 2.15.0 gives for the same models
(run as a black box); values are checked against forward hooks or a plain run of the model.
"""

from __future__ import annotations

import gc
import pickle
import weakref
from typing import Any

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens import TorchLensIOError

from models import SimpleRecurrent
from models.large import BIG
from models.lifecycle import (
    BatchNormTwice,
    BufferInLoop,
    BufferListAttr,
    BufferManyUses,
    BufferModuleCalledTwice,
    BufferReadFromRoot,
    EqualBuffersTwoModules,
    LoopedBlocks,
    SharedBufferLoop,
    SharedBufferTwoModules,
    TwoPathSummaryNet,
)


def _hook_outputs(model: nn.Module, *args: Any) -> tuple[Any, dict[str, list[torch.Tensor]]]:
    """The model's output and each submodule's outputs (per call), from forward hooks on a plain run."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, mod in model.named_modules():
        if name:
            handles.append(
                mod.register_forward_hook(lambda _m, _i, o, name=name: seen.setdefault(name, []).append(o.detach()))
            )
    try:
        with torch.no_grad():
            out = model(*args)
    finally:
        for h in handles:
            h.remove()
    return out, seen


# ---------------------------------------------------------------------------- keep_unsaved_layers
FULL_LABELS = [
    "input_1",
    "linear_1_1",
    "mul_1_2",
    "linear_2_3:1",
    "relu_1_4:1",
    "linear_2_3:2",
    "relu_1_4:2",
    "linear_2_3:3",
    "relu_1_4:3",
    "tanh_1_5",
    "linear_3_6",
    "output_1",
]
KEPT = ["linear_1_1", "relu_1_4:2", "tanh_1_5", "linear_3_6", "output_1"]


def _looped() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return LoopedBlocks(), torch.randn(2, 4)


def test_keep_unsaved_layers_false_shows_only_saved_entries() -> None:
    model, x = _looped()
    full = tl.log_forward_pass(model, x, random_seed=3)
    log = tl.log_forward_pass(
        model, x, layers_to_save=["relu_1_4:2", "tanh", "embed"], keep_unsaved_layers=False, random_seed=3
    )
    assert full.layer_labels == FULL_LABELS
    assert log.keep_unsaved_layers is False
    # the selection plus the output's parent and the output (spec §2.4)
    assert log.layer_labels == KEPT
    assert log.layer_labels_no_pass == ["linear_1_1", "relu_1_4", "tanh_1_5", "linear_3_6", "output_1"]
    assert log.layer_labels_w_pass == ["linear_1_1:1", "relu_1_4:2", "tanh_1_5:1", "linear_3_6:1", "output_1:1"]
    assert log.unlogged_layers == [lab for lab in FULL_LABELS if lab not in KEPT]
    assert log.layers_with_saved_activations == KEPT
    assert len(log) == log.num_tensors_total == log.num_tensors_saved == 5
    # whole-graph totals stay those of the full pass
    assert log.total_activation_memory == full.total_activation_memory == 656
    assert log.saved_activation_memory == sum(log[lab].tensor_memory for lab in KEPT) == 240
    assert log.num_operations == full.num_operations == 10
    assert log.layer_num_passes == {"linear_1_1": 1, "relu_1_4": 3, "tanh_1_5": 1, "linear_3_6": 1, "output_1": 1}
    assert log.input_layers == [] and log.output_layers == ["output_1"]
    # entries keep their labels, passes and full-graph neighbours; ordinals count kept entries
    relu = log["relu_1_4:2"]
    assert (relu.pass_num, relu.num_passes) == (2, 3)
    assert relu.parent_layers == ["linear_2_3:2"] and relu.child_layers == ["linear_2_3:3"]
    assert [[k for k in e.lookup_keys if isinstance(k, int)] for e in log] == [
        [-5, 0],
        [-4, 1],
        [-3, 2],
        [-2, 3],
        [-1, 4],
    ]
    assert [log[i].layer_label for i in range(-5, 5)] == KEPT + KEPT
    assert log["block:2"] is relu and log["embed"] is log["linear_1_1"]
    assert log["relu_1_4"].num_passes == 3 and list(log["relu_1_4"].passes) == [2]
    for key in ("input_1", "mul_1_2", "block.lin:2"):
        with pytest.raises(ValueError, match="keep_unsaved_layers=False"):
            log[key]
    with pytest.raises(ValueError, match="only 5 layers"):
        log[5]
    # modules describe the whole model
    assert log.modules["block"].num_passes == 3
    assert log.modules["block"].all_layers == ["linear_2_3", "relu_1_4"]
    # values: what the model computed
    out, seen = _hook_outputs(model, x)
    assert torch.equal(log["embed"].activation, seen["embed"][0])
    assert torch.equal(relu.activation, seen["block"][1])
    assert torch.equal(log["head"].activation, seen["head"][0])
    assert torch.equal(log["output_1"].activation, out)
    assert torch.equal(log["tanh_1_5"].activation, torch.tanh(seen["block"][2]))
    assert list(log.to_pandas().layer_label) == KEPT
    assert log.check_metadata_invariants()


def test_keep_unsaved_layers_false_printout() -> None:
    model, x = _looped()
    log = tl.log_forward_pass(
        model, x, layers_to_save=["relu_1_4:2", "tanh", "embed"], keep_unsaved_layers=False, random_seed=3
    )
    text = str(log)
    assert (
        "\t\t- 5 total tensors (656 B) computed in forward pass.\n\t\t- 5 tensors (240 B) with saved activations."
        in text
    )
    assert text.endswith(
        "\tLayers (all have saved activations):\n"
        "\t\t  (0) linear_1_1 \n"
        "\t\t  (1) relu_1_4:2  (2/3 passes)\n"
        "\t\t  (2) tanh_1_5 \n"
        "\t\t  (3) linear_3_6 \n"
        "\t\t  (4) output_1 "
    )
    assert repr(log).split("\n")[1].startswith("layers=5 params=139 ops=10 saved=240 B")
    msg = "Must have all layers logged in order to render the graph; either save all layers,set keep_unsaved_layers"
    with pytest.raises(ValueError, match=msg):
        log.render_graph(vis_save_only=True)
    with pytest.raises(ValueError, match=msg):
        log.to_dot()
    with pytest.raises(ValueError, match="keep_unsaved_layers=False"):
        log.validate_forward_pass([model(x)])


def test_keep_unsaved_layers_false_with_all_or_nothing_saved() -> None:
    model, x = _looped()
    everything = tl.log_forward_pass(model, x, keep_unsaved_layers=False, random_seed=3)
    assert everything.layer_labels == FULL_LABELS and everything.unlogged_layers == []
    assert everything.to_dot() == tl.log_forward_pass(model, x, random_seed=3).to_dot()
    for none in (None, []):
        log = tl.log_forward_pass(model, x, layers_to_save=none, keep_unsaved_layers=False, random_seed=3)
        assert log.layer_labels == [] and len(log) == 0
        assert log.unlogged_layers == FULL_LABELS
        assert "\t\t- 0 total tensors (656 B) computed in forward pass." in str(log)


def test_dropped_log_survives_bundle_and_pickle(tmp_path: Any) -> None:
    model, x = _looped()
    log = tl.log_forward_pass(model, x, layers_to_save=["tanh"], keep_unsaved_layers=False, random_seed=3)
    assert log.layer_labels == ["tanh_1_5", "linear_3_6", "output_1"]
    tl.save(log, tmp_path / "b")
    for other in (tl.load(tmp_path / "b"), pickle.loads(pickle.dumps(log))):
        assert other.layer_labels == log.layer_labels and other.unlogged_layers == log.unlogged_layers
        assert str(other) == str(log)
        for a, b in zip(log, other, strict=True):
            assert torch.equal(a.activation, b.activation)
        with pytest.raises(ValueError, match="keep_unsaved_layers=False"):
            other["mul_1_2"]


# ---------------------------------------------------------------------------- buffers (spec §7.3)
BUFFER_CASES = [
    (
        BufferManyUses,
        ["input_1", "buffer_1", "mul_1_1", "add_1_2", "sub_1_3", "output_1"],
        [("buffer_1", "scale", 1, ["add_1_2", "mul_1_1", "sub_1_3"])],
    ),
    (
        SharedBufferTwoModules,
        ["input_1", "buffer_1", "mul_1_1", "mul_2_2", "output_1"],
        [("buffer_1", "a.s", 1, ["mul_1_1", "mul_2_2"])],
    ),
    (
        SharedBufferLoop,
        ["input_1", "buffer_1", "mul_1_1:1", "mul_2_2:1", "mul_1_1:2", "mul_2_2:2", "output_1"],
        [("buffer_1", "a.s", 1, ["mul_1_1:1", "mul_1_1:2", "mul_2_2:1", "mul_2_2:2"])],
    ),
    (
        BufferModuleCalledTwice,
        ["input_1", "buffer_1", "mul_1_1", "add_1_2", "mul_2_3", "output_1"],
        [("buffer_1", "blk.s", 1, ["mul_1_1", "mul_2_3"])],
    ),
    (
        BufferInLoop,
        ["input_1", "buffer_1", "add_1_1:1", "relu_1_2:1", "add_1_1:2", "relu_1_2:2", "add_1_1:3", "relu_1_2:3"]
        + ["output_1"],
        [("buffer_1", "b", 1, ["add_1_1:1", "add_1_1:2", "add_1_1:3"])],
    ),
    (
        BufferReadFromRoot,
        ["input_1", "buffer_1", "mul_1_1", "add_1_2", "output_1"],
        [("buffer_1", "sub.s", 1, ["add_1_2", "mul_1_1"])],
    ),
    (
        EqualBuffersTwoModules,
        ["input_1", "buffer_1", "mul_1_1", "buffer_2", "mul_2_2", "add_1_3", "output_1"],
        [("buffer_1", "a.s", 1, ["mul_1_1"]), ("buffer_2", "b.s", 1, ["mul_2_2"])],
    ),
    (
        BatchNormTwice,
        ["input_1", "buffer_1", "buffer_2", "batchnorm_1_1:1", "relu_1_2", "batchnorm_1_1:2", "output_1"],
        [
            ("buffer_1", "bn.running_mean", 1, ["batchnorm_1_1:1", "batchnorm_1_1:2"]),
            ("buffer_2", "bn.running_var", 1, ["batchnorm_1_1:1", "batchnorm_1_1:2"]),
        ],
    ),
    (
        BufferListAttr,
        ["input_1", "buffer_1", "mul_1_1", "buffer_2", "add_1_2", "add_2_3", "output_1"],
        [("buffer_1", "ts.0", 1, ["add_2_3", "mul_1_1"]), ("buffer_2", "ts.1", 1, ["add_1_2"])],
    ),
]


def _tensor_at(model: nn.Module, address: str) -> torch.Tensor:
    obj: Any = model
    for part in address.split("."):
        obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
    return obj


@pytest.mark.parametrize(("cls", "labels", "buffers"), BUFFER_CASES, ids=lambda v: getattr(v, "__name__", ""))
def test_one_node_per_buffer_tensor(cls: type, labels: list[str], buffers: list[tuple]) -> None:
    """A buffer read several times, by several modules or in a loop is one `buffer_N` node."""
    torch.manual_seed(0)
    model = cls()
    x = torch.randn(2, 4)
    before = {b[1]: _tensor_at(model, b[1]).clone() for b in buffers}
    log = tl.log_forward_pass(model, x, random_seed=1)
    assert log.layer_labels == labels
    got = [(b.layer_label, b.buffer_address, b.buffer_pass, sorted(b.child_layers)) for b in log if b.is_buffer_layer]
    assert got == buffers
    assert log.buffer_layers == [b[0] for b in buffers]
    assert log.buffer_num_passes == {b[1]: 1 for b in buffers}
    for label, address, *_ in buffers:
        assert log.buffers[address].layer_label == label
        assert log[address].layer_label == label  # a single-pass buffer address is a lookup key
        # the saved value is the buffer as it was when first read (BatchNorm updates its stats later)
        assert torch.equal(log[label].activation, before[address])
    torch.manual_seed(0)
    assert tl.validate_forward_pass(cls(), x, random_seed=1)


# ---------------------------------------------------------------------------- release_param_refs / cleanup
def _refs(model: nn.Module) -> list[weakref.ref]:
    return [weakref.ref(model)] + [weakref.ref(p) for p in model.parameters()]


def _alive(refs: list[weakref.ref]) -> list[bool]:
    gc.collect()
    return [r() is not None for r in refs]


def test_release_param_refs_frees_model_and_parameters() -> None:
    build, make_input = BIG["resnet18"]
    torch.manual_seed(0)
    model = build().eval()
    x = make_input()
    log = tl.log_forward_pass(model, x, save_function_args=True, detach_saved_tensors=True, random_seed=2)
    out = model(x)
    out.sum().backward()  # gradients for the ParamLogs to report
    out = out.detach()
    refs = _refs(model)
    n_params = len(refs) - 1
    expected_grads = {n: (tuple(p.grad.shape), p.grad.dtype) for n, p in model.named_parameters()}
    del model
    # the captured arguments of each op still hold the parameters passed to it
    alive = _alive(refs)
    assert alive[0] is False and all(alive[1:])
    log.release_param_refs()
    assert _alive(refs) == [False] * (n_params + 1)
    # the log is intact: gradient metadata cached, replay from the captured arguments still exact
    for p in log.params:
        assert p.has_grad and (p.grad_shape, p.grad_dtype) == expected_grads[p.address]
    assert log.validate_forward_pass([out])
    assert log["conv2d_1_1"].captured_args[1].shape == (64, 3, 7, 7)


def test_cleanup_frees_graph_attached_activations() -> None:
    torch.manual_seed(0)
    model = SimpleRecurrent()
    log = tl.log_forward_pass(model, torch.randn(6, 5), save_function_args=True, random_seed=2)
    assert log["linear_1_1:1"].activation.grad_fn is not None  # attached to autograd (the default)
    labels = log.layer_labels
    refs = _refs(model)
    del model
    log.release_param_refs()
    # the autograd graph of the saved activations still holds the weights ...
    alive = _alive(refs)
    assert alive[0] is False and all(alive[1:])
    log.cleanup()
    # ... until cleanup drops the saved values
    assert _alive(refs) == [False] * len(refs)
    assert log.layer_labels == labels and log["linear_1_1:2"].activation is None
    assert log.params["fc.weight"].shape == (5, 5)


def test_log_without_saved_values_never_holds_the_model() -> None:
    build, make_input = BIG["gpt2"]
    torch.manual_seed(0)
    model = build().eval()
    log = tl.log_forward_pass(model, make_input(), layers_to_save=None)
    refs = _refs(model)
    del model
    assert _alive(refs) == [False] * len(refs)
    assert log.modules["h.0.attn"].module_class_name == "GPT2Attention"
    log.release_param_refs()
    log.cleanup()
    assert log.num_tensors_saved == 0


# ---------------------------------------------------------------------------- pickle
def _same_log(a: tl.ModelLog, b: tl.ModelLog) -> None:
    assert b.layer_labels == a.layer_labels
    assert str(b) == str(a) and repr(b) == repr(a)
    assert b.to_dot() == a.to_dot()
    for x, y in zip(a, b, strict=True):
        assert x.lookup_keys == y.lookup_keys and x.parent_layers == y.parent_layers
        assert x.func_call_stack == y.func_call_stack or [str(f) for f in x.func_call_stack] == [
            str(f) for f in y.func_call_stack
        ]
        if x.activation is None:
            assert y.activation is None
        else:
            assert torch.equal(x.activation, y.activation) and x.activation.dtype == y.activation.dtype
    assert [m.address for m in b.modules] == [m.address for m in a.modules]
    for m, n in zip(a.modules, b.modules, strict=True):
        assert (n.module_class_name, n.num_passes, n.all_layers, n.num_params) == (
            m.module_class_name,
            m.num_passes,
            m.all_layers,
            m.num_params,
        )
        assert [p.output_layers for p in n.passes.values()] == [p.output_layers for p in m.passes.values()]
        assert n.class_docstring == m.class_docstring
    fields = ("address", "shape", "dtype", "num_params", "trainable", "used_by_layers", "linked_params", "has_grad")
    assert [[getattr(p, f) for f in fields] for p in b.params] == [[getattr(p, f) for f in fields] for p in a.params]
    assert b.buffer_layers == a.buffer_layers


@pytest.mark.parametrize("name", ["resnet18", "gpt2", "lstm", "t5"])
def test_pickle_round_trip_real_models(name: str) -> None:
    build, make_input = BIG[name]
    torch.manual_seed(0)
    model = build().eval()
    inp = make_input()
    args, kwargs = inp if isinstance(inp, tuple) and len(inp) == 2 and isinstance(inp[1], dict) else (inp, None)
    log = tl.log_forward_pass(model, args, kwargs, random_seed=5)
    loaded = pickle.loads(pickle.dumps(log))
    _same_log(log, loaded)
    assert loaded.random_seed_used == 5 and loaded.model_name == log.model_name


def test_pickle_keeps_replay_data_and_not_the_model() -> None:
    torch.manual_seed(0)
    model = TwoPathSummaryNet()
    x, y = torch.randn(2, 6), torch.randn(2, 6)
    log = tl.log_forward_pass(model, [x, y], save_function_args=True, save_rng_states=True, random_seed=4)
    log["add_1_4"].extra_data["note"] = "kept"
    blob = pickle.dumps(log)
    with torch.no_grad():
        outs = model(x, y)
    loaded = pickle.loads(blob)
    _same_log(log, loaded)
    refs = _refs(model)
    del model, log
    assert _alive(refs) == [False] * len(refs)  # the loaded log holds neither the model nor its parameters
    assert loaded["add_1_4"].extra_data == {"note": "kept"}
    assert loaded.validate_forward_pass(list(outs))
    assert torch.equal(loaded["linear_1_1"].captured_args[0], x)
    # single log objects pickle with their log
    entry = pickle.loads(pickle.dumps(loaded["relu_1_3"]))
    assert entry.layer_label == "relu_1_3" and torch.equal(entry.activation, loaded["relu_1_3"].activation)
    param = pickle.loads(pickle.dumps(loaded.params["head.weight"]))
    assert (param.address, param.shape, param.used_by_layers) == ("head.weight", (2, 6), ["linear_4_9"])


def test_pickle_version_is_checked() -> None:
    torch.manual_seed(0)
    log = tl.log_forward_pass(SimpleRecurrent(), torch.randn(6, 5), layers_to_save=None)
    state = log.__getstate__()
    state["_pickle_format_version"] = 99
    fresh = tl.ModelLog.__new__(tl.ModelLog)
    with pytest.raises(TorchLensIOError, match="format version 99"):
        fresh.__setstate__(state)
