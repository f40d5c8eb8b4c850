"""Node-mode presets, the code panel, big-graph SVG anchors, and `collapse_fn` / `skip_fn` on a real
model (spec §12.4-12.5), checked on the DOT source (and the SVG graphviz makes of it)."""

from __future__ import annotations

import html
import inspect
import re
import subprocess
import sys
from typing import Any

import pytest
import torch
import torchvision

import torchlens as tl
import torchlens.viz._build as viz_build

from models.small import SeqThenLoop
from models.viz import SmallConv, TinyAttention

_NODE = re.compile(r'^\s*"([^"]+)" \[(.*)\]$')
_EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)"')


def _nodes(dot: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in map(_NODE.match, dot.splitlines()) if m and "->" not in m.group(0)}


def _rows(attrs: str) -> list[str]:
    return [html.unescape(r) for r in re.findall(r'<TD ALIGN="CENTER">(.*?)</TD>', attrs)]


def _edges(dot: str) -> set[tuple[str, str]]:
    return {(m.group(1), m.group(2)) for m in map(_EDGE.match, dot.splitlines()) if m}


def _line_of(cls: type, text: str) -> int:
    """Line number (in its file) of the first line of `cls`'s source that contains `text`."""
    lines, start = inspect.getsourcelines(cls)
    return start + next(i for i, line in enumerate(lines) if text in line)


def _resnet_log() -> Any:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    return tl.log_forward_pass(model, torch.randn(1, 3, 64, 64), layers_to_save=None)


# --------------------------------------------------------------------------- presets


def test_profiling_rows_then_node_spec_fn() -> None:
    log = tl.log_forward_pass(SmallConv(), torch.randn(1, 3, 8, 8))
    added: list[str] = []

    def spec_fn(layer: Any, spec: tl.NodeSpec) -> tl.NodeSpec:
        added.append(layer.layer_label)
        return spec.replace(lines=[*spec.lines, f"mine:{layer.layer_label}"])

    nodes = {k: _rows(v) for k, v in _nodes(log.to_dot(node_mode="profiling", node_spec_fn=spec_fn)).items()}
    line = _line_of(SmallConv, "self.pool(torch.relu(self.conv(x)))")
    for label in ("conv2d_1_1", "relu_1_2", "maxpool2d_1_3"):
        e = log[label]
        tail = [
            f"t={e.func_time * 1000:.2f}ms",
            f"out={e.tensor_memory}B",
            f"call=viz.py:{line}",
            "fn=SmallConv.forward",
            f"mine:{label}",
        ]
        assert nodes[label][-5:] == tail  # the preset's rows come before node_spec_fn's
    fc = log["linear_1_5"]
    assert nodes["linear_1_5"][-3:-1] == [f"call=viz.py:{line + 1}", "fn=SmallConv.forward"]
    assert nodes["linear_1_5"][:2] == ["linear_1_5", "1x2 (8 B)"] and fc.tensor_memory == 8
    inp = log["input_1"]
    assert nodes["input_1"][-4:] == [f"t={inp.func_time * 1000:.2f}ms", "out=768B", "fn=none", "mine:input_1"]
    assert added == ["input_1", "conv2d_1_1", "relu_1_2", "maxpool2d_1_3", "flatten_1_4", "linear_1_5", "output_1"]
    assert log.to_dot(node_mode="default") == log.to_dot()


def test_profiling_rolled_uses_the_layer() -> None:
    log = tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3))
    nodes = {k: _rows(v) for k, v in _nodes(log.to_dot("rolled", node_mode="profiling")).items()}
    passes = log.layer_logs["linear_2_3"].passes
    total = (passes[1].func_time + passes[2].func_time) * 1000
    assert nodes["linear_2_3"][0] == "linear_2_3 (x2)"
    assert f"t={total:.2f}ms" in nodes["linear_2_3"] and "out=32B" in nodes["linear_2_3"]  # time over both passes
    relu = log.layer_logs["relu_1_2"]
    assert f"t={relu.func_time * 1000:.2f}ms" in nodes["relu_1_2"]


def test_vision_rows_on_resnet18() -> None:
    log = _resnet_log()
    nodes = {k: _rows(v) for k, v in _nodes(log.to_dot(node_mode="vision")).items()}
    with_rows = {k: [r for r in rows if r.startswith("in=")] for k, rows in nodes.items()}
    with_rows = {k: v for k, v in with_rows.items() if v}
    spatial = [e for e in log.layer_list if e.layer_type in ("conv2d", "maxpool2d", "adaptiveavgpool2d")]
    assert len(spatial) == 22  # 20 convolutions, the max pool, the average pool
    assert set(with_rows) == {e.layer_label for e in spatial}
    for e in spatial:
        parent = log[e.parent_layers[0]]
        ins, outs = ("x".join(map(str, s)) for s in (parent.tensor_shape, e.tensor_shape))
        assert with_rows[e.layer_label] == [f"in={ins} out={outs}"]
    assert with_rows["conv2d_1_1"] == ["in=1x3x64x64 out=1x64x32x32"]
    assert with_rows["maxpool2d_1_4"] == ["in=1x64x32x32 out=1x64x16x16"]


def test_attention_rows() -> None:
    log = tl.log_forward_pass(TinyAttention(), torch.randn(1, 4, 8))
    nodes = _nodes(log.to_dot(node_mode="attention"))
    marks = {k: [r for r in _rows(v) if r.startswith("(")] for k, v in nodes.items()}
    marks = {k: v for k, v in marks.items() if v}
    by_type = {(log[k].layer_type, tuple(v)) for k, v in marks.items()}
    assert by_type == {
        ("linear", ("(role=qkv)",)),
        ("linear", ("(role=out)",)),
        ("softmax", ("(attn-softmax)",)),
        ("scaleddotproductattention", ("(attention)",)),
    }
    softmaxes = [e.layer_label for e in log.layer_list if e.layer_type == "softmax"]
    assert len(softmaxes) == 1 and marks[softmaxes[0]] == ["(attn-softmax)"]  # ours, fed by a matmul
    sdpa = [e.layer_label for e in log.layer_list if e.layer_type == "scaleddotproductattention"]
    assert len(sdpa) == 2 and all(marks[k] == ["(attention)"] for k in sdpa)  # inside the MHA, and ours
    roles = sorted(marks[k][0] for k in marks if log[k].layer_type == "linear")
    assert roles == ["(role=out)", "(role=qkv)"]
    assert all('fillcolor="#FFE8B3"' in nodes[k] for k in marks if log[k].layer_type != "linear")
    q_proj = next(
        e.layer_label for e in log.layer_list if e.layer_type == "linear" and "@q" in _rows(nodes[e.layer_label])
    )
    assert q_proj not in marks  # a linear outside the attention module is not a projection


def test_bad_node_mode() -> None:
    log = tl.log_forward_pass(SmallConv(), torch.randn(1, 3, 8, 8), layers_to_save=None)
    with pytest.raises(ValueError, match="node_mode must be one of"):
        log.to_dot(node_mode="fancy")


# --------------------------------------------------------------------------- code panel


def _panel_lines(dot: str) -> list[str]:
    panel = next(line for line in dot.splitlines() if '"__tl_code_panel_node"' in line)
    rows = [html.unescape(r) for r in re.findall(r"<FONT FACE='Courier'>(.*?)</FONT>", panel)]
    return [r.replace("\xa0", "") for r in rows]  # an empty line is drawn as a non-breaking space


def test_code_panel_kinds() -> None:
    model = SmallConv()
    log = tl.log_forward_pass(model, torch.randn(1, 3, 8, 8), layers_to_save=None)
    forward = inspect.getsource(SmallConv.forward).strip("\n").splitlines()
    init = inspect.getsource(SmallConv.__init__).strip("\n").splitlines()
    dedent = len(forward[0]) - len(forward[0].lstrip())
    assert _panel_lines(log.to_dot(code_panel=True)) == [line[dedent:] for line in forward]
    assert _panel_lines(log.to_dot(code_panel="forward")) == [line[dedent:] for line in forward]
    assert "        x = self.pool(torch.relu(self.conv(x)))"[dedent:] in _panel_lines(log.to_dot(code_panel=True))
    assert _panel_lines(log.to_dot(code_panel="class")) == inspect.getsource(SmallConv).strip("\n").splitlines()
    both = _panel_lines(log.to_dot(code_panel="init+forward"))
    assert both == [line[dedent:] for line in init] + [""] + [line[dedent:] for line in forward]
    seen: list[Any] = []
    assert _panel_lines(log.to_dot(code_panel=lambda m: seen.append(m) or "hello\nworld")) == ["hello", "world"]
    assert seen == [model]
    dot = log.to_dot(code_panel=True)
    assert dot.startswith(log.to_dot().rsplit("}", 1)[0]) and dot.endswith("}")
    with pytest.raises(ValueError, match="code_panel must be"):
        log.to_dot(code_panel="everything")


def test_code_panel_is_the_source_at_log_time(tmp_path: Any) -> None:
    path = tmp_path / "panel_model.py"
    path.write_text(
        "import torch\n\n\nclass Net(torch.nn.Module):\n    def forward(self, x):\n        return x.exp() + 1\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        import panel_model

        model = panel_model.Net()
        log = tl.log_forward_pass(model, torch.randn(3), layers_to_save=None)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("panel_model", None)
    path.write_text("# rewritten after logging\n")
    assert _panel_lines(log.to_dot(code_panel=True)) == ["def forward(self, x):", "    return x.exp() + 1"]
    del model
    with pytest.raises(ValueError, match="needs the logged model"):
        log.to_dot(code_panel=lambda m: "x")


def test_code_panel_renders_to_svg(tmp_path: Any) -> None:
    log = tl.log_forward_pass(SmallConv(), torch.randn(1, 3, 8, 8), layers_to_save=None)
    out = tmp_path / "panel"
    src = log.render_graph(
        vis_outpath=str(out), vis_fileformat="svg", vis_save_only=True, code_panel=True, vis_node_placement="sfdp"
    )
    svg = (tmp_path / "panel.svg").read_text()
    assert "cluster_torchlens_code_panel" in src
    assert "x = self.pool(torch.relu(self.conv(x)))" in html.unescape(svg)
    assert "linear_1_5" in svg


# --------------------------------------------------------------------------- collapse_fn, skip_fn, big graphs


def test_collapse_fn_on_resnet_collapses_the_chosen_modules_only() -> None:
    log = _resnet_log()
    dot = log.to_dot(collapse_fn=lambda m: m.address.startswith("layer2."))
    nodes = _nodes(dot)
    boxes = {k for k, v in nodes.items() if 'shape="box3d"' in v}
    assert boxes == {"layer2.0pass1", "layer2.1pass1"}
    shown = [e for e in log.layer_list if not e.is_buffer_layer]  # BatchNorm's statistics are hidden
    inside = {e.layer_label for e in shown if any(m.startswith("layer2.") for m in e.containing_modules)}
    outside = {e.layer_label for e in shown} - inside
    assert inside and not inside & set(nodes)
    assert outside == set(nodes) - boxes
    assert ("layer2.0pass1", "layer2.1pass1") in _edges(dot)


def _reach(edges: set[tuple[str, str]]) -> dict[str, set[str]]:
    kids: dict[str, set[str]] = {}
    for a, b in edges:
        kids.setdefault(a, set()).add(b)
    out: dict[str, set[str]] = {}
    for start in {a for a, _ in edges} | {b for _, b in edges}:
        seen, stack = set(), [start]
        while stack:
            for k in kids.get(stack.pop(), ()):
                if k not in seen:
                    seen.add(k)
                    stack.append(k)
        out[start] = seen
    return out


def test_skip_fn_on_resnet_keeps_every_surviving_path() -> None:
    log = _resnet_log()
    skipped = {"relu", "batchnorm", "add"}
    dot = log.to_dot(skip_fn=lambda layer: layer.layer_type in skipped)
    full = _reach(_edges(log.to_dot()))
    drawn = set(_nodes(dot))
    assert drawn == {e.layer_label for e in log.layer_list if e.layer_type not in skipped and not e.is_buffer_layer}
    new = _reach(_edges(dot))
    for a in drawn:
        assert new.get(a, set()) == full.get(a, set()) & drawn, a  # the same paths, nothing more, nothing less
    assert ("conv2d_1_1", "maxpool2d_1_4") in _edges(dot)


def test_auto_collapse_keeps_module_boxes_clickable(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _resnet_log()
    assert "URL=" not in log.to_dot()  # small graphs are left as they are
    monkeypatch.setattr(viz_build, "AUTO_COLLAPSE_NODES", 40)
    with pytest.warns(UserWarning, match="Graph has 111 nodes; collapsing modules below nesting depth 2"):
        dot = log.to_dot()
    nodes = _nodes(dot)
    blocks = [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    outside = [
        e.layer_label
        for e in log.layer_list
        if not e.is_buffer_layer and not any(m.rsplit(":", 1)[0] in blocks for m in e.containing_modules)
    ]
    assert set(nodes) == {f"{b}pass1" for b in blocks} | set(outside)
    for name, attrs in nodes.items():
        assert f'id="{name}"' in attrs and f'URL="#{name}"' in attrs and "tooltip=" in attrs
    ops = [e.layer_label for e in log.layer_list if not e.is_buffer_layer and "layer1.0:1" in e.containing_modules]
    assert len(ops) == 7  # conv, bn, relu, conv, bn, add, relu
    assert f'tooltip="@layer1.0 (BasicBlock): {", ".join(ops)}"' in nodes["layer1.0pass1"]
    assert 'tooltip="relu_1_3"' in nodes["relu_1_3"]
    svg = subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True).stdout.decode()
    assert '<g id="layer1.0pass1" class="node">' in svg and 'xlink:href="#layer1.0pass1"' in svg
    assert 'xlink:title="@layer1.0 (BasicBlock): conv2d_2_5' in svg
