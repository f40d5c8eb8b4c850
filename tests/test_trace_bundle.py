"""Multi-trace bundles (spec §12.7): supergraph matching, divergence metrics, groups, loaded
bundles and `show_bundle_graph`, on real models."""

from __future__ import annotations

import copy
import inspect
import re

import pytest
import torch

import torchlens as tl
from torchlens import _core
from torchlens.viz._bundle_graph import REDS, TAB10, VIRIDIS

from models.trace_bundle import BranchNet, LoopNet, SmallCNN

CNN_LABELS = ["input_1", "conv2d_1_1", "relu_1_2", "conv2d_2_3", "relu_2_4", "flatten_1_5", "linear_1_6", "output_1"]


def _hooked(model: torch.nn.Module, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of `module` when `model(x)` runs, through a forward hook."""
    out: list[torch.Tensor] = []
    h = module.register_forward_hook(lambda _m, _i, o: out.append(o.detach().clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        h.remove()
    return out[0]


@pytest.fixture
def cnn_pair() -> tuple[SmallCNN, SmallCNN, torch.Tensor, tl.ModelLog, tl.ModelLog]:
    """A SmallCNN and a copy whose conv2 weight is scaled by 3 (bias shifted), logged on one input."""
    torch.manual_seed(0)
    model = SmallCNN()
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.conv2.weight.mul_(3.0)
        perturbed.conv2.bias.add_(1.0)
    x = torch.randn(1, 3, 8, 8)
    return model, perturbed, x, tl.log_forward_pass(model, x), tl.log_forward_pass(perturbed, x)


def test_two_inputs_share_the_topology_and_every_node() -> None:
    torch.manual_seed(1)
    model = SmallCNN()
    x0, x1 = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    b = tl.bundle([tl.log_forward_pass(model, x0), tl.log_forward_pass(model, x1)], names=["a", "b"])
    assert b.nodes == CNN_LABELS
    assert b.universal_nodes == CNN_LABELS
    assert b.selective_nodes() == []
    assert b.is_shared_topology
    b.assert_shared_topology()
    assert b.coverage("a") == b.coverage(1) == 1.0
    assert b.names == ["a", "b"] and b.groups is None and not b.has_gradients
    view = b["conv2d_2_3"]
    assert (view.node_name, view.op_type, view.module_path, view.shape) == (
        "conv2d_2_3",
        "conv2d",
        "conv2",
        (1, 4, 4, 4),
    )
    assert view.traces == ["a", "b"] and view.coverage == 1.0
    assert torch.equal(view.activations["a"], _hooked(model, model.conv2, x0))
    assert torch.equal(view.activations["b"], _hooked(model, model.conv2, x1))
    stacked = view.activation
    assert stacked.shape == (2, 1, 4, 4, 4)
    assert torch.equal(stacked[1], _hooked(model, model.conv2, x1))
    assert torch.equal(view.aggregate("mean"), stacked.mean(dim=0))
    assert torch.equal(view.aggregate("max"), stacked.max(dim=0).values)
    assert b[3].node_name == "conv2d_2_3" and b[-1].node_name == "output_1"
    assert b.edges()[:2] == [("input_1", "conv2d_1_1"), ("conv2d_1_1", "relu_1_2")]


def _noisy_copy(model: SmallCNN, layer: str, seed: int = 0) -> SmallCNN:
    """A copy of `model` with Gaussian noise (twice the weight's std) added to `layer`'s weight."""
    pert = copy.deepcopy(model)
    w = getattr(pert, layer).weight
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w.add_(torch.randn(w.shape, generator=g) * w.std() * 2)
    return pert


def test_perturbed_layer_is_ranked_first() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    x = torch.randn(1, 3, 8, 8)
    base = tl.log_forward_pass(model, x)
    # Noise on the last layer: it changes first, its output node equally (same tensor), nothing else.
    b = tl.bundle([base, tl.log_forward_pass(_noisy_copy(model, "fc"), x)])
    for metric in ("cosine", "relative_l2", "pearson"):
        ranked = b.most_changed(top_k=3, metric=metric)
        assert [n for n, _ in ranked] == ["linear_1_6", "output_1", "input_1"], (metric, ranked)
        assert ranked[0][1] == ranked[1][1] > 0.0 and ranked[2][1] == 0.0
    # Noise on conv2: conv2 or the relu right after it ranks first (the relu zeroes many of the
    # reference's entries, so relative to what is left its change can be larger); upstream is 0.
    b = tl.bundle([base, tl.log_forward_pass(_noisy_copy(model, "conv2"), x)])
    for metric in ("cosine", "relative_l2", "pearson"):
        div = dict(b.most_changed(top_k=None, metric=metric))
        assert set(div) == set(CNN_LABELS)
        assert div["input_1"] == div["conv2d_1_1"] == div["relu_1_2"] == 0.0
        top = b.most_changed(top_k=1, metric=metric)[0][0]
        assert top in ("conv2d_2_3", "relu_2_4"), (metric, top)
        assert div["conv2d_2_3"] > 0.4
    assert b.most_changed(top_k=1, metric="cosine")[0][0] == "conv2d_2_3"


def test_metrics_match_torch_by_hand(cnn_pair) -> None:
    model, perturbed, x, log0, log1 = cnn_pair
    a = _hooked(model, model.conv2, x).double().flatten()
    c = _hooked(perturbed, perturbed.conv2, x).double().flatten()
    cos = 1 - torch.nn.functional.cosine_similarity(a, c, dim=0).item()
    rel = ((a - c).norm() / a.norm()).item()
    r = torch.corrcoef(torch.stack([a, c]))[0, 1].item()
    b = tl.bundle([log0, log1], names=["base", "pert"])
    view = b["conv2d_2_3"]
    for metric, want in (("cosine", cos), ("relative_l2", rel), ("l2", rel), ("pearson", 1 - r)):
        d = view.diff(metric)
        assert d["base"] == 0.0
        assert d["pert"] == pytest.approx(want, rel=1e-9, abs=1e-12), metric
        assert view.divergence(metric) == pytest.approx(want, rel=1e-9, abs=1e-12)
        assert dict(b.most_changed(None, metric))["conv2d_2_3"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    # The reference can be the other trace: relative L2 is then relative to its norm.
    assert view.diff("relative_l2", reference="pert")["base"] == pytest.approx(((a - c).norm() / c.norm()).item())
    assert tl.traces.divergence(torch.zeros(3), torch.zeros(3), "cosine") == 0.0
    assert tl.traces.divergence(torch.zeros(3), torch.ones(3), "cosine") == 1.0
    assert tl.traces.divergence(torch.ones(3), torch.ones(3), "pearson") == 0.0
    with pytest.raises(ValueError, match="metric must be one of"):
        view.diff("manhattan")


def _branch_logs() -> tuple[BranchNet, tl.ModelLog, tl.ModelLog]:
    torch.manual_seed(2)
    model = BranchNet()
    skip = tl.log_forward_pass(model, -torch.ones(1, 4))  # relu -> zeros: branch not taken
    take = tl.log_forward_pass(model, torch.ones(1, 4))
    return model, skip, take


def test_data_dependent_branch_gives_selective_nodes() -> None:
    model, skip, take = _branch_logs()
    assert [lab for lab in take.layer_labels if lab not in skip.layer_labels] == [
        "sigmoid_1_5",
        "tanh_1_7",
        "linear_3_8",
    ]
    b = tl.bundle([skip, take], names=["skip", "take"])
    # `a` (trace take's linear_1_4) is new; skip's linear_1_4 (layer b) keeps the plain name.
    assert b.nodes == [
        "input_1",
        "relu_1_1",
        "sum_1_2",
        "gt_1_3",
        "linear_1_4@take",
        "sigmoid_1_5",
        "linear_1_4",
        "tanh_1_5",
        "linear_2_6",
        "output_1",
    ]
    assert b.selective_nodes() == ["linear_1_4@take", "sigmoid_1_5"]
    assert not b.is_shared_topology
    assert b.coverage("skip") == pytest.approx(8 / 10) and b.coverage("take") == 1.0
    view = b["linear_1_4@take"]
    assert view.traces == ["take"] and view.coverage == 0.5 and view.module_path == "a"
    assert b.entry("linear_1_4", "take").layer_label == "linear_2_6"
    assert b.entry("sigmoid_1_5", "skip") is None
    # Layer b's input differs between the traces (zeros vs sigmoid(a(1))): matched, and its activation
    # is what the model's `b` computes in each trace.
    both = b["linear_1_4"]
    assert both.traces == ["skip", "take"]
    assert torch.equal(both.activations["take"], _hooked(model, model.b, torch.ones(1, 4)))
    assert torch.equal(both.activations["skip"], _hooked(model, model.b, -torch.ones(1, 4)))
    with pytest.raises(ValueError, match="2 selective node"):
        b.assert_shared_topology()
    # In the other order the branch nodes keep trace 0's labels.
    assert tl.bundle([take, skip]).nodes == take.layer_labels


def test_recurrent_passes_match_by_occurrence() -> None:
    torch.manual_seed(3)
    model = LoopNet(3)
    three = tl.log_forward_pass(model, torch.randn(1, 4))
    model.steps = 2
    two = tl.log_forward_pass(model, torch.randn(1, 4))
    b = tl.bundle([three, two])
    assert b.nodes == three.layer_labels
    assert b.selective_nodes() == ["linear_1_1:3", "tanh_1_2:3"]
    assert b.coverage(1) == pytest.approx(7 / 9)
    assert b["mul_1_3"].traces == ["trace_0", "trace_1"]


def test_groups(tmp_path) -> None:
    model, skip, take = _branch_logs()
    skip2 = tl.log_forward_pass(model, -2 * torch.ones(1, 4))
    b = tl.bundle([take, skip, skip2], groups=["on", "off", "off"])
    assert b.groups == ["on", "off", "off"]
    assert b.selective_nodes("on") == ["linear_1_4", "sigmoid_1_5"]
    assert b.selective_nodes("off") == []
    assert b["linear_1_4"].coverage == pytest.approx(1 / 3)
    agg = b.aggregate("mean", group="off")
    # Both "off" traces see relu(-x) = 0: every shared node's mean equals the trace's own tensor.
    assert torch.equal(agg["linear_2_6"], skip.layer_list[skip.layer_labels.index("linear_1_4")].activation.detach())
    assert set(agg) == set(b.universal_nodes)
    assert "sigmoid_1_5" in b.aggregate("max", group="on")
    with pytest.raises(ValueError, match="unknown group"):
        b.selective_nodes("nope")
    with pytest.raises(ValueError, match="no groups"):
        tl.bundle([take, skip]).selective_nodes("on")
    dot = tl.show_bundle_graph(
        b, mode="group_color", return_dot=True, vis_outpath=str(tmp_path / "g"), vis_format="svg", save_only=True
    )
    fills = _fills(dot)
    assert fills["sigmoid_1_5"] == TAB10[0]
    assert fills["relu_1_1"] == f"{TAB10[0]}:{TAB10[1]}"
    assert 'style="striped"' in _node_line(dot, "relu_1_1")
    with pytest.raises(ValueError, match="needs a bundle made with groups"):
        tl.show_bundle_graph(tl.bundle([take, skip]), mode="group_color", return_dot=True, save_only=True)


def test_loaded_bundles(cnn_pair, tmp_path) -> None:
    _, _, _, log0, log1 = cnn_pair
    log0.save(str(tmp_path / "b0"))
    log1.save(str(tmp_path / "b1"))
    live = tl.bundle([log0, log1]).most_changed(None, "pearson")
    for lazy in (False, True):
        loaded = [tl.load(str(tmp_path / "b0"), lazy=lazy), tl.load(str(tmp_path / "b1"), lazy=lazy)]
        b = tl.bundle(loaded)
        assert b.nodes == CNN_LABELS and b.is_shared_topology
        got = b.most_changed(None, "pearson")
        assert [n for n, _ in got] == [n for n, _ in live]
        assert [v for _, v in got] == pytest.approx([v for _, v in live])
        assert torch.equal(b["relu_2_4"].activations["trace_1"], log1["relu_2_4"].activation.detach())
    mixed = tl.bundle([log0, tl.load(str(tmp_path / "b1"), lazy=True)])
    assert mixed.most_changed(1)[0][0] == "conv2d_2_3"


def test_gradients_direction(cnn_pair) -> None:
    model, perturbed, x, _, _ = cnn_pair
    logs = []
    for m in (model, perturbed):
        log = tl.log_forward_pass(m, x, save_gradients=True)
        log["output_1"].activation.sum().backward()
        logs.append(log)
    b = tl.bundle(logs)
    assert b.has_gradients
    view = b["relu_1_2"]
    g0, g1 = view.gradients["trace_0"], view.gradients["trace_1"]
    assert view.gradient.shape == (2, *g0.shape)
    want = ((g0.double() - g1.double()).norm() / g0.double().norm()).item()
    assert view.diff("relative_l2", direction="backward")["trace_1"] == pytest.approx(want)
    assert dict(b.most_changed(None, "relative_l2", direction="backward"))["relu_1_2"] == pytest.approx(want)


def _fills(dot: str) -> dict[str, str]:
    return dict(re.findall(r'^  "([^"]+)" \[.*?fillcolor="([^"]+)"', dot, flags=re.M))


def _node_line(dot: str, name: str) -> str:
    return next(line for line in dot.splitlines() if line.startswith(f'  "{name}" ['))


def test_show_bundle_graph_renders_png_and_colours_the_perturbed_node(cnn_pair, tmp_path) -> None:
    _, _, _, log0, log1 = cnn_pair
    b = tl.bundle([log0, log1])
    out = str(tmp_path / "bundle")
    dot = tl.show_bundle_graph(b, out, vis_format="png", save_only=True, show_coverage=True, return_dot=True)
    with open(out + ".png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    fills = _fills(dot)
    assert set(fills) == set(CNN_LABELS)
    rank = {n: REDS.index(c) for n, c in fills.items()}
    assert rank["conv2d_2_3"] == len(REDS) - 1
    assert [n for n, r in rank.items() if r == len(REDS) - 1] == ["conv2d_2_3"]
    assert rank["conv2d_1_1"] == 0
    assert "coverage 2/2" in _node_line(dot, "conv2d_2_3")
    assert len(re.findall(r" -> ", dot)) == len(CNN_LABELS) - 1
    path = b.show(str(tmp_path / "svg"), vis_format="svg", save_only=True)
    assert path == str(tmp_path / "svg.svg")
    with open(path) as f:
        assert "<svg" in f.read()


def test_show_bundle_graph_coverage_and_rolled(tmp_path) -> None:
    torch.manual_seed(3)
    model = LoopNet(3)
    three = tl.log_forward_pass(model, torch.randn(1, 4))
    model.steps = 2
    b = tl.bundle([three, tl.log_forward_pass(model, torch.randn(1, 4))])
    dot = tl.show_bundle_graph(b, str(tmp_path / "u"), mode="swarm", return_dot=True, vis_format="svg", save_only=True)
    fills = _fills(dot)
    assert fills["linear_1_1pass3"] == VIRIDIS[round(0.5 * 8)] and fills["linear_1_1pass1"] == VIRIDIS[-1]
    rolled = tl.show_bundle_graph(
        b, str(tmp_path / "r"), mode="swarm", vis_opt="rolled", return_dot=True, vis_format="svg", save_only=True
    )
    assert set(_fills(rolled)) == {"input_1", "linear_1_1", "tanh_1_2", "mul_1_3", "output_1"}
    assert '"tanh_1_2" -> "linear_1_1"' in rolled


def test_bad_input_is_refused(cnn_pair) -> None:
    _, _, x, log0, log1 = cnn_pair
    with pytest.raises(ValueError, match="at least one trace"):
        tl.bundle([])
    with pytest.raises(TypeError, match="not a ModelLog"):
        tl.bundle([log0, "log1"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of ModelLogs"):
        tl.bundle(log0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 1 names for 2 traces"):
        tl.bundle([log0, log1], names=["only"])
    with pytest.raises(ValueError, match="unique"):
        tl.bundle([log0, log1], names=["x", "x"])
    with pytest.raises(ValueError, match="3 groups for 2 traces"):
        tl.bundle([log0, log1], groups=["a", "b", "c"])
    b = tl.bundle([log0, log1])
    with pytest.raises(KeyError, match="not a node"):
        b["conv2d_9_9"]
    with pytest.raises(KeyError, match="not a trace"):
        b.coverage("nope")
    empty = [tl.log_forward_pass(SmallCNN(), x, layers_to_save=None) for _ in range(2)]
    nb = tl.bundle(empty)
    assert nb.nodes == CNN_LABELS
    with pytest.raises(ValueError, match="no node has saved activations"):
        nb.most_changed()
    with pytest.raises(ValueError, match="no saved activation in trace"):
        _ = nb["relu_1_2"].activation
    with pytest.raises(ValueError, match="no gradient"):
        b["relu_1_2"].diff(direction="backward")
    with pytest.raises(ValueError, match="direction must be"):
        b.most_changed(direction="sideways")
    with pytest.raises(ValueError, match="no node has saved activations"):
        tl.show_bundle_graph(nb, mode="divergence", return_dot=True, save_only=True)
    with pytest.raises(ValueError, match="trace 0 has 1 fingerprints and 2 labels"):
        _core.supergraph([["a"]], [["a", "b"]], ["t"])


def test_signatures_follow_the_spec() -> None:
    def params(fn: object) -> list[tuple[str, object, str]]:
        sig = inspect.signature(fn)  # type: ignore[arg-type]
        return [(p.name, p.default, p.kind.name) for p in sig.parameters.values()]

    kw, pos = "KEYWORD_ONLY", "POSITIONAL_OR_KEYWORD"
    assert params(tl.show_bundle_graph) == [
        ("bundle", inspect.Parameter.empty, pos),
        ("vis_outpath", None, pos),
        ("mode", "auto", pos),
        ("metric", "cosine", kw),
        ("show_coverage", False, kw),
        ("vis_opt", "unrolled", kw),
        ("vis_format", "pdf", kw),
        ("vis_orientation", "bottomup", kw),
        ("save_only", False, kw),
        ("direction", "forward", kw),
        ("return_dot", False, kw),
    ]
    assert params(tl.bundle) == [("traces", inspect.Parameter.empty, pos), ("names", None, pos), ("groups", None, pos)]
    assert tl.bundle is tl.traces.bundle and isinstance(
        tl.bundle([tl.log_forward_pass(SmallCNN(), torch.randn(1, 3, 8, 8))]), tl.TraceBundle
    )


def test_log_of_selected_layers_matches_its_shown_entries() -> None:
    torch.manual_seed(4)
    model, x = SmallCNN(), torch.randn(1, 3, 8, 8)
    part = tl.log_forward_pass(model, x, layers_to_save=["conv2d_2_3"], keep_unsaved_layers=False)
    full = tl.log_forward_pass(model, x)
    b = tl.bundle([part, full], names=["part", "full"])
    assert b.nodes == CNN_LABELS
    shown = set(part.layer_labels)
    assert "conv2d_2_3" in shown and len(shown) < len(CNN_LABELS)
    assert b.selective_nodes() == [n for n in CNN_LABELS if n not in shown]
    assert b.coverage("part") == pytest.approx(len(shown) / len(CNN_LABELS))
    # Same model, same input: the layer both saved is equal, so its divergence is exactly 0.
    assert dict(b.most_changed(None))["conv2d_2_3"] == 0.0
    assert torch.equal(b["conv2d_2_3"].activations["part"], _hooked(model, model.conv2, x))
