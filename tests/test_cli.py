"""The command line (`torchlens ...` / `python -m torchlens ...`), run as a subprocess.

Every command runs on a real small model (`tests/models/cli_models.py`) in a child process: the
console script when it is installed next to this interpreter (`pip install -e .` writes it),
`python -m torchlens` otherwise and always once. The commands are launched together, a few at a
time, by one module fixture (each child imports torch), and the tests check what they printed
against in-process torchlens results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlens as tl
from torchlens.cli import main
from torchlens.cli._model import parse_shape

from models.cli_models import CallCounter, small_cnn, small_cnn_extra_relu
from models.small import Nested

TESTS = Path(__file__).resolve().parent
PYTHON_ROOT = Path(tl.__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).parent / "torchlens"
CNN = "models.cli_models:small_cnn"
SHAPE = "2,3,16,16"


def cli_prefix() -> list[str]:
    """The console script when installed beside this interpreter, else `python -m torchlens`."""
    if SCRIPT.is_file() and os.access(SCRIPT, os.X_OK):
        return [str(SCRIPT)]
    return [sys.executable, "-m", "torchlens"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PYTHON_ROOT), str(TESTS), env.get("PYTHONPATH", "")])
    env.pop("DISPLAY", None)
    return env


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)


def _batch(jobs: dict[str, list[str]], cwd: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run `torchlens ARGS` for every job, four at a time (a job starting with the interpreter runs as is)."""
    prefix = cli_prefix()
    cmds = {name: args if args[0] == sys.executable else prefix + args for name, args in jobs.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, cmd, cwd) for name, cmd in cmds.items()}
        return {name: f.result() for name, f in futures.items()}


def _reference_log(factory: Any, layers_to_save: Any = "all", perturb: bool = False) -> tl.ModelLog:
    """What `torchlens save models.cli_models:FACTORY -i 2,3,16,16` logs (seed 0, eval mode)."""
    torch.manual_seed(0)
    model = factory().eval()
    if perturb:
        with torch.no_grad():
            model.conv2.weight[0, 0, 0, 0] += 0.5
    x = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    return tl.log_forward_pass(model, x, layers_to_save=layers_to_save, random_seed=0)


def _fastlog_bundle(path: Path) -> None:
    torch.manual_seed(0)
    model = small_cnn().eval()
    opts = tl.StreamingOptions(bundle_path=str(path), retain_in_memory=False)
    keep = lambda ctx: ctx.kind == "op" and ctx.layer_type == "relu"  # noqa: E731
    with tl.fastlog.Recorder(model, keep_op=keep, streaming=opts) as rec:
        rec.log(torch.randn(2, 3, 16, 16))
        rec.log(torch.randn(2, 3, 16, 16))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("cli")
    tl.save(_reference_log(small_cnn), d / "same")
    tl.save(_reference_log(small_cnn, perturb=True), d / "perturbed")
    tl.save(_reference_log(small_cnn_extra_relu), d / "extra")
    _fastlog_bundle(d / "acts.tlfast")
    (d / "plain.txt").write_text("not a bundle\n")
    (d / "empty").mkdir()
    first = {
        "save": ["save", CNN, "-i", SHAPE, "-o", "ref"],
        "summary_json": ["summary", CNN, "-i", SHAPE, "--json"],
        "summary": ["summary", CNN, "--input-shape", SHAPE],
        "graph": ["graph", "models.small:Nested", "-i", "2,4", "-o", "nested.svg", "--rolled", "--depth", "1"],
        "validate": ["validate", CNN, "-i", SHAPE],
        "validate_fail": ["validate", "models.cli_models:CallCounter", "-i", "2,4", "--no-progress"],
        "inspect_fastlog": ["inspect", "acts.tlfast"],
        "bad_missing": ["inspect", "no_such_bundle"],
        "bad_not_bundle": ["inspect", "plain.txt"],
        "bad_shape": ["summary", CNN, "-i", "2,three,16"],
        "bad_factory": ["summary", "models.cli_models:broken_factory", "-i", SHAPE],
        "bad_module": ["validate", "no_such_module:make", "-i", SHAPE],
        "bad_forward": ["summary", "models.cli_models:CallCounter", "-i", "2,5"],
    }
    out = _batch(first, d)
    assert out["save"].returncode == 0, out["save"].stderr
    # A copy with the last bytes of one tensor (conv2d_1_1) flipped: inspect must not read it, a load must.
    shutil.copytree(d / "ref", d / "damaged")
    entry = json.loads((d / "damaged" / "manifest.json").read_text())["tensors"][1]
    blob = d / "damaged" / entry["relative_path"]
    raw = bytearray(blob.read_bytes())
    end = entry["offset"] + entry["length"] if "offset" in entry else len(raw)  # a shard, or one file per tensor
    raw[end - 4 : end] = bytes(b ^ 0xFF for b in raw[end - 4 : end])
    blob.write_bytes(bytes(raw))
    second = {
        "inspect": ["inspect", "damaged", "--json", "--tensors"],
        "bad_damaged": ["diff", "ref", "damaged"],
        "diff_same": ["diff", "ref", "same", "--progress"],
        "diff_perturbed": ["diff", "same", "perturbed", "--top", "3", "--no-progress"],
        "diff_cosine": ["diff", "same", "perturbed", "--metric", "cosine", "--atol", "ATOL", "--json"],
        "diff_extra": ["diff", "same", "extra"],
        "diff_extra_allowed": ["diff", "ref", "extra", "--allow-missing", "--json"],
        "bad_diff_empty": ["diff", "same", "empty"],
        "module_form": [sys.executable, "-m", "torchlens", "--version"],
    }
    second["diff_cosine"][second["diff_cosine"].index("ATOL")] = str(_cosine_threshold())
    out.update(_batch(second, d))
    out["dir"] = d
    return out


def _activations(log: tl.ModelLog) -> dict[str, torch.Tensor]:
    return {e.layer_label: e.activation.detach() for e in log.layer_list}


def _one_minus_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = a.double().flatten(), b.double().flatten()
    return 1.0 - float(x @ y / (x.norm() * y.norm()))


def _cosine_threshold() -> float:
    """A threshold between the two smallest `1 - cos` of the perturbed layers (some diverge, some not)."""
    a, b = _activations(_reference_log(small_cnn)), _activations(_reference_log(small_cnn, perturb=True))
    gaps = sorted({_one_minus_cos(a[k], b[k]) for k in a if not torch.equal(a[k], b[k])})
    assert len(gaps) >= 2
    return (gaps[0] + gaps[1]) / 2


def _check(proc: subprocess.CompletedProcess[str], code: int) -> None:
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


def test_parse_shape_and_in_process_main(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_shape("1,3,224,224") == (1, 3, 224, 224)
    assert parse_shape(" (2, 5) ") == (2, 5)
    assert parse_shape("2x4") == (2, 4)
    assert parse_shape("7,") == (7,)
    for bad in ("", "1,,3", "a,b", "1,-3", "1.5,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid shape"):
            parse_shape(bad)
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"torchlens {tl.__version__}\n"
    assert main(["summary", "models.cli_models:small_cnn", "-i", "1,a"]) == 2  # returned, not raised
    assert capsys.readouterr().err.startswith("torchlens summary: error: argument --input-shape/-i: invalid shape")


def test_console_script_and_module_form(runs: dict[str, Any]) -> None:
    _check(runs["module_form"], 0)
    assert runs["module_form"].stdout == f"torchlens {tl.__version__}\n"
    if SCRIPT.is_file():  # installed by `pip install -e .`; then every command above ran through it
        assert cli_prefix() == [str(SCRIPT)]
        assert "torchlens.cli" in SCRIPT.read_text()


def test_summary_json_matches_the_log(runs: dict[str, Any]) -> None:
    _check(runs["summary_json"], 0)
    data = json.loads(runs["summary_json"].stdout)
    log = _reference_log(small_cnn, layers_to_save=None)
    assert data["model"] == "SmallCNN" and data["input_shapes"] == [[2, 3, 16, 16]] and data["dtype"] == "float32"
    assert data["totals"] == {
        "layers": len(log.layer_logs),
        "layer_passes": len(log),
        "operations": log.num_operations,
        "modules": len(log.module_addresses),
        "params": log.total_params,
        "params_trainable": log.total_params_trainable,
        "params_memory": log.total_params_memory,
        "flops": log.total_flops_forward,
        "macs": log.total_macs_forward,
        "activation_memory": log.total_activation_memory,
    }
    assert [r["label"] for r in data["layers"]] == log.layer_labels
    for row, e in zip(data["layers"], log.layer_list, strict=True):
        assert row["type"] == e.layer_type and row["shape"] == list(e.tensor_shape)
        assert row["params"] == e.num_params_total and row["flops"] == e.flops_forward
        assert row["memory"] == e.tensor_memory and row["module"] == e.containing_module
    assert data["totals"]["params"] == sum(p.numel() for p in small_cnn().parameters())


def test_summary_table(runs: dict[str, Any]) -> None:
    _check(runs["summary"], 0)
    lines = runs["summary"].stdout.splitlines()
    assert lines[0] == "SmallCNN on input 2x3x16x16 (float32)"
    assert lines[1].split() == ["layer", "type", "module", "shape", "dtype", "params", "FLOPs", "memory"]
    log = _reference_log(small_cnn, layers_to_save=None)
    assert [ln.split()[0] for ln in lines[3:-1]] == log.layer_labels
    conv = next(ln for ln in lines if ln.startswith("conv2d_1_1 "))
    assert conv.split()[:5] == ["conv2d_1_1", "conv2d", "conv1:1", "2x8x16x16", "float32"]
    assert lines[-1].startswith(f"{len(log.layer_logs)} layers ({len(log)} passes), {log.num_operations} ops")
    assert f"params {log.total_params:,} " in lines[-1]


def test_graph_writes_the_svg_of_the_options(runs: dict[str, Any]) -> None:
    _check(runs["graph"], 0)
    svg = runs["dir"] / "nested.svg"
    assert runs["graph"].stdout.strip() == "wrote nested.svg (rolled graph of Nested, 8 layer passes)"
    ns = {"s": "http://www.w3.org/2000/svg"}
    root = ET.parse(svg).getroot()
    titles = {
        g.find("s:title", ns).text for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"
    }
    torch.manual_seed(0)
    log = tl.log_forward_pass(Nested().eval(), torch.randn(2, 4), layers_to_save=None)
    collapsed = log.to_dot(vis_mode="rolled", vis_nesting_depth=1)
    # --depth 1: the `block` module is one box; its five layers are not drawn.
    assert titles == {"input_1", "mul_1_6", "output_1", "block"}
    assert all(f'"{t}" [' in collapsed for t in titles)
    assert '"linear_1_1" [' in log.to_dot(vis_mode="rolled")
    assert not list((runs["dir"]).glob("nested")), "graphviz's source file was left behind"


def test_validate(runs: dict[str, Any]) -> None:
    _check(runs["validate"], 0)
    assert runs["validate"].stdout.startswith("validate: small_cnn passed")
    _check(runs["validate_fail"], 1)
    assert runs["validate_fail"].stdout.startswith("validate: CallCounter FAILED")
    assert runs["validate_fail"].stderr.splitlines() == [
        "torchlens: warning: The 0th output layer, output_1, does not match the ground truth output tensor."
    ]
    model = CallCounter()
    assert tl.validate_forward_pass(model, torch.randn(2, 4)) is False  # the same verdict in-process


def test_save_and_inspect_read_no_tensor(runs: dict[str, Any]) -> None:
    _check(runs["inspect"], 0)
    info = json.loads(runs["inspect"].stdout)
    ref = runs["dir"] / "damaged"
    manifest = json.loads((ref / "manifest.json").read_text())
    log = _reference_log(small_cnn)
    assert info["model"] == "SmallCNN"
    assert info["format"] == f"torchlens bundle, io format {manifest['io_format_version']}"
    assert info["layer_passes"] == len(log) and info["operations"] == log.num_operations
    assert info["saved_activations"] == len(log.layers_with_saved_activations)
    assert info["stored_tensors"] == {"activation": manifest["n_activation_blobs"]}
    files = [p for p in ref.rglob("*") if p.is_file() and p.name not in ("manifest.json", "metadata.json")]
    assert info["stored_bytes"] == sum(p.stat().st_size for p in files) > 0
    assert info["dtypes"] == ["float32"] and info["gradients"] is False
    assert info["written_by"].startswith(f"torchlens {tl.__version__}, torch {torch.__version__},")
    assert [t["label"] for t in info["tensors"]] == [f"{label}:1" for label in log.layer_labels[:-1]]
    # The CLI's save logged what the in-process reference logs.
    lazy = tl.load(ref, lazy=True)
    assert torch.equal(lazy["relu_2_5"].materialize_activation(), log["relu_2_5"].activation)
    # conv2d_1_1 was damaged after saving: inspect did not read it, a load does and refuses it.
    with pytest.raises(tl.TorchLensIOError, match="[Cc]hecksum"):
        tl.load(ref)


def test_inspect_fastlog(runs: dict[str, Any]) -> None:
    _check(runs["inspect_fastlog"], 0)
    fields = dict(re.split(r"\s{2,}", ln, maxsplit=1) for ln in runs["inspect_fastlog"].stdout.splitlines())
    rec = tl.fastlog.load(runs["dir"] / "acts.tlfast")
    assert fields["format"] == "fastlog directory, format 1"
    assert fields["passes"] == "2" == str(rec.n_passes)
    assert fields["records"] == "4" == str(len(rec))
    assert fields["record kinds"] == "op: 4" and fields["layer types"] == "relu: 4"
    nbytes = sum(r.metadata["nbytes"] for r in rec.records)
    assert nbytes == 2 * (2 * 8 * 16 * 16 + 2 * 16 * 8 * 8) * 4
    assert fields["stored tensors"] == "4" and fields["stored bytes"].endswith(f"({nbytes:,} bytes)")


def test_diff_identical_runs_pass(runs: dict[str, Any]) -> None:
    # `ref` was written by the CLI's own process, `same` by this one: the same values.
    proc = runs["diff_same"]
    _check(proc, 0)
    lines = proc.stdout.splitlines()
    n = len(_reference_log(small_cnn))
    assert lines[:2] == [f"a: ref (SmallCNN, {n} layer passes)", f"b: same (SmallCNN, {n} layer passes)"]
    assert lines[2] == f"0 of {n} layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by label)"
    assert lines[-1] == f"OK: {n} layers within tolerance"
    assert "comparing layers" in proc.stderr  # --progress forces the bar off a terminal


def test_diff_perturbed_weight_fails_with_the_worst_layers(runs: dict[str, Any]) -> None:
    proc = runs["diff_perturbed"]
    _check(proc, 1)
    log_a, log_b = _reference_log(small_cnn), _reference_log(small_cnn, perturb=True)
    a, b = _activations(log_a), _activations(log_b)
    diverged = [k for k in a if not torch.allclose(b[k], a[k], rtol=1e-5, atol=1e-6)]
    assert diverged[0] == "conv2d_2_4" and "relu_1_2" not in diverged  # the layers before the change agree
    lines = proc.stdout.splitlines()
    assert (
        lines[2] == f"{len(diverged)} of {len(a)} layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by label)"
    )
    rows = [ln.split() for ln in lines[4:-1]]
    worst = tl.compare_logs(log_a, log_b).worst(3)
    assert [r[1] for r in rows] == [w.label_a for w in worst] and all(r[0] == "*" for r in rows)
    for r in rows:
        assert float(r[4]) == pytest.approx(float((a[r[1]].double() - b[r[1]].double()).abs().max()), rel=1e-2)
    assert lines[-1] == "FAIL: first diverging layer: conv2d_2_4" and proc.stderr == ""


def test_diff_cosine_metric(runs: dict[str, Any]) -> None:
    proc = runs["diff_cosine"]
    threshold = _cosine_threshold()
    a, b = _activations(_reference_log(small_cnn)), _activations(_reference_log(small_cnn, perturb=True))
    expected = [k for k in a if _one_minus_cos(a[k], b[k]) > threshold]
    _check(proc, 1)
    data = json.loads(proc.stdout)
    assert data["metric"] == "cosine" and data["matched_by"] == "label" and data["failed"] is True
    assert [r["label_a"] for r in data["rows"] if r["diverged"]] == expected
    assert data["first_diverging"] == expected[0]
    assert 0 < len(expected) < sum(1 for k in a if not torch.equal(a[k], b[k]))
    for r in data["rows"]:
        exact = torch.equal(a[r["label_a"]], b[r["label_a"]])
        assert r["cosine"] == (0.0 if exact else pytest.approx(_one_minus_cos(a[r["label_a"]], b[r["label_a"]])))


def test_diff_matches_layers_when_labels_differ(runs: dict[str, Any]) -> None:
    # `extra` applies one more (idempotent) ReLU: the same values, every later label shifted.
    strict, allowed = runs["diff_extra"], runs["diff_extra_allowed"]
    _check(strict, 1)
    assert "layers diverge (allclose, atol=1e-06, rtol=1e-05; matched by supergraph); missing in a: relu_2_3" in (
        strict.stdout
    )
    assert strict.stdout.splitlines()[-1] == "FAIL: missing layers: relu_2_3"
    # `ref` comes from another process: its inputs' and outputs' fingerprints differ, and still match.
    _check(allowed, 0)
    data = json.loads(allowed.stdout)
    assert data["matched_by"] == "supergraph" and data["failed"] is False and data["missing_in_a"] == ["relu_2_3"]
    pairs = [(r["label_a"], r["label_b"]) for r in data["rows"]]
    ref, extra = _reference_log(small_cnn).layer_labels, _reference_log(small_cnn_extra_relu).layer_labels
    assert pairs == list(zip(ref, [lab for lab in extra if lab != "relu_2_3"], strict=True))
    assert ("maxpool2d_1_3", "maxpool2d_1_4") in pairs
    assert all(r["max_abs"] == 0.0 and not r["diverged"] for r in data["rows"])


def test_bad_input_is_one_line_and_exit_2(runs: dict[str, Any]) -> None:
    expected = {
        "bad_missing": "torchlens: error: no bundle at 'no_such_bundle' (no such file or directory)",
        "bad_not_bundle": "torchlens: error: not a readable torchlens bundle: ",
        "bad_diff_empty": "torchlens: error: not a readable torchlens bundle: ",
        "bad_shape": "torchlens summary: error: argument --input-shape/-i: invalid shape '2,three,16'",
        "bad_factory": "torchlens: error: factory models.cli_models:broken_factory raised ValueError: "
        "this factory fails on purpose",
        "bad_module": "torchlens: error: cannot import module 'no_such_module': No module named 'no_such_module'",
        "bad_damaged": "torchlens: error: cannot read a saved activation: ",
        "bad_forward": "torchlens: error: logging the forward pass failed on input 2x5 (float32): RuntimeError: ",
    }
    for name, start in expected.items():
        proc = runs[name]
        assert proc.returncode == 2, (name, proc.stdout, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(start), (name, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == "", name
