"""Graph focus on one module (`module=`, `ModuleLog.show_graph`, spec §12.4): exact node, edge and cluster sets."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_viz import clusters_of, edges_of, nodes_of
from torch import nn

import torchlens as tl

from models import SimpleRecurrent

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` missing; `make deps` installs it")


def two_level() -> nn.Module:
    """0 = (Linear, ReLU); 1 = (Linear, Tanh, 1.2 = (Linear, Sigmoid)): a Sequential nested two levels deep."""
    return nn.Sequential(
        nn.Sequential(nn.Linear(4, 4), nn.ReLU()),
        nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Sequential(nn.Linear(3, 3), nn.Sigmoid())),
    )


@pytest.fixture
def seq_log() -> tl.ModelLog:
    return tl.log_forward_pass(two_level(), torch.rand(2, 4), layers_to_save=None)


@pytest.fixture
def recurrent_log() -> tl.ModelLog:
    return tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), layers_to_save=None)


def test_focus_on_submodule(seq_log: tl.ModelLog) -> None:
    dot = seq_log.to_dot(module="1")
    nodes = nodes_of(dot)
    # relu_1_2 is computed in module 0 and feeds module 1: drawn as its input; 1_output_1 is synthetic.
    assert set(nodes) == {"relu_1_2", "linear_2_3", "tanh_1_4", "linear_3_5", "sigmoid_1_6", "1_output_1"}
    assert set(edges_of(dot)) == {
        ("relu_1_2", "linear_2_3"),
        ("linear_2_3", "tanh_1_4"),
        ("tanh_1_4", "linear_3_5"),
        ("linear_3_5", "sigmoid_1_6"),
        ("sigmoid_1_6", "1_output_1"),
    }
    assert clusters_of(dot) == ["cluster_1_pass1", "cluster_1.2_pass1"]
    assert 'shape="oval" fillcolor="#98FB98"' in nodes["relu_1_2"]
    assert 'shape="oval" fillcolor="#ff9999"' in nodes["1_output_1"]
    assert tl.render_lines_to_html(["output_1", "2x3 (24 B)", "@1"])[1:-1] in nodes["1_output_1"]
    assert 'shape="box" fillcolor="#D9D9D9"' in nodes["linear_2_3"]
    assert "@1 (Sequential)<br align='left'/>4 tensors total (96 B)" in dot
    assert "27 params (all trainable, 108 B)" in dot
    assert '{ rank=sink "1_output_1" }' in dot


def test_focus_depth_counts_from_the_focused_module(seq_log: tl.ModelLog) -> None:
    dot = seq_log.to_dot(module="1", vis_nesting_depth=1)
    nodes = nodes_of(dot)
    assert set(nodes) == {"relu_1_2", "linear_2_3", "tanh_1_4", "1.2pass1", "1_output_1"}
    assert "box3d" in nodes["1.2pass1"] and "2 layers total" in nodes["1.2pass1"]
    assert set(edges_of(dot)) == {
        ("relu_1_2", "linear_2_3"),
        ("linear_2_3", "tanh_1_4"),
        ("tanh_1_4", "1.2pass1"),
        ("1.2pass1", "1_output_1"),
    }
    assert clusters_of(dot) == ["cluster_1_pass1"]


def test_focus_on_leaf_and_inner_module(seq_log: tl.ModelLog) -> None:
    inner = seq_log.to_dot(module="1.2")
    assert set(nodes_of(inner)) == {"tanh_1_4", "linear_3_5", "sigmoid_1_6", "1.2_output_1"}
    assert clusters_of(inner) == ["cluster_1.2_pass1"]
    leaf = seq_log.to_dot(module="0.0")
    assert set(nodes_of(leaf)) == {"input_1", "linear_1_1", "0.0_output_1"}
    assert set(edges_of(leaf)) == {("input_1", "linear_1_1"), ("linear_1_1", "0.0_output_1")}
    assert clusters_of(leaf) == []


def test_module_log_and_address_agree(seq_log: tl.ModelLog) -> None:
    assert seq_log.to_dot(module=seq_log.modules["1"]) == seq_log.to_dot(module="1")
    # The root is the whole model.
    assert seq_log.to_dot(module="self") == seq_log.to_dot()


def test_focus_on_one_pass(recurrent_log: tl.ModelLog) -> None:
    dot = recurrent_log.to_dot(module="fc:2")
    nodes = nodes_of(dot)
    assert set(nodes) == {"mul_1_3pass1", "linear_1_1pass2", "fc_output_1"}
    assert set(edges_of(dot)) == {("mul_1_3pass1", "linear_1_1pass2"), ("linear_1_1pass2", "fc_output_1")}
    assert '<TD ALIGN="CENTER">@fc:2</TD>' in nodes["fc_output_1"]
    assert recurrent_log.to_dot(module=recurrent_log.modules["fc:2"]) == dot


def test_focus_on_all_passes(recurrent_log: tl.ModelLog) -> None:
    unrolled = recurrent_log.to_dot(module="fc")
    nodes = nodes_of(unrolled)
    assert set(nodes) == (
        {"input_1"}
        | {f"mul_1_3pass{k}" for k in (1, 2, 3)}
        | {f"linear_1_1pass{k}" for k in (1, 2, 3, 4)}
        | {f"fc_output_{k}" for k in (1, 2, 3, 4)}
    )
    assert ("linear_1_1pass4", "fc_output_4") in edges_of(unrolled)
    assert '<TD ALIGN="CENTER">@fc:3</TD>' in nodes["fc_output_3"]
    rolled = recurrent_log.to_dot(vis_mode="rolled", module="fc")
    assert set(nodes_of(rolled)) == {"input_1", "mul_1_3", "linear_1_1", "fc_output_1"}
    edges = edges_of(rolled)
    assert set(edges) == {("input_1", "linear_1_1"), ("mul_1_3", "linear_1_1"), ("linear_1_1", "fc_output_1")}
    assert 'headlabel="  In 2-4  "' in edges[("mul_1_3", "linear_1_1")]


def test_unknown_module(seq_log: tl.ModelLog) -> None:
    with pytest.raises(ValueError, match=r"^Module address 'nope' was not found in this ModelLog\.$"):
        seq_log.to_dot(module="nope")
    with pytest.raises(ValueError, match="Module address '1:2' was not found"):
        seq_log.to_dot(module="1:2")
    with pytest.raises(TypeError, match="ModuleLog or a module address"):
        seq_log.to_dot(module=1)


@needs_dot
def test_show_graph_writes_file(seq_log: tl.ModelLog, tmp_path: Path) -> None:
    out = tmp_path / "inner"
    src = seq_log.modules["1"].show_graph(vis_outpath=str(out), vis_save_only=True, vis_fileformat="svg")
    assert src == seq_log.to_dot(module="1")
    svg = (tmp_path / "inner.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "sigmoid_1_6" in svg and "input_1" not in svg


@needs_dot
def test_show_model_graph_module(tmp_path: Path) -> None:
    out = tmp_path / "g"
    tl.show_model_graph(
        two_level(), torch.rand(2, 4), vis_outpath=str(out), vis_fileformat="svg", vis_save_only=True, module="1.2"
    )
    svg = (tmp_path / "g.svg").read_text()
    assert "linear_3_5" in svg and "linear_1_1" not in svg


@pytest.mark.parametrize("mode", ["unrolled", "rolled"])
def test_focus_on_a_resnet_block_live_and_loaded(mode: str, tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    log = tl.log_forward_pass(model, torch.randn(1, 3, 64, 64), layers_to_save=None)
    inside = [e for e in log if "layer1.0:1" in e.containing_modules]
    labels = {e.layer_label for e in inside if not e.is_buffer_layer}  # BN statistics are not drawn
    feeding = {p for e in inside for p in e.parent_layers if p not in labels and not log[p].is_buffer_layer}
    assert labels == {
        "conv2d_2_5",
        "batchnorm_2_6",
        "relu_2_7",
        "conv2d_3_8",
        "batchnorm_3_9",
        "iadd_1_10",
        "relu_3_11",
    }
    assert feeding == {"maxpool2d_1_4"}
    tl.save(log, tmp_path / "b")
    for lg in (log, tl.load(tmp_path / "b")):
        dot = lg.to_dot(vis_mode=mode, module="layer1.0")
        nodes = set(nodes_of(dot))
        # exactly the block's ops, the op feeding it (drawn as its input) and its synthetic output
        assert nodes == labels | feeding | {"layer1.0_output_1"}, sorted(nodes ^ (labels | feeding))
        assert 'shape="oval" fillcolor="#98FB98"' in nodes_of(dot)["maxpool2d_1_4"]
