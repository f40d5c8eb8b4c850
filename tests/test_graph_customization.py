"""Graph customization of 2.15 (spec §12.3-12.5): `NodeSpec`, `render_lines_to_html`, `node_spec_fn`,
`collapsed_node_spec_fn`, `skip_fn`, `collapse_fn`, edge and module overrides, on the DOT source."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import torchlens as tl

from models.small import Nested, SeqThenLoop


def test_node_spec_and_html() -> None:
    spec = tl.NodeSpec(lines=["a", "b<c>"])
    assert spec.shape == "box" and spec.style == "filled,rounded" and spec.fillcolor is None
    other = spec.replace(shape="oval", fillcolor="red")
    assert (other.shape, other.fillcolor, other.lines) == ("oval", "red", ["a", "b<c>"]) and spec.shape == "box"
    assert tl.render_lines_to_html(["a", "b<c> & d"]) == (
        '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">'
        '<TR><TD ALIGN="CENTER">a</TD></TR><TR><TD ALIGN="CENTER">b&lt;c&gt; &amp; d</TD></TR></TABLE>>'
    )
    a, b = tl.NodeSpec(lines=[]), tl.NodeSpec(lines=[])
    assert a.extra_attrs == {} and a.extra_attrs is not b.extra_attrs  # `extra_attrs={}` is a fresh dict each time
    assert tl.render_lines_to_html([]) == '<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2"></TABLE>>'


def _nodes(dot: str) -> dict[str, str]:
    out = {}
    for line in dot.splitlines():
        line = line.strip()
        if line.startswith('"') and "->" not in line and "[" in line:
            name, rest = line.split(" ", 1)
            out[name.strip('"')] = rest
    return out


def _edges(dot: str) -> dict[tuple[str, str], str]:
    out = {}
    for line in dot.splitlines():
        line = line.strip()
        if "->" in line:
            a, rest = line.split(" -> ", 1)
            b, attrs = rest.split(" ", 1)
            out[(a.strip('"'), b.strip('"'))] = attrs
    return out


def test_node_spec_fn_and_collapsed_spec_fn() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    seen: list[tuple[str, str, tuple[str, ...]]] = []

    def node_fn(layer: Any, spec: tl.NodeSpec) -> tl.NodeSpec | None:
        seen.append((type(layer).__name__, layer.layer_label, tuple(spec.lines)))
        if layer.layer_label == "sum_1_4":
            return spec.replace(fillcolor="gold", lines=[*spec.lines, "the loss"])
        spec.tooltip = spec.lines[0]  # in-place change, None returned: kept
        return None

    boxes: list[tuple[str, str, tuple[str, ...]]] = []

    def box_fn(module: Any, spec: tl.NodeSpec) -> tl.NodeSpec:
        boxes.append((type(module).__name__, module.address, tuple(spec.lines)))
        return spec.replace(fillcolor="pink")

    dot = log.to_dot(vis_nesting_depth=1, node_spec_fn=node_fn, collapsed_node_spec_fn=box_fn)
    nodes = _nodes(dot)
    assert [s[:2] for s in seen] == [
        ("LayerLog", "input_1"),
        ("LayerLog", "linear_2_3"),
        ("LayerLog", "linear_2_3"),
        ("LayerLog", "sum_1_4"),
        ("LayerLog", "output_1"),
    ]
    assert seen[1][2] == ("linear_2_3:1", "2x4 (32 B)", "params: weight: (4x4), bias: (x4)", "@fc:1")
    assert boxes == [
        ("ModuleLog", "seq", ("@seq", "Sequential", "2x4 (32 B)", "2 layers total", "16 params (all trainable)"))
    ]
    assert 'fillcolor="gold"' in nodes["sum_1_4"] and "the loss" in nodes["sum_1_4"]
    assert 'tooltip="linear_2_3:2"' in nodes["linear_2_3pass2"]
    assert 'shape="box3d" fillcolor="pink"' in nodes["seqpass1"]
    with pytest.raises(TypeError, match="node_spec_fn must return a NodeSpec"):
        log.to_dot(node_spec_fn=lambda layer, spec: "red")


def test_skip_fn_chains_edges() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    asked: list[str] = []

    def skip(layer: Any) -> bool:
        asked.append(layer.layer_label)
        return layer.layer_label in ("relu_1_2", "linear_2_3")

    dot = log.to_dot(skip_fn=skip)
    assert asked == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "sum_1_4", "output_1"]  # once per layer
    assert set(_nodes(dot)) == {"input_1", "linear_1_1", "sum_1_4", "output_1"}
    assert set(_edges(dot)) == {("input_1", "linear_1_1"), ("linear_1_1", "sum_1_4"), ("sum_1_4", "output_1")}


def test_collapse_fn_replaces_depth_rule() -> None:
    log = tl.log_forward_pass(Nested(), torch.randn(2, 4), layers_to_save=None)
    asked: list[str] = []

    def collapse(module: Any) -> bool:
        asked.append(module.address)
        return module.address == "block.inner"

    dot = log.to_dot(collapse_fn=collapse)
    nodes = _nodes(dot)
    assert "block.innerpass1" in nodes and 'shape="box3d"' in nodes["block.innerpass1"]
    assert "3 layers total" in nodes["block.innerpass1"]
    assert "linear_1_1" not in nodes and "tanh_1_4" in nodes and "linear_3_5" in nodes
    assert sorted(set(asked)) == ["block", "block.inner"]  # leaf modules are never asked
    assert dot == log.to_dot(collapse_fn=collapse, vis_nesting_depth=1)  # the depth no longer matters


def test_edge_and_module_overrides() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3), layers_to_save=None)
    calls: list[tuple[str, str]] = []

    def color(model_log: Any, parent: Any, child: Any) -> str:
        assert model_log is log
        calls.append((parent.layer_label, child.layer_label))
        return "blue" if child.layer_label == "sum_1_4" else "black"

    clusters: list[str] = []

    def width(model_log: Any, name: str) -> str:
        clusters.append(name)
        return "7"

    dot = log.to_dot(
        vis_edge_overrides={"color": color, "penwidth": "2"},
        vis_module_overrides={"penwidth": width, "bgcolor": "grey"},
    )
    edges = _edges(dot)
    assert (
        'color="blue"' in edges[("linear_2_3pass2", "sum_1_4")] and 'penwidth="2"' in edges[("input_1", "linear_1_1")]
    )
    assert calls == [
        ("input_1", "linear_1_1"),
        ("linear_1_1", "relu_1_2"),
        ("relu_1_2", "linear_2_3:1"),
        ("linear_2_3:1", "linear_2_3:2"),
        ("linear_2_3:2", "sum_1_4"),
        ("sum_1_4", "output_1"),
    ]
    assert 'color="black"' in edges[("input_1", "linear_1_1")]
    assert clusters == ["seq:1"]  # leaf modules with one op draw no cluster
    assert 'penwidth="7" bgcolor="grey"]' in dot
    clusters.clear()
    nested = tl.log_forward_pass(Nested(), torch.randn(2, 4), layers_to_save=None)
    unrolled = nested.to_dot(vis_module_overrides={"penwidth": width})
    assert clusters == ["block:1", "block.inner:1"] and unrolled.count('penwidth="7"]') == 2
    clusters.clear()
    nested.to_dot(vis_mode="rolled", vis_module_overrides={"penwidth": width})
    assert clusters == ["block", "block.inner"]
