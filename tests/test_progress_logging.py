"""Progress bars (`progress=`) and the library logger: bars only where someone can see them,
library messages through `logging.getLogger("torchlens")`, no stray `print`."""

from __future__ import annotations

import ast
import io
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import torchlens as tl
from torchlens import _progress, fastlog

from models.trace_bundle import SmallCNN

PACKAGE = Path(tl.__file__).resolve().parent


class _Terminal(io.StringIO):
    """A stream that says it is a terminal (tqdm then draws on it)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)


def _cnn() -> tuple[SmallCNN, torch.Tensor]:
    torch.manual_seed(0)
    return SmallCNN().eval(), torch.randn(1, 3, 8, 8)


def _validate(progress: bool | None) -> None:
    model, x = _cnn()
    assert tl.validate_forward_pass(model, x, random_seed=0, progress=progress) is True


def _compare(progress: bool | None) -> None:
    model, x = _cnn()
    log = tl.log_forward_pass(model, x)
    assert not tl.compare_logs(log, log, progress=progress).diverged


def _record_many(progress: bool | None) -> None:
    model, x = _cnn()
    with fastlog.Recorder(model, keep_op=lambda ctx: ctx.layer_type == "relu") as rec:
        rec.log_many([x, x * 2, x * 3], progress=progress)
    assert rec.recording.n_passes == 3


def _batch(progress: bool | None, tmp: Path) -> None:
    models = {
        "cnn": {
            "model_category": "toy",
            "model_loading_func": lambda: _cnn()[0],
            "model_sample_inputs": {"x": _cnn()[1]},
        }
    }
    table = tl.validate_batch_of_models_and_inputs(models, str(tmp / f"batch_{progress}.csv"), progress=progress)
    assert table["validation_success"].tolist() == [True]


# (name, runner, the bar's description)
RUNS: list[tuple[str, Callable[[bool | None, Path], None], str]] = [
    ("validate_forward_pass", lambda p, _t: _validate(p), "Validating saved activations"),
    ("compare_logs", lambda p, _t: _compare(p), "comparing layers"),
    ("Recorder.log_many", lambda p, _t: _record_many(p), "fastlog"),
    ("validate_batch_of_models_and_inputs", _batch, "Validating models"),
]


@pytest.mark.parametrize(("name", "run", "desc"), RUNS, ids=[r[0] for r in RUNS])
def test_progress_true_draws_a_bar(
    name: str, run: Callable, desc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(True, tmp_path)
    captured = capsys.readouterr()
    assert f"{desc}:" in captured.err and "|" in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(("name", "run", "desc"), RUNS, ids=[r[0] for r in RUNS])
def test_no_bar_off_a_terminal_or_when_disabled(
    name: str, run: Callable, desc: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not sys.stderr.isatty()
    run(None, tmp_path)
    run(False, tmp_path)
    assert capsys.readouterr() == ("", "")


def test_auto_bar_needs_a_terminal_and_half_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    assert _progress.progress_enabled(None) is True
    assert _progress.progress_enabled(False) is False

    def slow(n: int, enabled: bool | None) -> list[int]:
        out = []
        for i in _progress.progress(range(n), total=n, desc="work", enabled=enabled):
            time.sleep(0.1)
            out.append(i)
        return out

    assert slow(2, None) == [0, 1]  # done within the delay: no bar flashes
    assert term.getvalue() == ""
    assert slow(8, False) == list(range(8))
    assert term.getvalue() == ""
    assert slow(8, None) == list(range(8))
    assert "work:" in term.getvalue()


def test_validation_failures_are_logged_not_printed(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    model, x = _cnn()
    with torch.no_grad():
        gt = model(x)
    log = tl.log_forward_pass(model, x, save_function_args=True, save_rng_states=True, random_seed=0)
    with torch.no_grad():
        log["relu_2_4"].activation.add_(1.0)
    with caplog.at_level(logging.WARNING, logger="torchlens"):
        assert log.validate_forward_pass([gt], progress=False) is False
    records = [r for r in caplog.records if r.name == "torchlens"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert records[0].getMessage() == (
        "Saved activations for layer relu_2_4 do not match the values computed based on the parent layers "
        "['conv2d_2_3']."
    )
    caplog.clear()
    assert log.validate_forward_pass([gt + 1], progress=False) is False
    assert [r.getMessage() for r in caplog.records] == [
        "The 0th output layer, output_1, does not match the ground truth output tensor."
    ]
    assert capsys.readouterr().out == ""


class _Raises(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_failed_capture_banner_is_logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        tl.log_forward_pass(_Raises(), torch.randn(2))
    errors = [r for r in caplog.records if r.name == "torchlens" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "Feature extraction failed; returning model and environment to normal" in errors[0].getMessage()
    assert capsys.readouterr().out == ""


def test_verbose_still_prints(capsys: pytest.CaptureFixture[str]) -> None:
    # verbose=True asks for output on stdout (spec §8.4): it is not a library message.
    model, x = _cnn()
    log = tl.log_forward_pass(model, x, verbose=True)
    out = capsys.readouterr().out
    assert out.startswith(f"[torchlens] SmallCNN: {len(log)} layers logged; forward ")


# Functions whose job is printing: (module path under torchlens/, function). The command line
# (torchlens/cli/) writes its results to stdout by design.
PRINTING_FUNCTIONS = {
    ("api.py", "log_forward_pass"),  # verbose=True
    ("validate.py", "validate_log"),  # verbose=True
    ("tables.py", "summary"),  # print_to=
    ("log/model_log.py", "print_all_fields"),
    ("log/layer_pass_log.py", "print_all_fields"),
    ("fastlog/_dry_run.py", "print_tree"),
}


def _print_calls(path: Path) -> list[tuple[str | None, int]]:
    found: list[tuple[str | None, int]] = []

    def visit(node: ast.AST, fn: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else fn
            if isinstance(child, ast.Call):
                f = child.func
                if isinstance(f, ast.Name) and f.id == "print":
                    found.append((fn, child.lineno))
                if (
                    isinstance(f, ast.Attribute)
                    and f.attr == "write"
                    and ast.unparse(f.value) in ("sys.stdout", "sys.stderr")
                ):
                    found.append((fn, child.lineno))
            visit(child, name)

    visit(ast.parse(path.read_text()), None)
    return found


def test_library_code_does_not_print() -> None:
    stray = []
    seen = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("cli/"):
            continue
        for fn, line in _print_calls(path):
            if (rel, fn) in PRINTING_FUNCTIONS:
                seen.add((rel, fn))
            else:
                stray.append(f"{rel}:{line} in {fn}")
    assert stray == [], "library code prints; use torchlens._progress.logger"
    assert seen == PRINTING_FUNCTIONS  # the allow-list names no function that stopped printing
