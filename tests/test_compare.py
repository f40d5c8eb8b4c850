"""`tl.compare_logs`: per-layer comparison of two runs (shared by `torchlens diff` and the
pytest plugin)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import torchlens as tl

from models.compare import LogAndFFT, SmallCNNPlusZero
from models.trace_bundle import LoopNet, SmallCNN

TESTS = Path(__file__).resolve().parent
CNN_LABELS = ["input_1", "conv2d_1_1", "relu_1_2", "conv2d_2_3", "relu_2_4", "flatten_1_5", "linear_1_6", "output_1"]


def _cnn(delta: float = 0.0) -> SmallCNN:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():
        model.conv2.weight.add_(delta)
    return model


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def test_identical_runs_do_not_diverge(tmp_path: Path) -> None:
    model, x = _cnn(), _x()
    a = tl.log_forward_pass(model, x)
    tl.save(a, tmp_path / "a")
    b = tl.log_forward_pass(model, x)
    for ref in (a, tmp_path / "a", str(tmp_path / "a")):
        report = tl.compare_logs(ref, b)
        assert not report.diverged and report.diverging == []
        assert report.matched_by == "label"
        assert [r.label_a for r in report.rows] == CNN_LABELS == [r.label_b for r in report.rows]
        assert all(r.max_abs == 0.0 and r.max_rel == 0.0 and r.cosine == 0.0 and r.ratio == 0.0 for r in report.rows)
        assert report.missing_in_a == [] and report.missing_in_b == []
    assert report.rows[1].shape_a == report.rows[1].shape_b == (1, 4, 6, 6)
    assert report.summary_line() == "0 of 8 layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by label)"


def test_perturbed_weight_diverges_from_that_layer_on(tmp_path: Path) -> None:
    x = _x()
    tl.save(tl.log_forward_pass(_cnn(), x), tmp_path / "ref")
    tl.save(tl.log_forward_pass(_cnn(0.01), x), tmp_path / "new")
    report = tl.compare_logs(tmp_path / "ref", tmp_path / "new")
    assert report.diverged
    by_label = {r.label_a: r for r in report.rows}
    assert [label for label in CNN_LABELS if by_label[label].diverged] == CNN_LABELS[3:]
    for label in CNN_LABELS[:3]:
        assert by_label[label].max_abs == 0.0 and by_label[label].ratio == 0.0
    # The figures are those of the tensors the two models compute.
    m0, m1 = _cnn(), _cnn(0.01)
    with torch.no_grad():
        h = torch.relu(m0.conv1(x))
        c0, c1 = m0.conv2(h).double(), m1.conv2(h).double()
    row = by_label["conv2d_2_3"]
    diff = (c1 - c0).abs()
    assert row.max_abs == float(diff.max())
    assert row.max_rel == float(diff.max()) / float(c0.abs().max())
    assert row.ratio == float((diff / (1e-6 + 1e-5 * c0.abs())).max())
    cos = float(torch.dot(c0.flatten(), c1.flatten()) / (c0.norm() * c1.norm()))
    assert math.isclose(row.cosine, 1.0 - cos, rel_tol=1e-6, abs_tol=1e-15)
    # Worst first; the table marks the diverging rows and lists the clean ones after them.
    ratios = [r.ratio for r in report.diverging]
    assert len(ratios) == 5 and ratios == sorted(ratios, reverse=True) and ratios[-1] > 1.0
    worst = report.diverging[0]
    table = report.format_table(top=6).splitlines()
    assert table[0] == "5 of 8 layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by label)"
    assert table[1].split() == ["layer", "a", "layer", "b", "shape", "max", "abs", "max", "rel", "1-cos", "ratio"]
    assert table[2].split()[:3] == ["*", worst.label_a, worst.label_b]
    assert [line.startswith("*") for line in table[2:]] == [True] * 5 + [False]
    # The tolerance is sharp: an atol just above the largest difference accepts the change.
    largest = max(r.max_abs for r in report.rows)
    assert not tl.compare_logs(tmp_path / "ref", tmp_path / "new", atol=largest * 1.001, rtol=0.0).diverged
    assert tl.compare_logs(tmp_path / "ref", tmp_path / "new", atol=largest * 0.999, rtol=0.0).diverged


def test_cosine_metric_ignores_scale() -> None:
    x = _x()
    a_model, b_model = _cnn(), _cnn()
    with torch.no_grad():
        b_model.fc.weight.mul_(2)
        b_model.fc.bias.mul_(2)
    a, b = tl.log_forward_pass(a_model, x), tl.log_forward_pass(b_model, x)
    allclose = tl.compare_logs(a, b)
    assert [r.label_a for r in allclose.diverging] in (["linear_1_6", "output_1"], ["output_1", "linear_1_6"])
    assert allclose.diverging[0].max_rel == pytest.approx(1.0)
    cosine = tl.compare_logs(a, b, metric="cosine")
    assert not cosine.diverged
    assert cosine.summary_line() == "0 of 8 layers diverge (cosine, atol=1e-06; matched by label)"
    assert {r.label_a: r.cosine for r in cosine.rows}["linear_1_6"] < 1e-12


def test_selected_layers_and_missing_ones() -> None:
    model, x = _cnn(), _x()
    a = tl.log_forward_pass(model, x, layers_to_save=["conv2d_1_1", "relu"])
    b = tl.log_forward_pass(model, x, layers_to_save=["conv2d_1_1"])
    report = tl.compare_logs(a, b)
    saved_a = [e.layer_label for e in a.layer_list if e.has_saved_activations]
    saved_b = [e.layer_label for e in b.layer_list if e.has_saved_activations]
    assert [r.label_a for r in report.rows] == [label for label in saved_a if label in saved_b]
    assert report.missing_in_b == [label for label in saved_a if label not in saved_b]
    assert "relu_1_2" in report.missing_in_b and report.missing_in_a == []
    assert report.diverged and report.diverging == []
    assert "missing in b: " in report.summary_line()


def test_different_labels_are_matched_by_the_supergraph() -> None:
    x = _x()
    a_model = _cnn()
    b_model = SmallCNNPlusZero().eval()
    b_model.load_state_dict(a_model.state_dict())
    report = tl.compare_logs(tl.log_forward_pass(a_model, x), tl.log_forward_pass(b_model, x))
    assert report.matched_by == "supergraph"
    assert [(r.label_a, r.label_b) for r in report.rows] == [
        ("input_1", "input_1"),
        ("conv2d_1_1", "conv2d_1_1"),
        ("relu_1_2", "relu_1_2"),
        ("conv2d_2_3", "conv2d_2_4"),
        ("relu_2_4", "relu_2_5"),
        ("flatten_1_5", "flatten_1_6"),
        ("linear_1_6", "linear_1_7"),
        ("output_1", "output_1"),
    ]
    assert all(r.max_abs == 0.0 for r in report.rows)
    assert report.missing_in_a == ["add_1_3"] and report.missing_in_b == []
    assert report.diverged  # the extra op is a structural change


def test_different_labels_across_processes(tmp_path: Path) -> None:
    # A bundle written by another process (another hash seed) matches by fingerprint: input and
    # output fingerprints must not depend on the process.
    code = (
        "import sys, torch, torchlens as tl\n"
        "from models.trace_bundle import SmallCNN\n"
        "torch.manual_seed(0)\n"
        "x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))\n"
        "tl.save(tl.log_forward_pass(SmallCNN().eval(), x), sys.argv[1])\n"
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(tl.__file__).parent.parent), str(TESTS)]),
        PYTHONHASHSEED="12345",
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "ref")], check=True, env=env, timeout=300)
    b_model = SmallCNNPlusZero().eval()
    b_model.load_state_dict(_cnn().state_dict())
    report = tl.compare_logs(tmp_path / "ref", tl.log_forward_pass(b_model, _x()))
    assert report.matched_by == "supergraph"
    assert [(r.label_a, r.label_b) for r in report.rows][0] == ("input_1", "input_1")
    assert [(r.label_a, r.label_b) for r in report.rows][-1] == ("output_1", "output_1")
    assert len(report.rows) == 8 and all(r.max_abs == 0.0 for r in report.rows)
    assert report.missing_in_a == ["add_1_3"] and report.missing_in_b == []


def test_recurrent_passes_matched_and_missing() -> None:
    torch.manual_seed(0)
    three, two = LoopNet(3), LoopNet(2)
    two.load_state_dict(three.state_dict())
    x = torch.randn(1, 4)
    report = tl.compare_logs(tl.log_forward_pass(three, x), tl.log_forward_pass(two, x))
    assert report.matched_by == "supergraph"
    rows = {r.label_a: r for r in report.rows}
    assert list(rows) == ["input_1", "linear_1_1:1", "tanh_1_2:1", "linear_1_1:2", "tanh_1_2:2", "mul_1_3", "output_1"]
    assert [k for k, r in rows.items() if r.diverged] == ["mul_1_3", "output_1"]
    assert report.missing_in_b == ["linear_1_1:3", "tanh_1_2:3"]


def test_shape_change_diverges() -> None:
    torch.manual_seed(0)
    model = LoopNet(2)
    report = tl.compare_logs(
        tl.log_forward_pass(model, torch.randn(1, 4)), tl.log_forward_pass(model, torch.randn(2, 4))
    )
    assert report.matched_by == "label"
    assert all(r.diverged and r.max_abs == math.inf for r in report.rows)
    assert report.rows[0].shape_a == (1, 4) and report.rows[0].shape_b == (2, 4)
    assert "1x4 vs 2x4" in report.format_table()
    json.loads(json.dumps(report.to_dict()))  # JSON-ready (inf written as Infinity)


def test_infinities_nans_and_complex_values() -> None:
    model, x = LogAndFFT(), torch.tensor([0.0, -1.0, 2.0, 3.0])
    a, b = tl.log_forward_pass(model, x), tl.log_forward_pass(model, x)
    assert a["fft_1_1"].activation.is_complex()
    assert torch.isinf(a["log_1_2"].activation[0]) and torch.isnan(a["log_1_2"].activation[1])
    same = tl.compare_logs(a, b)
    assert not same.diverged and all(r.max_abs == 0.0 and r.cosine == 0.0 for r in same.rows)
    changed = tl.compare_logs(a, tl.log_forward_pass(model, x * 2))
    by_label = {r.label_a: r for r in changed.rows}
    # fft of 2x is twice the fft: its (real, imaginary) pairs move by |fft(x)| per element.
    fft = torch.view_as_real(torch.fft.fft(x).to(torch.complex128))
    assert by_label["fft_1_1"].diverged and by_label["fft_1_1"].max_abs == float(fft.abs().max())
    assert by_label["fft_1_1"].cosine < 1e-12  # same direction
    # log(2 * 0) is -inf again and log(-2) NaN again: only the finite entries differ.
    assert by_label["log_1_2"].max_abs == pytest.approx(math.log(2))


def test_bad_arguments(tmp_path: Path) -> None:
    log = tl.log_forward_pass(_cnn(), _x())
    with pytest.raises(ValueError, match="metric must be one of"):
        tl.compare_logs(log, log, metric="l1")
    with pytest.raises(ValueError, match="atol and rtol must be >= 0"):
        tl.compare_logs(log, log, atol=-1.0)
    with pytest.raises(TypeError, match="a must be a ModelLog or a bundle path"):
        tl.compare_logs(3, log)  # type: ignore[arg-type]
    with pytest.raises(tl.TorchLensIOError, match="No bundle at"):
        tl.compare_logs(tmp_path / "missing", log)
