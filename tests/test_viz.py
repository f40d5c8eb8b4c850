"""Graph rendering: DOT structure for rolled/unrolled views, nesting depths, branching, PNG output."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

import torchlens as tl
from torchlens import _options

from models import SimpleRecurrent
from models.small import Branching, Nested


def nodes_of(dot: str) -> dict[str, str]:
    """Node name -> attribute text, for node statements."""
    out = {}
    for m in re.finditer(r'^\s*"([^"]+)" (\[.*\])$', dot, re.M):
        out[m.group(1)] = m.group(2)
    return out


def edges_of(dot: str) -> dict[tuple[str, str], str]:
    return {(m.group(1), m.group(2)): m.group(3) for m in re.finditer(r'"([^"]+)" -> "([^"]+)" (\[.*\])', dot)}


def clusters_of(dot: str) -> list[str]:
    return re.findall(r'subgraph "(cluster_[^"]+)"', dot)


@pytest.fixture
def recurrent_log() -> tl.ModelLog:
    return tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), layers_to_save=None)


def test_rolled_recurrent(recurrent_log: tl.ModelLog) -> None:
    dot = recurrent_log.to_dot(vis_mode="rolled")
    nodes = nodes_of(dot)
    assert set(nodes) == {"input_1", "linear_1_1", "add_1_2", "mul_1_3", "output_1"}
    assert "linear_1_1 (x4)" in nodes["linear_1_1"]
    edges = edges_of(dot)
    assert set(edges) == {
        ("input_1", "linear_1_1"),
        ("linear_1_1", "add_1_2"),
        ("add_1_2", "mul_1_3"),
        ("mul_1_3", "linear_1_1"),
        ("mul_1_3", "output_1"),
    }
    assert 'headlabel="  In 1  "' in edges[("input_1", "linear_1_1")]
    assert 'headlabel="  In 2-4  "' in edges[("mul_1_3", "linear_1_1")]
    assert 'taillabel="  Out 1-3  "' in edges[("mul_1_3", "linear_1_1")]
    assert 'taillabel="  Out 4  "' in edges[("mul_1_3", "output_1")]
    assert 'taillabel="  Out 1-4  "' in edges[("linear_1_1", "add_1_2")]
    assert "headlabel" not in edges[("linear_1_1", "add_1_2")]
    # mul's edges vary across passes (its child is linear, then output), so edges into it carry In labels
    assert 'headlabel="  In 1-4  "' in edges[("add_1_2", "mul_1_3")]
    assert "taillabel" not in edges[("add_1_2", "mul_1_3")]
    assert 'fillcolor="#98FB98"' in nodes["input_1"] and 'fillcolor="#ff9999"' in nodes["output_1"]
    assert "rank=sink" in dot and 'rankdir="BT"' in dot
    assert "params: weight: (5x5), bias: (x5)" in nodes["linear_1_1"]


def test_unrolled_recurrent(recurrent_log: tl.ModelLog) -> None:
    dot = recurrent_log.to_dot(vis_mode="unrolled")
    nodes = nodes_of(dot)
    assert {f"linear_1_1pass{i}" for i in range(1, 5)} <= set(nodes)
    assert len(nodes) == 14
    edges = edges_of(dot)
    assert ("mul_1_3pass1", "linear_1_1pass2") in edges
    assert ("mul_1_3pass4", "output_1") in edges
    assert "@fc:2" in nodes["linear_1_1pass2"]
    assert "In " not in dot


def test_nesting_depths() -> None:
    log = tl.log_forward_pass(Nested(), torch.rand(3, 4), layers_to_save=None)
    full = log.to_dot(vis_nesting_depth=1000)
    assert set(clusters_of(full)) == {"cluster_block_pass1", "cluster_block.inner_pass1"}
    assert {"linear_1_1", "relu_1_2", "linear_2_3", "tanh_1_4", "linear_3_5", "mul_1_6"} <= set(nodes_of(full))
    depth2 = log.to_dot(vis_nesting_depth=2)
    n2 = nodes_of(depth2)
    assert "block.innerpass1" in n2 and "box3d" in n2["block.innerpass1"]
    assert "tanh_1_4" in n2 and "linear_1_1" not in n2
    assert ("block.innerpass1", "tanh_1_4") in edges_of(depth2)
    depth1 = log.to_dot(vis_nesting_depth=1)
    n1 = nodes_of(depth1)
    assert set(n1) == {"input_1", "blockpass1", "mul_1_6", "output_1"}
    assert "3 layers total" not in n1["blockpass1"] and "5 layers total" in n1["blockpass1"]
    assert set(edges_of(depth1)) == {("input_1", "blockpass1"), ("blockpass1", "mul_1_6"), ("mul_1_6", "output_1")}


def test_branching_model() -> None:
    log = tl.log_forward_pass(Branching(), torch.rand(3), layers_to_save=None)
    dot = log.to_dot()
    assert set(edges_of(dot)) == {
        ("input_1", "sin_1_1"),
        ("input_1", "cos_1_2"),
        ("sin_1_1", "mul_1_3"),
        ("cos_1_2", "mul_1_3"),
        ("mul_1_3", "output_1"),
    }
    assert log.is_branching
    assert "- with branching" in str(log)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` missing; `make deps` installs it")
def test_render_png(tmp_path: Path) -> None:
    log = tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), layers_to_save=None)
    for mode in ("rolled", "unrolled"):
        src = log.render_graph(
            vis_mode=mode, vis_outpath=str(tmp_path / mode), vis_fileformat="png", vis_save_only=True
        )
        png = tmp_path / f"{mode}.png"
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        assert src.startswith('digraph "SimpleRecurrent"')
        assert not (tmp_path / mode).exists()  # the DOT source file is removed after rendering


def test_show_model_graph_and_options(tmp_path: Path) -> None:
    out = tmp_path / "g"
    tl.show_model_graph(
        SimpleRecurrent(), torch.rand(6, 5), vis_outpath=str(out), vis_fileformat="svg", vis_save_only=True
    )
    assert (tmp_path / "g.svg").read_text().lstrip().startswith("<?xml")
    opts = tl.VisualizationOptions(mode="rolled", output_path=str(tmp_path / "v"), file_format="svg", save_only=True)
    tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), visualization=opts)
    assert (tmp_path / "v.svg").exists()
    where = tl.VisualizationOptions(output_path=str(tmp_path / "w"), file_format="svg", save_only=True)
    _options._warned.clear()  # the deprecation warning fires once per process; earlier tests may have used it
    with pytest.warns(DeprecationWarning, match="vis_mode"):
        tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), vis_mode="rolled", visualization=where)
    assert (tmp_path / "w.svg").exists()
    with pytest.raises(ValueError, match="Visualization option"):
        tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), visualization=tl.VisualizationOptions(mode="bad"))
    with pytest.raises(TypeError, match="do not pass both|Do not pass both"):
        tl.log_forward_pass(SimpleRecurrent(), torch.rand(6, 5), visualization=opts, vis_mode="rolled")
