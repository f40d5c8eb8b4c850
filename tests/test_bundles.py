"""Portable bundles: save/load (eager, lazy), streaming, crash recovery, hostile input (spec §9, §8.5)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens import TorchLensIOError
from torchlens.io import _shards

REPO = Path(__file__).resolve().parents[1]


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)
        self.register_buffer("scale", torch.tensor(2.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = self.fc(x) * self.scale
            x = torch.relu(x)
        return x.sum(dim=1), (x > 0)


def _small_log(**kw):
    torch.manual_seed(0)
    return tl.log_forward_pass(Recurrent(), torch.randn(2, 5), **kw)


def _assert_same_log(a, b) -> None:
    assert a.layer_labels == b.layer_labels
    assert str(a) == str(b)
    assert a.to_dot() == b.to_dot()
    for x, y in zip(a, b, strict=True):
        assert x.lookup_keys == y.lookup_keys
        assert x.parent_layers == y.parent_layers
        assert x.containing_modules == y.containing_modules
        assert x.has_saved_activations == y.has_saved_activations


def _assert_same_activations(a, b) -> None:
    for x, y in zip(a, b, strict=True):
        ta, tb = x.activation, y.activation
        if ta is None:
            assert tb is None
            continue
        assert tb is not None and ta.dtype == tb.dtype and ta.shape == tb.shape
        assert torch.equal(ta.reshape(-1).view(torch.uint8), tb.reshape(-1).view(torch.uint8)), x.layer_label


def _rewrite_manifest(bundle: Path, fn) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


def _set_metadata(bundle: Path, data: bytes) -> None:
    (bundle / "metadata.json").write_bytes(data)

    def fix(m):
        m["metadata"]["bytes"] = len(data)
        m["metadata"]["sha256"] = hashlib.sha256(data).hexdigest()

    _rewrite_manifest(bundle, fix)


# --------------------------------------------------------------------------- round trips
def test_resnet50_all_activations_bit_exact_eager_and_lazy(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet50().eval()
    log = tl.log_forward_pass(model, torch.randn(1, 3, 224, 224))
    path = tmp_path / "r50"
    tl.save(log, path)
    eager = tl.load(path)
    _assert_same_log(log, eager)
    _assert_same_activations(log, eager)
    assert eager._loaded_from_bundle

    # Lazy: only metadata is read. Corrupting a tensor's bytes (same size) does not disturb the
    # lazy load...
    t5 = json.loads((path / "manifest.json").read_text())["tensors"][5]
    blob = path / t5["relative_path"]  # its shard (io format 2)
    last = t5["offset"] + t5["length"] - 1
    raw = bytearray(blob.read_bytes())
    raw[last] ^= 0xFF
    blob.write_bytes(bytes(raw))
    lazy = tl.load(path, lazy=True)
    _assert_same_log(log, lazy)
    assert all(e.activation is None for e in lazy)
    assert lazy.num_tensors_saved == log.num_tensors_saved
    # ... but materializing that tensor, or an eager load, fails on its checksum.
    bad_id = t5["blob_id"]
    bad = [e for e in lazy if e.activation_ref is not None and e.activation_ref.blob_id == bad_id]
    with pytest.raises(TorchLensIOError, match="checksum mismatch"):
        bad[0].materialize_activation()
    with pytest.raises(TorchLensIOError, match=f"Checksum mismatch for blob_id={bad_id}"):
        tl.load(path)
    raw[last] ^= 0xFF
    blob.write_bytes(bytes(raw))
    for x, y in zip(log, lazy, strict=True):
        t = y.materialize_activation()
        assert torch.equal(x.activation, t)
        assert y.activation is t
    shutil.rmtree(path)


def test_small_model_round_trip_and_model_log_methods(tmp_path: Path) -> None:
    log = _small_log()
    log.save(tmp_path / "b")
    back = tl.ModelLog.load(tmp_path / "b")
    _assert_same_log(log, back)
    _assert_same_activations(log, back)
    assert back["fc:2"].layer_label == log["fc:2"].layer_label
    # Per-call extras (call stacks, argument layout, timings) survive without the model.
    for name in ("func_call_stack", "func_time", "num_args", "parent_layer_arg_locs", "func_argnames"):
        for x, y in zip(log, back, strict=True):
            if hasattr(x, name):
                assert repr(getattr(x, name)) == repr(getattr(y, name)), (name, x.layer_label)
    assert back.random_seed_used == log.random_seed_used
    assert back.total_params == log.total_params
    assert all(p.param is None for p in back._data.params)
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert list(manifest)[:7] == [
        "io_format_version",
        "torchlens_version",
        "torch_version",
        "python_version",
        "platform",
        "created_at",
        "bundle_format",
    ]
    assert manifest["n_layers"] == len(log)
    # Outputs share their producer's blob; the bool output keeps its dtype.
    assert back[-1].activation.dtype == torch.bool
    # Saving a lazily loaded log copies the blobs after verifying them.
    lazy = tl.load(tmp_path / "b", lazy=True)
    tl.save(lazy, tmp_path / "c")
    _assert_same_activations(log, tl.load(tmp_path / "c"))


def test_metadata_only_and_selective(tmp_path: Path) -> None:
    log = _small_log(layers_to_save=None)
    tl.save(log, tmp_path / "none")
    back = tl.load(tmp_path / "none")
    assert back.num_tensors_saved == 0
    _assert_same_log(log, back)
    sel = _small_log(layers_to_save=["linear_1_1"])
    tl.save(sel, tmp_path / "sel")
    back = tl.load(tmp_path / "sel")
    assert back.layers_with_saved_activations == sel.layers_with_saved_activations
    _assert_same_activations(sel, back)


def test_existing_path_overwrite_and_cleanup(tmp_path: Path) -> None:
    log = _small_log()
    tl.save(log, tmp_path / "b")
    with pytest.raises(FileExistsError):
        tl.save(log, tmp_path / "b")
    tl.save(log, tmp_path / "b", overwrite=True)
    assert not list(tmp_path.glob("b.bak.*"))
    tl.load(tmp_path / "b")
    (tmp_path / "b.tmp.0123456789abcdef0123456789abcdef").mkdir()
    (tmp_path / "b.tmp.0123456789abcdef0123456789abcdef" / "PARTIAL").write_text("")
    (tmp_path / "b.tmp.ffffffffffffffffffffffffffffffff").mkdir()
    with pytest.warns(UserWarning, match="not marked PARTIAL"):
        removed = tl.cleanup_tmp(tmp_path / "b")
    assert [Path(p).name for p in removed] == ["b.tmp.0123456789abcdef0123456789abcdef"]
    assert tl.cleanup_tmp(tmp_path / "b", force=True)


def test_unsupported_tensor_strict_and_lenient(tmp_path: Path) -> None:
    log = _small_log()
    nid = log._node_ids[1]
    # float8_e8m0fnu has no code the reference safetensors reader maps to torch: not in the table.
    log._saved[nid] = log._saved[nid].to(torch.float8_e8m0fnu)
    with pytest.raises(TorchLensIOError, match="Unsupported tensor for bundle save at"):
        tl.save(log, tmp_path / "s")
    assert list(tmp_path.glob("s.tmp.*/PARTIAL"))
    tl.save(log, tmp_path / "l", strict=False)
    m = json.loads((tmp_path / "l" / "manifest.json").read_text())
    assert m["unsupported_tensors"][0]["reason"].startswith("dtype")
    back = tl.load(tmp_path / "l")
    assert not back[1].has_saved_activations


# --------------------------------------------------------------------------- streaming
def test_streaming_all_not_kept_in_memory(tmp_path: Path) -> None:
    ref = _small_log(random_seed=3)
    opts = tl.StreamingOptions(bundle_path=str(tmp_path / "s"), retain_in_memory=False)
    log = _small_log(random_seed=3, streaming=opts)
    assert log._saved == {}
    assert all(e.activation is None and e.has_saved_activations for e in log)
    assert log.layers_with_saved_activations == ref.layers_with_saved_activations
    for x, y in zip(ref, log, strict=True):
        assert torch.equal(x.activation, y.materialize_activation())
    back = tl.load(tmp_path / "s")
    _assert_same_activations(ref, back)
    assert not list(tmp_path.glob("s.tmp.*"))


def test_streaming_selective_and_deprecated_flat_kwargs(tmp_path: Path) -> None:
    ref = _small_log(random_seed=4, layers_to_save=["relu"])
    with pytest.warns(DeprecationWarning):
        log = _small_log(random_seed=4, layers_to_save=["relu"], save_activations_to=str(tmp_path / "s"))
    _assert_same_activations(ref, log)
    back = tl.load(tmp_path / "s")
    assert back.layers_with_saved_activations == ref.layers_with_saved_activations
    _assert_same_activations(ref, back)


def test_streaming_writes_values_from_before_later_inplace_ops(tmp_path: Path) -> None:
    class InPlace(nn.Module):
        def forward(self, x):
            y = x * 2
            y.add_(1)
            return y.relu_()

    x = torch.randn(3, 4)
    log = tl.log_forward_pass(InPlace(), x, streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "s")))
    back = tl.load(tmp_path / "s")
    _assert_same_activations(log, back)
    assert torch.equal(back["mul_1_1"].activation, x * 2)


def test_streaming_refuses_existing_path(tmp_path: Path) -> None:
    (tmp_path / "s").mkdir()
    with pytest.raises(TorchLensIOError, match="already exists"):
        _small_log(streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "s")))


def _run_py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "python"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def test_streaming_peak_memory_bounded(tmp_path: Path) -> None:
    """Activations (about 600 MB) far exceed the memory growth the capture is allowed (250 MB)."""
    code = """
    import resource, sys, torch, torchlens as tl
    from torch import nn
    import torchlens.io._stream as stream
    stream.STREAM_QUEUE_BYTES = 32 << 20
    class Big(nn.Module):
        def forward(self, x):
            for _ in range(150):
                x = torch.sin(x)
            return x
    x = torch.randn(1 << 20)  # 4 MB per activation, 151 activations
    tl.log_forward_pass(Big(), torch.randn(8), layers_to_save=None)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    log = tl.log_forward_pass(Big(), x, streaming=tl.StreamingOptions(bundle_path=sys.argv[1], retain_in_memory=False))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    total = sum(e.tensor_memory for e in log)
    print(total, (peak - base) * 1024)
    """
    r = _run_py(code, str(tmp_path / "big"))
    assert r.returncode == 0, r.stderr[-3000:]
    total, growth = map(int, r.stdout.split())
    assert total > 600e6
    assert growth < 250e6, f"peak RSS grew by {growth / 1e6:.0f} MB while streaming {total / 1e6:.0f} MB"
    back = tl.load(tmp_path / "big", lazy=True)
    assert back.num_tensors_saved == len(back)
    t = back[-2].materialize_activation()
    assert t.shape == (1 << 20,)
    shutil.rmtree(tmp_path / "big")  # pytest keeps recent tmp dirs; do not leave 600 MB behind


@pytest.mark.parametrize("settle", [0.0, 1.0])
def test_kill9_during_streaming_then_recover(tmp_path: Path, settle: float) -> None:
    code = """
    import os, signal, sys, time, torch, torchlens as tl
    from torch import nn
    class Dies(nn.Module):
        def __init__(self, die):
            super().__init__()
            self.fc = nn.Linear(16, 16)
            self.die = die
        def forward(self, x):
            for i in range(200):
                x = torch.tanh(self.fc(x))
                if self.die and i == 150:
                    time.sleep(float(sys.argv[3]))  # 1.0: let the writers catch up; 0.0: kill with a full queue
                    os.kill(os.getpid(), signal.SIGKILL)
            return x
    torch.manual_seed(0)
    m = Dies(die=sys.argv[2] == "die")
    x = torch.randn(4, 16)
    log = tl.log_forward_pass(m, x, random_seed=7, streaming=tl.StreamingOptions(bundle_path=sys.argv[1]))
    """
    target = tmp_path / "s"
    r = _run_py(code, str(target), "die", str(settle))
    assert r.returncode == -9
    assert not target.exists()
    with pytest.raises(TorchLensIOError, match="recover_bundle"):
        tl.load(target)
    (tmp_dir,) = tmp_path.glob("s.tmp.*")
    with pytest.raises(TorchLensIOError, match="recover_bundle"):
        tl.load(tmp_dir)
    try:
        assert tl.recover_bundle(target) == str(target)
    except TorchLensIOError as e:
        # Killed with everything still queued: nothing was journaled yet, and recovery says so.
        assert not settle and "nothing to recover" in str(e)
        return
    rec = tl.load(target)
    assert tl.load(target, lazy=True).num_tensors_saved == rec.num_tensors_saved
    assert rec.num_tensors_saved > (100 if settle else -1)
    # Reference: the same model and seed, not killed, in this process.
    r2 = _run_py(code, str(tmp_path / "full"), "live", "0")
    assert r2.returncode == 0, r2.stderr[-3000:]
    full = tl.load(tmp_path / "full")
    by_raw = {e.tensor_label_raw: e for e in full}
    n = 0
    for e in rec:
        if e.has_saved_activations:
            assert torch.equal(e.activation, by_raw[e.tensor_label_raw].activation), e.tensor_label_raw
            n += 1
    assert n == rec.num_tensors_saved


# --------------------------------------------------------------------------- bad input
@pytest.fixture
def bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bundle of io format 1 (one file per tensor); the tests using it write format 1 too.
    `test_bundle_shards.py` has the same checks for format 2."""
    monkeypatch.setattr(_shards, "WRITE_FORMAT", 1)
    tl.save(_small_log(), tmp_path / "b")
    return tmp_path / "b"


def test_missing_and_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(TorchLensIOError, match="No bundle at"):
        tl.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TorchLensIOError, match="no manifest.json"):
        tl.load(tmp_path / "empty")


def test_truncated_blob_and_metadata(bundle: Path) -> None:
    blob = sorted((bundle / "blobs").iterdir())[1]
    data = blob.read_bytes()
    blob.write_bytes(data[:-3])
    with pytest.raises(TorchLensIOError, match="truncated"):
        tl.load(bundle, lazy=True)
    blob.write_bytes(data)
    blob.unlink()
    with pytest.raises(TorchLensIOError, match="missing: blob_id 2"):
        tl.load(bundle)
    blob.write_bytes(data)
    meta = (bundle / "metadata.json").read_bytes()
    (bundle / "metadata.json").write_bytes(meta[:-10])
    with pytest.raises(TorchLensIOError, match="truncated"):
        tl.load(bundle)
    (bundle / "metadata.json").write_bytes(meta[:-10] + b" " * 10)
    with pytest.raises(TorchLensIOError, match="checksum mismatch"):
        tl.load(bundle)


def test_version_mismatches(bundle: Path) -> None:
    def newer(m):
        m["io_format_version"] = 99

    _rewrite_manifest(bundle, newer)
    with pytest.raises(TorchLensIOError, match="newer than this torchlens supports"):
        tl.load(bundle)

    def torch_major(m):
        m["io_format_version"] = 1
        m["torch_version"] = "1.13.0"

    _rewrite_manifest(bundle, torch_major)
    with pytest.raises(TorchLensIOError, match="major version"):
        tl.load(bundle)

    def torch_minor(m):
        major = int(torch.__version__.split(".")[0])
        m["torch_version"] = f"{major}.999.0"

    _rewrite_manifest(bundle, torch_minor)
    with pytest.warns(UserWarning, match="loading with torch"):
        tl.load(bundle)


def test_hostile_bundles(bundle: Path, tmp_path: Path) -> None:
    # A pickle instead of metadata (with a matching checksum) is refused, never unpickled.
    class Boom:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    _set_metadata(bundle, pickle.dumps(Boom()))
    with pytest.raises(TorchLensIOError, match="not valid JSON"):
        tl.load(bundle)
    assert not (tmp_path / "pwned").exists()

    tl.save(_small_log(), tmp_path / "c")

    def escape(m):
        m["tensors"][0]["relative_path"] = "../../../etc/passwd"

    _rewrite_manifest(tmp_path / "c", escape)
    with pytest.raises(TorchLensIOError, match="paths outside blobs/ are refused"):
        tl.load(tmp_path / "c")

    tl.save(_small_log(), tmp_path / "d")
    blob = sorted((tmp_path / "d" / "blobs").iterdir())[0]
    target = tmp_path / "elsewhere.safetensors"
    target.write_bytes(blob.read_bytes())
    blob.unlink()
    blob.symlink_to(target)
    with pytest.raises(TorchLensIOError, match="refusing symlinked blob"):
        tl.load(tmp_path / "d")
    (tmp_path / "link").symlink_to(tmp_path / "c", target_is_directory=True)
    with pytest.raises(TorchLensIOError, match="symlinked bundle directory"):
        tl.load(tmp_path / "link")

    tl.save(_small_log(), tmp_path / "e")
    (tmp_path / "e" / "blobs" / "stray.bin").write_bytes(b"x")
    with pytest.warns(UserWarning, match="unexpected files"):
        tl.load(tmp_path / "e")


def test_fuzz_metadata_and_manifest_reader(bundle: Path) -> None:
    """Random mutations of metadata.json (checksum fixed up) and manifest.json: only TorchLensIOError."""
    rng = random.Random(1234)
    meta0 = (bundle / "metadata.json").read_bytes()
    man0 = (bundle / "manifest.json").read_bytes()
    doc = json.loads(meta0)

    def mutate_bytes(b: bytes) -> bytes:
        b = bytearray(b)
        for _ in range(rng.randint(1, 8)):
            op = rng.random()
            i = rng.randrange(len(b))
            if op < 0.5:
                b[i] = rng.randrange(256)
            elif op < 0.75:
                del b[i : i + rng.randint(1, 50)]
            else:
                b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 10)))
        return bytes(b)

    def mutate_doc(d):
        d = json.loads(json.dumps(d))
        cap = d["capture"]
        key = rng.choice([*cap, "activations", "info", "model_name", "version"])
        target = cap if key in cap else d
        junk = rng.choice([None, -1, 2**70, "x", [], {}, [[1, 2]], 3.5, True, [-5], [[0] * 9]])
        val = target.get(key)
        if isinstance(val, list) and val and rng.random() < 0.7:
            i = rng.randrange(len(val))
            if isinstance(val[i], list) and val[i] and rng.random() < 0.7:
                val[i][rng.randrange(len(val[i]))] = junk
            else:
                val[i] = junk
        else:
            target[key] = junk
        return d

    deadline = time.monotonic() + 4.0
    n = 0
    while time.monotonic() < deadline:
        kind = n % 3
        if kind == 0:
            _set_metadata(bundle, mutate_bytes(meta0))
        elif kind == 1:
            _set_metadata(bundle, json.dumps(mutate_doc(doc)).encode())
        else:
            (bundle / "metadata.json").write_bytes(meta0)
            (bundle / "manifest.json").write_bytes(mutate_bytes(man0))
        try:
            tl.load(bundle)
        except TorchLensIOError:
            pass
        except UserWarning:
            pass
        (bundle / "manifest.json").write_bytes(man0)
        n += 1
    assert n > 50


def test_transformed_activations_round_trip(tmp_path: Path) -> None:
    log = _small_log(activation_postfunc=lambda t: t.float().mean())
    assert torch.equal(log[1].transformed_activation, log[1].activation.float().mean())
    tl.save(log, tmp_path / "t")
    m = json.loads((tmp_path / "t" / "manifest.json").read_text())
    assert {e["kind"] for e in m["tensors"]} == {"activation", "transformed_activation"}
    for lazy in (False, True):
        back = tl.load(tmp_path / "t", lazy=lazy)
        for x, y in zip(log, back, strict=True):
            a, b = x.transformed_activation, y.transformed_activation
            assert (a is None and b is None) or torch.equal(a, b), x.layer_label
