"""The pytest plugin (`torchlens.pytest_plugin`): the `torchlens_snapshot` fixture, run in inner
pytest sessions through `pytester`."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest
import torch

import torchlens as tl

from models.trace_bundle import SmallCNN

pytest_plugins = ["pytester"]

TESTS_DIR = Path(__file__).resolve().parent

# The inner test: SmallCNN with fixed weights and input; TL_PERTURB shifts one weight of conv2.
INNER = """
import os

import torch

from models.trace_bundle import SmallCNN


def build():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] += float(os.environ.get("TL_PERTURB", "0"))
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x


def test_cnn(torchlens_snapshot):
    model, x = build()
    torchlens_snapshot(model, x, layers=["conv2d_1_1", "conv2d_2_3", "relu"])


def test_plain():
    assert 1 + 1 == 2
"""


def _entry_point_installed() -> bool:
    eps = importlib.metadata.entry_points(group="pytest11")
    return any(ep.value == "torchlens.pytest_plugin" for ep in eps)


# `-p` loads the plugin when the installed metadata does not declare the entry point yet
# (an editable install made before it was added); loading it twice would be an error.
PLUGIN_ARGS = [] if _entry_point_installed() else ["-p", "torchlens.pytest_plugin"]


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.syspath_prepend(str(TESTS_DIR))  # the inner test imports tests/models
    monkeypatch.delenv("TL_PERTURB", raising=False)
    pytester.makepyfile(test_model=INNER)
    return pytester


def _run(p: pytest.Pytester, *args: str) -> pytest.RunResult:
    return p.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", *args)


def _model_and_input(delta: float = 0.0) -> tuple[SmallCNN, torch.Tensor]:
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():
        model.conv2.weight[0, 0, 0, 0] += delta
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, x


def test_first_run_writes_the_snapshot_then_passes_again(inner: pytest.Pytester) -> None:
    snap = inner.path / "__snapshots__" / "torchlens" / "test_model" / "test_cnn"
    first = _run(inner)
    first.assert_outcomes(passed=2)
    first.stdout.fnmatch_lines(["*torchlens snapshots*", f"snapshot written: {snap}"])
    assert snap.is_dir()
    # Only the used fixture wrote anything: one bundle, for test_cnn.
    assert [p.name for p in snap.parent.iterdir()] == ["test_cnn"]

    # The bundle holds the chosen layers, equal to what the model computes.
    loaded = tl.load(snap)
    saved = [e.layer_label for e in loaded.layer_list if e.has_saved_activations]
    assert {"conv2d_1_1", "relu_1_2", "conv2d_2_3", "relu_2_4"} <= set(saved)
    assert "flatten_1_5" not in saved and "input_1" not in saved
    model, x = _model_and_input()
    with torch.no_grad():
        c1 = model.conv1(x)
        c2 = model.conv2(torch.relu(c1))
    assert torch.equal(loaded["conv2d_1_1"].activation, c1)
    assert torch.equal(loaded["relu_1_2"].activation, torch.relu(c1))
    assert torch.equal(loaded["conv2d_2_3"].activation, c2)

    second = _run(inner)
    second.assert_outcomes(passed=2)
    assert "snapshot written" not in second.stdout.str()


def test_perturbed_weight_fails_naming_the_diverging_layer(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(inner).assert_outcomes(passed=2)
    monkeypatch.setenv("TL_PERTURB", "0.01")
    result = _run(inner)
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "torchlens snapshot" in out and "diverges" in out
    # conv2's output is the first layer that moves; the layers before it stay in tolerance.
    result.stdout.fnmatch_lines(["*layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by label)*"])
    result.stdout.re_match_lines([r"^\*\s+conv2d_2_3\s+conv2d_2_3\s+1x4x4x4\s"])
    result.stdout.re_match_lines([r"^\s+conv2d_1_1\s+conv2d_1_1\s+1x4x6x6\s+0\s+0\s+0\s+0$"])
    result.stdout.no_re_match_line(r"^\*\s+(conv2d_1_1|relu_1_2)\s")
    result.stdout.fnmatch_lines(["*--torchlens-snapshot-update*"])


def test_update_option_rewrites_the_snapshot(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    snap = inner.path / "__snapshots__" / "torchlens" / "test_model" / "test_cnn"
    _run(inner).assert_outcomes(passed=2)
    before = tl.load(snap)["conv2d_2_3"].activation
    monkeypatch.setenv("TL_PERTURB", "0.01")
    updated = _run(inner, "--torchlens-snapshot-update")
    updated.assert_outcomes(passed=2)
    updated.stdout.fnmatch_lines([f"snapshot written: {snap}"])
    after = tl.load(snap)["conv2d_2_3"].activation
    assert not torch.equal(before, after)
    model, x = _model_and_input(0.01)
    with torch.no_grad():
        assert torch.equal(after, model.conv2(torch.relu(model.conv1(x))))
    assert [p.name for p in snap.parent.iterdir()] == ["test_cnn"]  # replaced in place, nothing left over
    _run(inner).assert_outcomes(passed=2)  # the perturbed model now matches
    monkeypatch.setenv("TL_PERTURB", "0")
    _run(inner).assert_outcomes(passed=1, failed=1)


def test_ini_tolerances_and_snapshot_dir(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    inner.makeini(
        """
        [pytest]
        torchlens_snapshot_dir = snaps
        torchlens_snapshot_metric = cosine
        torchlens_snapshot_atol = 1e-3
        """
    )
    _run(inner).assert_outcomes(passed=2)
    assert (inner.path / "snaps" / "test_model" / "test_cnn").is_dir()
    assert not (inner.path / "__snapshots__").exists()
    monkeypatch.setenv("TL_PERTURB", "0.01")
    # 1 - cos of the perturbed layers is about 4e-5: inside 1e-3, outside the default 1e-6.
    _run(inner).assert_outcomes(passed=2)
    _run(inner, "-o", "torchlens_snapshot_atol=1e-6").assert_outcomes(passed=1, failed=1)
    other = inner.path / "elsewhere"
    _run(inner, f"--torchlens-snapshot-dir={other}").assert_outcomes(passed=2)
    assert (other / "test_model" / "test_cnn").is_dir()


def test_named_and_repeated_snapshots_in_one_test(inner: pytest.Pytester) -> None:
    inner.makepyfile(
        test_two="""
        from test_model import build


        def test_twice(torchlens_snapshot):
            model, x = build()
            torchlens_snapshot(model, x, layers=["relu"])
            torchlens_snapshot(model, x * 2, layers=["relu"])
            torchlens_snapshot(model, x, layers="all", name="full[all]")
        """
    )
    inner.syspathinsert()
    _run(inner, "test_two.py").assert_outcomes(passed=1)
    folder = inner.path / "__snapshots__" / "torchlens" / "test_two"
    names = sorted(p.name for p in folder.iterdir())
    assert names[:2] == ["test_twice", "test_twice__2"]
    assert names[2].startswith("test_twice__full_all-") and len(names) == 3
    full = tl.load(folder / names[2])
    assert all(e.has_saved_activations for e in full.layer_list)
    assert _run(inner, "test_two.py").ret == 0


def test_plugin_does_nothing_for_tests_without_the_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    result = pytester.runpytest(*PLUGIN_ARGS, "-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=1)
    assert "snapshot" not in result.stdout.str()
    assert sorted(p.name for p in pytester.path.iterdir()) == ["test_plain.py"]
    help_text = pytester.runpytest(*PLUGIN_ARGS, "--help").stdout.str()
    assert "--torchlens-snapshot-update" in help_text and "--torchlens-snapshot-dir" in help_text
    assert os.environ.get("TL_PERTURB") is None
