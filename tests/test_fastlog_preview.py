"""`ModelLog.preview_fastlog` / `tl.preview_fastlog` and `Recording.to_model_log` (spec §10.8, issue 14).

The preview's decisions are checked against what `tl.fastlog.record` / `dry_run` really do on the same
model and input; activations of `to_model_log` against the recorded payloads and a real log.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlens as tl
from torchlens.fastlog import CaptureSpec
from torchlens.fastlog._preview_events import decide_events

from models.fastlog_preview import IdentityBN, LoopMLP, SmallCNN

KEPT, REJECTED, UNREACH, ERR = "#98FB98", "#E6E6E6", "#F7D460", "#FF7AB6"
_NODE = re.compile(r'^\s*"([^"]+)" \[label=<<TABLE[^>]*><TR><TD ALIGN="CENTER">([^<]*)</TD>(.*?)</TABLE>> (.*)\]$')
_FIELDS = (
    "kind label raw_label event_index op_index layer_type layer_type_num creation_order func_name module_address "
    "module_type module_pass_index parent_labels output_index is_bottom_level_func tensor_shape tensor_dtype "
    "tensor_device tensor_requires_grad pass_index"
).split()


def _cnn() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    return SmallCNN().eval(), torch.randn(2, 3, 8, 8)


def _mlp() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    return LoopMLP(), torch.randn(4, 6)


def _nodes(dot: str) -> dict[str, tuple[str, str, str]]:
    """node title (layer label) -> (fill colour, rows after the title, DOT node name)."""
    out = {}
    for line in dot.splitlines():
        m = _NODE.match(line)
        if m:
            fill = re.search(r'fillcolor="([^"]*)"', m.group(4))
            out[m.group(2)] = (fill.group(1) if fill else "", m.group(3), m.group(1))
    return out


def _clusters(dot: str) -> dict[str, str]:
    """cluster name -> its `color` attribute."""
    out = {}
    lines = dot.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r'\s*subgraph "cluster_([^"]+)" \{', line)
        if m:
            c = re.search(r' color="([^"]*)"', lines[i + 1])
            out[m.group(1)] = c.group(1) if c else ""
    return out


PREDICATES = {
    "relu": lambda c: c.layer_type == "relu",
    "in_module": lambda c: (c.module_address or "").startswith(("block", "cell")),
    "shape": lambda c: c.tensor_shape is not None and c.tensor_shape[-1] == 8,
    "parents": lambda c: any(p.startswith(("conv2d", "tanh")) for p in c.parent_labels),
    "module_pass": lambda c: c.module_pass_index == 2 or c.layer_type == "flatten",
    "history": lambda c: len(c.recent_ops) > 1 and c.recent_ops[-1].layer_type in ("linear", "relu"),
    "event_index": lambda c: c.event_index % 3 == 0,
    "op_index_spec": lambda c: CaptureSpec(save_activation=False) if c.op_index % 2 else None,
}


@pytest.mark.parametrize("make", [_cnn, _mlp], ids=["cnn", "mlp"])
@pytest.mark.parametrize("name", sorted(PREDICATES))
def test_preview_keeps_what_record_keeps(make: Any, name: str) -> None:
    model, x = make()
    pred = PREDICATES[name]
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    nodes = _nodes(log.preview_fastlog(pred, vis_outpath=None))
    kept = {log[label].tensor_label_raw for label, (fill, _, _) in nodes.items() if fill == KEPT}
    recording = tl.fastlog.record(model, x, keep_op=pred)
    assert kept == {r.ctx.raw_label for r in recording}
    assert kept, name  # every predicate keeps something on both models
    assert {label for label, (fill, _, _) in nodes.items() if fill == REJECTED} == {
        e.layer_label for e in log.layer_list if not (e.is_input_layer or e.is_output_layer or e.is_buffer_layer)
    } - {label for label, (fill, _, _) in nodes.items() if fill == KEPT}


@pytest.mark.parametrize("make", [_cnn, _mlp], ids=["cnn", "mlp"])
def test_contexts_match_the_recorder(make: Any) -> None:
    model, x = make()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    seen: dict[str, dict[str, Any]] = {}

    def spy(c: Any) -> bool:
        seen[c.raw_label if c.kind != "module_enter" else c.label] = {f: getattr(c, f) for f in _FIELDS} | {
            "recent": [(e.kind, e.label) for e in c.recent_events],
            "stack": [(f.module_address, f.module_type, f.pass_index) for f in c.module_stack],
        }
        return False

    tl.fastlog.dry_run(model, x, keep_op=spy, keep_module=spy, history_size=5, include_source_events=True)
    real = dict(seen)
    seen.clear()
    decisions = decide_events(log, spy, spy, history_size=5, include_source_events=True)
    assert set(decisions.nodes.values()) == {"rejected", "unreachable"}
    inputs = [k for k in real if k.startswith("input_")]
    for k in inputs:  # the log names inputs by argument (input.x), fastlog by position (input.0)
        assert real[k].pop("input_output_address", None) is None
    assert seen == real
    assert len(real) == (28 if isinstance(model, SmallCNN) else 37)  # every event, module enter/exit included


def _rows_raw(rows: str) -> str:
    m = re.search(r">(?:op|input|buffer) (\S+) \[", rows)
    assert m is not None, rows
    return m.group(1)


def test_identity_nodes_and_orphans_keep_fastlog_numbering() -> None:
    # log_forward_pass adds identity_1_2 (no fastlog event) and drops BN's num_batches_tracked update
    # (an orphan fastlog does see): later fastlog labels are numbered differently from the log's.
    torch.manual_seed(2)
    model, x = IdentityBN(), torch.randn(5, 4)
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    assert log["batchnorm_1_3"].tensor_label_raw == "batchnorm_1_8_raw"
    for pred in (lambda c: True, lambda c: c.event_index > 10, lambda c: c.op_index in (2, 3)):
        nodes = _nodes(log.preview_fastlog(pred, vis_outpath=None))
        kept = {_rows_raw(rows) for fill, rows, _ in nodes.values() if fill == KEPT}
        recorded = {r.ctx.raw_label for r in tl.fastlog.record(model, x, keep_op=pred)}
        assert kept == recorded - {"add_1_4_raw"}
    nodes = _nodes(log.preview_fastlog(lambda c: True, vis_outpath=None))
    assert nodes["identity_1_2"][0] == UNREACH
    assert _rows_raw(nodes["batchnorm_1_3"][1]) == "batchnorm_1_7_raw"
    assert _rows_raw(nodes["linear_2_5"][1]) == "linear_2_9_raw"


def test_unreachable_and_source_events() -> None:
    model, x = _cnn()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    nodes = _nodes(log.preview_fastlog(lambda c: True, vis_outpath=None, show_buffer_layers="always"))
    assert nodes["input_1"][0] == UNREACH and nodes["output_1"][0] == UNREACH
    assert nodes["buffer_1"][0] == UNREACH and nodes["conv2d_1_1"][0] == KEPT
    nodes = _nodes(
        log.preview_fastlog(
            lambda c: c.kind != "op", vis_outpath=None, show_buffer_layers="always", include_source_events=True
        )
    )
    assert nodes["input_1"][0] == KEPT and nodes["buffer_2"][0] == KEPT and nodes["relu_1_2"][0] == REJECTED
    assert "input input_1_1_raw []" in nodes["input_1"][1] and "fastlog: kept" in nodes["input_1"][1]


def test_predicate_error_colour_and_custom_colours() -> None:
    model, x = _mlp()
    log = tl.log_forward_pass(model, x, layers_to_save=None)

    def boom(c: Any) -> bool:
        if c.layer_type == "tanh":
            raise KeyError("no tanh here")
        return c.layer_type == "add"

    nodes = _nodes(tl.preview_fastlog(log, keep_op=boom, vis_outpath=None))
    assert {k for k, v in nodes.items() if v[0] == ERR} == {"tanh_1_4:1", "tanh_1_4:2", "tanh_1_4:3"}
    assert {k for k, v in nodes.items() if v[0] == KEPT} == {"add_1_5:1", "add_1_5:2", "add_1_5:3"}
    assert "fastlog: predicate raised (KeyError: 'no tanh here')" in nodes["tanh_1_4:2"][1]
    assert "tooltip=\"KeyError: 'no tanh here'\"" in tl.preview_fastlog(log, keep_op=boom, vis_outpath=None)
    bad = _nodes(log.preview_fastlog(lambda c: "yes", vis_outpath=None, color_predicate_error="#123456"))
    assert bad["linear_1_1"][0] == "#123456"
    plain = _nodes(
        log.preview_fastlog(
            predicate=lambda c: c.layer_type == "relu",
            color_kept="#00FF00",
            color_rejected="#0000FF",
            color_unreachable="#FF0000",
            show_predicate_inputs=False,
            vis_outpath=None,
        )
    )
    assert plain["relu_1_2"] == ("#00FF00", '</TR><TR><TD ALIGN="CENTER">4x8 (128 B)</TD></TR>', "relu_1_2")
    assert plain["linear_3_6"][0] == "#0000FF" and plain["output_1"][0] == "#FF0000"


def test_rolled_layers_merge_their_passes() -> None:
    model, x = _mlp()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    nodes = _nodes(log.preview_fastlog(lambda c: c.module_pass_index == 2, vis_outpath=None, vis_mode="rolled"))
    assert nodes["linear_2_3 (x3)"][0] == KEPT
    assert "fastlog: kept in 1/3 passes" in nodes["linear_2_3 (x3)"][1]
    assert nodes["add_1_5 (x3)"][0] == REJECTED


def test_keep_module_colours_clusters() -> None:
    model, x = _mlp()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    keep_module = lambda c: c.module_address == "cell" and c.module_pass_index != 2  # noqa: E731
    dot = log.preview_fastlog(keep_op=lambda c: False, keep_module=keep_module, vis_outpath=None)
    recording = tl.fastlog.record(model, x, keep_op=lambda c: False, keep_module=keep_module)
    kept = {f"{r.ctx.module_address}_pass{r.ctx.module_pass_index}" for r in recording}
    clusters = _clusters(dot)
    assert kept == {"cell_pass1", "cell_pass3"}
    assert {k for k, v in clusters.items() if v == KEPT} == kept
    assert clusters["cell_pass2"] == REJECTED
    assert "color=" not in dot.split('"cluster_cell_pass1"')[0].split("subgraph")[-1]  # only clusters changed
    none = log.preview_fastlog(
        keep_op=lambda c: False, keep_module=keep_module, vis_outpath=None, show_module_events=False
    )
    assert all(v == "" for v in _clusters(none).values()) and _clusters(none)
    boxes = _nodes(log.preview_fastlog(keep_module=keep_module, vis_outpath=None, vis_nesting_depth=1))
    assert boxes["@cell:1"][0] == KEPT and boxes["@cell:2"][0] == REJECTED
    assert "fastlog module: kept" in boxes["@cell:3"][1]


def test_user_hooks_still_apply() -> None:
    model, x = _cnn()
    log = tl.log_forward_pass(model, x, layers_to_save=None)

    def mark(layer_log: Any, spec: Any) -> Any:
        return spec.replace(lines=[*spec.lines, f"user:{layer_log.layer_type}"])

    nodes = _nodes(log.preview_fastlog(lambda c: c.layer_type == "conv2d", vis_outpath=None, node_spec_fn=mark))
    assert "user:conv2d" in nodes["conv2d_2_3"][1] and nodes["conv2d_2_3"][0] == KEPT


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` missing; `make deps` installs it")
def test_renders_to_file(tmp_path: Path) -> None:
    model, x = _cnn()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    out = tmp_path / "preview"
    dot = log.preview_fastlog(
        lambda c: c.layer_type == "relu", vis_outpath=str(out), vis_save_only=True, vis_fileformat="svg"
    )
    svg = (tmp_path / "preview.svg").read_text()
    assert "relu_2_5" in svg and KEPT.lower() in svg.lower()
    assert _nodes(dot)["relu_2_5"][0] == KEPT


def test_bad_arguments() -> None:
    model, x = _cnn()
    log = tl.log_forward_pass(model, x, layers_to_save=None)
    with pytest.raises(NotImplementedError, match="dagua"):
        log.preview_fastlog(lambda c: True, vis_renderer="dagua")
    with pytest.raises(ValueError, match="not both"):
        log.preview_fastlog(lambda c: True, keep_op=lambda c: True)
    with pytest.raises(ValueError, match="history_size"):
        log.preview_fastlog(lambda c: True, vis_outpath=None, history_size=2000)


# --------------------------------------------------------------------------- Recording.to_model_log


def test_to_model_log_from_ram() -> None:
    model, x = _mlp()
    keep = lambda c: c.layer_type in ("tanh", "relu")  # noqa: E731
    recording = tl.fastlog.record(model, x, keep_op=keep)
    log = recording.to_model_log(model, x)
    assert log.layers_with_saved_activations == ["relu_1_2", "tanh_1_4:1", "tanh_1_4:2", "tanh_1_4:3"]
    by_raw = {r.ctx.raw_label: r.ram_payload for r in recording}
    for label in log.layers_with_saved_activations:
        assert torch.equal(log[label].activation, by_raw[log[label].tensor_label_raw])
    full = tl.log_forward_pass(model, x)
    for label in log.layers_with_saved_activations:
        assert torch.equal(log[label].activation, full[label].activation)
    assert log["linear_2_3:2"].activation is None and log.layer_list[-1].layer_label == "output_1"


def test_to_model_log_from_loaded_bundle(tmp_path: Path) -> None:
    model, x = _cnn()
    keep = lambda c: c.module_address == "block.1" or c.layer_type == "linear"  # noqa: E731
    opts = tl.StreamingOptions(bundle_path=str(tmp_path / "acts.tlfast"), retain_in_memory=True)
    with tl.fastlog.Recorder(model, keep_op=keep, streaming=opts) as rec:
        rec.log(x)
    loaded = tl.fastlog.load(rec.recording.bundle_path)
    assert all(r.disk_payload is None for r in loaded)
    log = loaded.to_model_log(model, x)
    assert log.layers_with_saved_activations == ["batchnorm_1_4", "linear_1_9"]
    ram = {r.ctx.raw_label: r.ram_payload for r in rec.recording}
    assert torch.equal(log["batchnorm_1_4"].activation, ram["batchnorm_1_7_raw"])
    assert torch.equal(log["linear_1_9"].activation, ram["linear_1_12_raw"])


def test_to_model_log_second_pass_and_state() -> None:
    model, x = _cnn()
    model.train()
    x2 = torch.randn(2, 3, 8, 8)
    with tl.fastlog.Recorder(model, keep_op=lambda c: c.layer_type == "relu") as rec:
        rec.log(x)
        rec.log(x2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    log = rec.recording.to_model_log(model, x2, pass_index=2)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    second = [r for r in rec.recording.iter_pass(2)]
    assert [r.ctx.raw_label for r in second] == ["relu_1_3_raw", "relu_2_10_raw"]
    assert torch.equal(log["relu_1_2"].activation, second[0].ram_payload)
    assert torch.equal(log["relu_2_5"].activation, second[1].ram_payload)


def test_to_model_log_graph_mismatch() -> None:
    model, x = _cnn()
    recording = tl.fastlog.record(model, x, keep_op=lambda c: c.layer_type == "flatten")
    with pytest.raises(ValueError, match="does not match the graph"):
        recording.to_model_log(model, torch.randn(2, 3, 8, 8)[:1])
    with pytest.raises(ValueError, match="no pass 3"):
        recording.to_model_log(model, x, pass_index=3)
