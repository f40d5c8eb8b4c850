"""tl.fastlog: predicate-selected recording (spec §10)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens import fastlog

KEEP_RELU = lambda ctx: ctx.kind == "op" and ctx.layer_type == "relu"  # noqa: E731


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _stream(path: Path, retain: bool = False) -> tl.StreamingOptions:
    return tl.StreamingOptions(bundle_path=str(path), retain_in_memory=retain)


def test_readme_snippet_runs_as_written() -> None:
    model, x = TinyMLP(), torch.randn(2, 4)
    keep_op = lambda ctx: ctx.kind == "op" and ctx.layer_type == "relu"  # noqa: E731
    recording = tl.fastlog.record(model, x, keep_op=keep_op)
    assert recording.summary() == "Recording(n_passes=1, n_records=2)"
    assert [r.ctx.label for r in recording] == ["relu_1_3_raw", "relu_2_5_raw"]
    assert recording[0].ctx.parent_labels == ("linear_1_2_raw",)
    assert recording[0].ctx.module_address == "net.1"
    assert len(recording["relu_1_3_raw"]) == 1


def test_namespace() -> None:
    for name in (
        "record Recorder dry_run load recover cleanup_partial RecordingOptions CaptureSpec RecordContext "
        "ModuleStackFrame ActivationRecord Recording RecordingTrace RecordingConfigError RecorderStateError "
        "RecoveryError BundleNotFinalizedError RecordContextFieldError PredicateError"
    ).split():
        assert name in fastlog.__all__, name
        assert hasattr(fastlog, name)
    assert issubclass(fastlog.RecordingConfigError, ValueError)
    assert issubclass(fastlog.RecordContextFieldError, AttributeError)
    assert "fastlog" in tl.__all__


def test_resnet50_relu_outputs_equal_forward_hooks() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    seen: list[torch.Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, o: seen.append(o.clone()))
        for m in model.modules()
        if isinstance(m, nn.ReLU)
    ]
    with torch.no_grad():
        expected_out = model(x)
    for h in handles:
        h.remove()
    with torch.no_grad():
        out, rec = tl.fastlog.record(model, x, keep_op=KEEP_RELU, return_output=True)
    assert torch.equal(out, expected_out)
    assert len(rec) == len(seen) == 49
    for r, t in zip(rec, seen, strict=True):
        assert torch.equal(r.ram_payload, t)


def test_dry_run_tree_matches_reference() -> None:
    trace = tl.fastlog.dry_run(TinyMLP(), torch.randn(2, 4), keep_op=KEEP_RELU)
    text = trace.print_tree()
    lines = text.splitlines()
    assert lines[0] == "0001 input input [self] skip"
    assert lines[1] == "└─ 0002 module_enter module_enter [] skip"
    assert lines[2] == "  └─ 0003 module_enter module_enter [net] skip"
    assert lines[4] == "    └─ 0005 op linear [net.0] skip"
    assert lines[7] == "    └─ 0008 op relu [net.1] kept"
    assert lines[-2] == "  └─ 0019 module_exit module_exit [net] skip"
    assert lines[-1] == "└─ 0020 module_exit module_exit [] skip"
    summary = trace.summary().splitlines()
    assert summary[0] == "RecordingTrace(total_events=20, kept=2, rejected=18)"
    assert summary[1] == "by_kind: input=1, module_enter=7, module_exit=7, op=5"
    assert summary[2] == "by_op_type: linear=3, relu=2"
    dot = trace.show_graph()
    assert '"relu_1_3_raw"' in dot and '"linear_1_2_raw" -> "relu_1_3_raw"' in dot and "#98FB98" in dot
    linear_only = trace.repredicate(lambda c: c.layer_type == "linear")
    assert sum(1 for c in linear_only.kept()) == 3


def test_record_context_fields_and_history() -> None:
    seen = {}

    def keep(ctx: fastlog.RecordContext) -> bool:
        if ctx.label == "relu_2_5_raw":
            seen["recent"] = [c.label for c in ctx.recent_events]
            seen["recent_ops"] = [c.label for c in ctx.recent_ops]
            seen["stack"] = [f.module_address for f in ctx.module_stack]
            seen["shape"] = ctx.tensor_shape
            with pytest.raises(fastlog.RecordContextFieldError, match="RecordContext has no field 'nope'"):
                _ = ctx.nope
            with pytest.raises(AttributeError):
                ctx.kind = "x"  # type: ignore[misc]
        return None

    tl.fastlog.record(TinyMLP(), torch.randn(2, 4), keep_op=keep, history_size=4)
    assert seen["recent"] == ["linear_2_4_raw", "net.2:exit:1", "net.3:enter:1"][-4:] or len(seen["recent"]) == 4
    assert seen["recent_ops"] == ["linear_2_4_raw"]
    assert seen["stack"] == ["", "net", "net.3"]
    assert seen["shape"] == (2, 8)


def test_keep_module_metadata_only_and_defaults() -> None:
    rec = tl.fastlog.record(TinyMLP(), torch.randn(2, 4), keep_module=lambda c: c.kind == "module_exit")
    assert {r.ctx.kind for r in rec} == {"module_exit"}
    assert all(r.ram_payload is None for r in rec)
    assert "net.0:exit:1" in rec.by_label
    rec = tl.fastlog.record(TinyMLP(), torch.randn(2, 4), default_op=True)
    assert [r.ctx.layer_type for r in rec] == ["linear", "relu", "linear", "relu", "linear"]


def test_config_errors() -> None:
    m, x = TinyMLP(), torch.randn(2, 4)
    with pytest.raises(fastlog.RecordingConfigError, match="requires a predicate"):
        tl.fastlog.record(m, x)
    with pytest.raises(fastlog.RecordingConfigError):
        tl.fastlog.record(m, x, keep_op=KEEP_RELU, history_size=2000)
    with pytest.raises(fastlog.RecordingConfigError):
        tl.fastlog.record(m, x, keep_op=KEEP_RELU, on_predicate_error="ignore")
    with pytest.raises(fastlog.RecordingConfigError):
        tl.fastlog.record(m, x, keep_op=KEEP_RELU, postprocess="labels?")
    with pytest.raises(fastlog.TrainingModeConfigError):
        tl.fastlog.record(m, x, keep_op=KEEP_RELU, train_mode=True, default_op=True)
    rec = fastlog.Recorder(m, keep_op=KEEP_RELU)
    with pytest.raises(fastlog.RecorderStateError):
        rec.log(x)
    with pytest.raises(fastlog.RecorderStateError):
        _ = rec.recording
    with rec:
        rec.log(x)
        with pytest.raises(fastlog.RecorderStateError):
            rec.__enter__()
    assert rec.recording.n_passes == 1


def test_predicate_error_policy() -> None:
    m, x = TinyMLP(), torch.randn(2, 4)

    def bad(ctx: fastlog.RecordContext) -> bool:
        if ctx.layer_type == "relu":
            raise ZeroDivisionError("boom")
        return False

    with pytest.raises(
        fastlog.PredicateError, match="fastlog predicate failed during recording: ZeroDivisionError: boom"
    ) as ei:
        tl.fastlog.record(m, x, keep_op=bad)
    assert ei.value.total_count == 2 and len(ei.value.failures) == 2
    assert ei.value.failures[0].label == "relu_1_3_raw"

    with pytest.raises(fastlog.PredicateError) as ei:
        tl.fastlog.record(m, x, keep_op=bad, max_predicate_failures=1)
    assert len(ei.value.failures) == 1 and ei.value.overflow == 1

    calls = []

    def bad_counted(ctx: fastlog.RecordContext) -> bool:
        calls.append(ctx.label)
        return bad(ctx)

    with pytest.raises(fastlog.PredicateError) as ei:
        tl.fastlog.record(m, x, keep_op=bad_counted, on_predicate_error="fail-fast")
    assert calls[-1] == "relu_1_3_raw" and ei.value.ctx.label == "relu_1_3_raw"

    with pytest.raises(fastlog.PredicateError, match="must return bool, CaptureSpec, or None"):
        tl.fastlog.record(m, x, keep_op=lambda c: "yes")
    # the model and torch are usable afterwards
    log = tl.log_forward_pass(m, x)
    assert log.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "relu_2_4", "linear_3_5", "output_1"]
    assert torch.equal(log["output_1"].activation, m(x))


def test_capture_spec_dtype_downcast_and_postfunc() -> None:
    m, x = TinyMLP(), torch.randn(2, 4)
    spec = fastlog.CaptureSpec(dtype=torch.bfloat16)
    rec = tl.fastlog.record(m, x, keep_op=lambda c: spec if c.layer_type == "relu" else False)
    assert all(r.ram_payload.dtype == torch.bfloat16 for r in rec)
    with torch.no_grad():
        h = torch.relu(m.net[0](x))
    assert torch.equal(rec[0].ram_payload, h.to(torch.bfloat16))
    rec = tl.fastlog.record(m, x, keep_op=KEEP_RELU, activation_postfunc=lambda t: t.mean(), save_raw_activation=False)
    assert rec[0].ram_payload is None and rec[0].transformed_ram_payload.shape == ()
    meta_only = fastlog.CaptureSpec(save_activation=False)
    rec = tl.fastlog.record(m, x, keep_op=lambda c: meta_only if c.layer_type == "relu" else False)
    assert len(rec) == 2 and rec[0].ram_payload is None


def test_keep_grad_training() -> None:
    m, x = TinyMLP(), torch.randn(2, 4)
    rec = tl.fastlog.record(
        m, x, keep_op=lambda c: fastlog.CaptureSpec(keep_grad=True) if c.layer_type == "relu" else False
    )
    act = rec[0].ram_payload
    assert act.requires_grad and act.grad_fn is not None
    act.square().mean().backward()
    assert m.net[0].weight.grad is not None and m.net[0].weight.grad.abs().sum() > 0
    m.zero_grad()
    rec = tl.fastlog.record(m, x, keep_op=KEEP_RELU, train_mode=True)
    assert rec[0].spec.keep_grad and rec[0].ram_payload.requires_grad
    with pytest.raises(fastlog.RecordingConfigError, match="disk-only"):
        tl.fastlog.Recorder(
            m, keep_op=KEEP_RELU, default_op=fastlog.CaptureSpec(keep_grad=True), streaming=_stream(Path("/tmp/never"))
        )


def test_inplace_after_record_is_copy_on_write() -> None:
    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(x)
            y.add_(100)
            return y

    x = torch.randn(3, 3)
    rec = tl.fastlog.record(M(), x, keep_op=KEEP_RELU)
    assert torch.equal(rec[0].ram_payload, torch.relu(x))


def test_recorder_1000_inputs_disk_bounded_and_load(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    xs = [torch.randn(2, 16) for _ in range(1000)]
    path = tmp_path / "acts.tlfast"
    with fastlog.Recorder(m, keep_op=KEEP_RELU, streaming=_stream(path)) as rec:
        rec.log_many(xs, progress=False)
    recording = rec.recording
    assert recording.n_records == 1000 and all(r.ram_payload is None for r in recording)
    final = Path(recording.bundle_path)
    assert final == tmp_path / "rank_00" / "acts.tlfast" and (final / "manifest.json").is_file()
    assert not list(tmp_path.glob("rank_00/acts.tlfast.tmp.*"))
    loaded = fastlog.load(path, load_payloads=True, verify=True)
    assert loaded.n_passes == 1000 and len(loaded) == 1000
    with torch.no_grad():
        for r in loaded:
            assert torch.equal(r.disk_payload, torch.relu(m[0](xs[r.ctx.pass_index - 1])))
    plain = fastlog.load(final)
    assert plain[0].disk_payload is None and plain[0].metadata["relative_path"].startswith("blobs/")
    st = pytest.importorskip("safetensors.torch")
    blob = st.load_file(str(final / plain[0].metadata["relative_path"]))
    assert torch.equal(blob["relu_1_3_raw::activation"], loaded[0].disk_payload)
    manifest = json.loads((final / "manifest.json").read_text())
    assert manifest["bundle_format"] == "fastlog-directory"


def test_ram_and_disk_mirror(tmp_path: Path) -> None:
    m, x = TinyMLP(), torch.randn(2, 4)
    rec = tl.fastlog.record(m, x, keep_op=KEEP_RELU, streaming=_stream(tmp_path / "b.tlfast", retain=True))
    assert rec[0].ram_payload is not None and rec[0].metadata["blob_id"] == 1
    loaded = fastlog.load(rec.bundle_path, load_payloads=True)
    assert torch.equal(loaded[1].disk_payload, rec[1].ram_payload)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fastlog.load(tmp_path / "missing.tlfast")
    with pytest.raises(fastlog.RecoveryError, match="no recoverable index"):
        fastlog.recover(tmp_path / "missing.tlfast")
    d = tmp_path / "p.tlfast"
    d.mkdir()
    (d / "fastlog_index.jsonl").write_text("")
    with pytest.raises(fastlog.BundleNotFinalizedError, match="use tl.fastlog.recover"):
        fastlog.load(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(fastlog.BundleNotFinalizedError):
        fastlog.load(d)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError):
        fastlog.read_blob(bad)


def test_recover_after_exception_and_corruption(tmp_path: Path) -> None:
    m = TinyMLP()
    path = tmp_path / "r.tlfast"
    with (
        pytest.raises(RuntimeError, match="stop"),
        fastlog.Recorder(m, keep_op=KEEP_RELU, streaming=_stream(path)) as rec,
    ):
        for _ in range(5):
            rec.log(torch.randn(2, 4))
        raise RuntimeError("stop")
    with pytest.raises(FileNotFoundError):
        fastlog.load(path)
    partial = next((tmp_path / "rank_00").glob("r.tlfast.tmp.*"))
    idx = partial / "fastlog_index.jsonl"
    lines = idx.read_text().splitlines()
    assert len(lines) == 10
    # corrupt: one missing blob, one hash mismatch, one malformed line, a truncated tail
    first, second = json.loads(lines[0]), json.loads(lines[1])
    (partial / first["metadata"]["relative_path"]).unlink()
    p2 = partial / second["metadata"]["relative_path"]
    p2.write_bytes(p2.read_bytes()[:-1] + b"\x00")
    lines[2] = "{broken"
    idx.write_text("\n".join(lines) + "\n" + lines[3][:20])
    rec = fastlog.recover(path, load_payloads=True)
    assert rec.recovered and len(rec) == 7
    assert "truncated tail" in rec.recovery_warnings and "malformed line 3" in rec.recovery_warnings
    assert "missing blob 1" in rec.recovery_warnings and "hash mismatch 2" in rec.recovery_warnings
    assert all(r.disk_payload is not None for r in rec)
    removed = fastlog.cleanup_partial(tmp_path / "rank_00" / "r.tlfast")
    assert removed and not partial.exists()


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, torch, torchlens as tl
    from torch import nn
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    keep = lambda c: c.layer_type == "relu"
    opts = tl.StreamingOptions(bundle_path=sys.argv[1], retain_in_memory=False)
    with tl.fastlog.Recorder(m, keep_op=keep, streaming=opts) as rec:
        i = 0
        while True:
            g = torch.Generator().manual_seed(i)
            rec.log(torch.randn(2, 16, generator=g), sample_id=i)
            i += 1
            if i == 50:
                print("READY", flush=True)
    """
)


def test_kill_9_mid_recording_then_recover(tmp_path: Path) -> None:
    path = tmp_path / "k.tlfast"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the writer thread is asynchronous: wait for 50 index lines
            idx = list((tmp_path / "rank_00").glob("k.tlfast.tmp.*/fastlog_index.jsonl"))
            if idx and idx[0].read_bytes().count(b"\n") >= 50:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    with pytest.raises((fastlog.BundleNotFinalizedError, FileNotFoundError)):
        fastlog.load(path)
    rec = fastlog.recover(path, load_payloads=True)
    assert rec.recovered and len(rec) >= 50
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        for r in rec:
            i = r.ctx.sample_id
            x = torch.randn(2, 16, generator=torch.Generator().manual_seed(i))
            assert torch.equal(r.disk_payload, torch.relu(m[0](x)))


def test_enrich_and_to_pandas() -> None:
    pytest.importorskip("pandas")
    m = TinyMLP()
    rec = tl.fastlog.record(m, torch.randn(2, 4), keep_op=KEEP_RELU, postprocess="all-feasible")
    assert rec[0].metadata["module_path_strings"] == ("", "net", "net.1")
    df = rec.to_pandas()
    assert list(df.columns) == ["kind", "label", "pass_index", "event_index", "save_activation", "save_metadata"]
    assert len(df) == 2


def test_torch_left_clean() -> None:
    m, x = TinyMLP(), torch.randn(2, 4)
    tl.fastlog.record(m, x, keep_op=KEEP_RELU)
    from torchlens._capture import hot

    assert hot.get_session() is None
    assert not any(hasattr(t, "_tl_fastlog") for t in (x, *m.parameters()))


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.relu(self.fc(x))
        return x


def test_final_labels_match_log_forward_pass() -> None:
    m, x = Recurrent(), torch.randn(2, 5)
    rec = tl.fastlog.record(m, x, keep_op=KEEP_RELU, postprocess="labels")
    log = tl.log_forward_pass(m, x, layers_to_save=None)
    assert [r.ctx.label for r in rec] == [layer.layer_label for layer in log if layer.layer_type == "relu"]
    assert [r.ctx.raw_label for r in rec] == ["relu_1_3_raw", "relu_2_5_raw", "relu_3_7_raw"]
    assert len(rec["relu_1_2"]) == 3 and rec["relu_1_3_raw"][0] is rec[0]


def test_final_labels_resnet50() -> None:
    torchvision = pytest.importorskip("torchvision")
    m, x = torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        rec = tl.fastlog.record(m, x, keep_op=KEEP_RELU, postprocess="labels")
        log = tl.log_forward_pass(m, x, layers_to_save=None)
    assert [r.ctx.label for r in rec] == [layer.layer_label for layer in log if layer.layer_type == "relu"]


def test_final_labels_fall_back_on_data_dependent_flow() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:
                x = torch.sigmoid(x)
            return torch.relu(x)

    with fastlog.Recorder(Branchy(), keep_op=KEEP_RELU, final_labels=True) as r:
        r.log(torch.ones(3))
        with pytest.warns(RuntimeWarning, match="keep raw labels"):
            r.log(-torch.ones(3))
    recs = r.recording
    assert recs[0].ctx.label == "relu_1_4"  # sum, gt, sigmoid, relu
    assert recs[1].ctx.label == "relu_1_4_raw"


def test_recorder_progress_bar(capsys: pytest.CaptureFixture[str]) -> None:
    with fastlog.Recorder(TinyMLP(), keep_op=KEEP_RELU) as r:
        r.log_many([torch.randn(2, 4) for _ in range(5)], sample_ids=range(10, 15), progress=True)
    assert r.recording.n_passes == 5 and r.recording[0].ctx.sample_id == 10
    assert "5/5" in capsys.readouterr().err


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc")
def test_disk_only_memory_stays_bounded(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(256, 4096), nn.ReLU()).eval()
    x = torch.randn(4, 256)
    with torch.no_grad(), fastlog.Recorder(m, keep_op=KEEP_RELU, streaming=_stream(tmp_path / "m.tlfast")) as rec:
        for i in range(20):
            rec.log(x, sample_id=i)  # warm up allocator and writer
        before = _rss_bytes()
        for i in range(1000):
            rec.log(x, sample_id=i)
        after = _rss_bytes()
    written = 1000 * 4 * 4096 * 4  # 64 MiB of payloads
    assert after - before < written // 4
    assert rec.recording.n_records == 1020
