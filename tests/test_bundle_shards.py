"""io format 2: tensors packed into shard files (issue 15). Layout and manifest, bit-exact round
trips (save, streaming, gradients, recovery), the reference safetensors reader on shards, lazy
reads of byte ranges only, hostile manifests and shards, and format 1 still read."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import torchlens as tl
from torchlens import TorchLensIOError
from torchlens.io import _shards

FIXTURE = Path(__file__).parent / "data" / "bundle_v1_tiny"


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.relu(self.fc(x))
        return x.sum(dim=1)


class Tiny(nn.Module):
    """The model of the checked-in format-1 fixture (`tests/data/bundle_v1_tiny`)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(x)) * 2


def _small_log(**kw):
    torch.manual_seed(0)
    return tl.log_forward_pass(Recurrent(), torch.randn(2, 5), **kw)


def _hooked(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each submodule's output, recorded by forward hooks (the reference values)."""
    out: dict[str, torch.Tensor] = {}
    hs = [
        m.register_forward_hook(lambda m, i, o, n=n: out.setdefault(n, o.detach().clone()))
        for n, m in model.named_modules()
        if n
    ]
    try:
        model(x)
    finally:
        for h in hs:
            h.remove()
    return out


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def _assert_same(a, b) -> None:
    assert a.layer_labels == b.layer_labels
    for x, y in zip(a, b, strict=True):
        ta, tb = x.activation, y.activation
        if ta is None:
            assert tb is None and not y.has_saved_activations
            continue
        assert tb is not None and ta.dtype == tb.dtype and ta.shape == tb.shape, x.layer_label
        assert torch.equal(_bits(ta), _bits(tb)), x.layer_label


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _rewrite(bundle: Path, fn) -> None:
    m = _manifest(bundle)
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m, indent=2))


# ------------------------------------------------------------------------------- layout, round trips
def test_save_packs_tensors_into_one_shard_and_loads_bit_exact(tmp_path: Path) -> None:
    log = _small_log()
    tl.save(log, tmp_path / "b")
    m = _manifest(tmp_path / "b")
    assert m["io_format_version"] == 2
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["manifest.json", "metadata.json", "shards"]
    assert [p.name for p in (tmp_path / "b" / "shards").iterdir()] == ["00001.safetensors"]
    shard = tmp_path / "b" / "shards" / "00001.safetensors"
    assert m["shards"] == [
        {
            "relative_path": "shards/00001.safetensors",
            "bytes": shard.stat().st_size,
            "data_start": m["shards"][0]["data_start"],
        }
    ]
    raw = shard.read_bytes()
    assert m["shards"][0]["data_start"] == 8 + int.from_bytes(raw[:8], "little")
    saved = [e for e in log if e.has_saved_activations and not e.is_output_layer]
    assert len(m["tensors"]) == len(saved) == m["n_activation_blobs"]
    ends = []
    for t, e in zip(m["tensors"], saved, strict=True):
        assert t["label"] == e.layer_label_w_pass and t["shard"] == 1 and "bytes" not in t
        assert t["relative_path"] == "shards/00001.safetensors"
        data = raw[t["offset"] : t["offset"] + t["length"]]
        assert t["length"] == e.activation.numel() * e.activation.element_size()
        assert hashlib.sha256(data).hexdigest() == t["sha256"]
        assert data == _bits(e.activation.contiguous()).numpy().tobytes()
        ends.append((t["offset"], t["offset"] + t["length"]))
    assert ends[-1][1] == len(raw)  # back to back, the file ends with the last tensor
    for lazy in (False, True):
        back = tl.load(tmp_path / "b", lazy=lazy)
        if lazy:
            assert all(e.activation is None for e in back)
            for e in back:
                if e.has_saved_activations:
                    e.materialize_activation()
        _assert_same(log, back)


def test_shards_open_with_the_safetensors_library(tmp_path: Path) -> None:
    log = _small_log()
    tl.save(log, tmp_path / "b")
    m = _manifest(tmp_path / "b")
    got = load_file(str(tmp_path / "b" / "shards" / "00001.safetensors"))
    assert sorted(got) == [f"{t['blob_id']:010d}" for t in m["tensors"]]
    by_label = {e.layer_label_w_pass: e.activation for e in log}
    for t in m["tensors"]:
        assert torch.equal(got[f"{t['blob_id']:010d}"], by_label[t["label"]])
    # A streamed shard (header written into a reserved, space-padded region) too.
    s = _small_log(streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "s")))
    ms = _manifest(tmp_path / "s")
    assert ms["io_format_version"] == 2 and ms["shards"][0]["data_start"] == 8 + (64 << 10)
    got = load_file(str(tmp_path / "s" / "shards" / "00001.safetensors"))
    by_label = {e.layer_label_w_pass: e.activation for e in s}
    for t in ms["tensors"]:
        assert torch.equal(got[f"{t['blob_id']:010d}"], by_label[t["label"]])


def test_shards_roll_over_at_the_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shards, "SHARD_BYTES", 50)  # at most one 40-byte activation per shard
    log = _small_log()
    tl.save(log, tmp_path / "b")
    s = _small_log(streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "s"), retain_in_memory=False))
    for b in (tmp_path / "b", tmp_path / "s"):
        m = _manifest(b)
        assert len(m["tensors"]) >= len(m["shards"]) > 3
        assert {t["shard"] for t in m["tensors"]} == set(range(1, len(m["shards"]) + 1))
        for sh in m["shards"]:
            assert load_file(str(b / sh["relative_path"]))  # each one a valid safetensors file
        for lazy in (False, True):
            back = tl.load(b, lazy=lazy)
            for e in back:
                if lazy and e.has_saved_activations:
                    e.materialize_activation()
            _assert_same(log, back)
    for e, r in zip(s, log, strict=True):  # retain_in_memory=False reads back from the shards
        if r.has_saved_activations:
            assert torch.equal(e.materialize_activation(), r.activation)


def test_activations_equal_what_the_model_computes(tmp_path: Path) -> None:
    torch.manual_seed(3)
    model, x = Tiny(), torch.randn(2, 4)
    ref = _hooked(model, x)
    log = tl.log_forward_pass(model, x)
    tl.save(log, tmp_path / "b")
    back = tl.load(tmp_path / "b")
    assert back.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "mul_1_3", "output_1"]
    assert torch.equal(back["linear_1_1"].activation, ref["fc"])
    assert torch.equal(back["relu_1_2"].activation, torch.relu(ref["fc"]))
    assert torch.equal(back["mul_1_3"].activation, torch.relu(ref["fc"]) * 2)
    assert torch.equal(back["input_1"].activation, x)


def test_streamed_gradients_and_saved_gradients_use_shards(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, x = Recurrent(), torch.randn(2, 5, requires_grad=True)
    log = tl.log_forward_pass(
        model, x, streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "g")), save_gradients=True
    )
    log.log_backward(log[-1].activation.sum())
    m = _manifest(tmp_path / "g")
    assert m["io_format_version"] == 2 and m["n_gradient_blobs"] > 0
    assert len(m["shards"]) == 2  # the gradients' writer starts a shard after the activations'
    grads = {e.layer_label: e.gradient for e in log if e.gradient is not None}
    assert grads
    for lazy in (False, True):
        back = tl.load(tmp_path / "g", lazy=lazy)
        got = {e.layer_label: e.gradient for e in back if e.gradient is not None}
        assert got.keys() == grads.keys()
        for k, g in grads.items():
            assert torch.equal(got[k], g), k
    tl.save(log, tmp_path / "s")
    back = tl.load(tmp_path / "s")
    for k, g in grads.items():
        assert torch.equal(back[k].gradient, g), k
    # A lazily loaded sharded log saves again (its tensors re-read and verified).
    tl.save(tl.load(tmp_path / "s", lazy=True), tmp_path / "s2")
    _assert_same(log, tl.load(tmp_path / "s2"))


def test_format_1_is_still_written_on_request_and_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _small_log()
    monkeypatch.setattr(_shards, "WRITE_FORMAT", 1)
    tl.save(log, tmp_path / "v1")
    s = _small_log(streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "v1s")))
    monkeypatch.setattr(_shards, "WRITE_FORMAT", 2)
    for b in (tmp_path / "v1", tmp_path / "v1s"):
        m = _manifest(b)
        assert m["io_format_version"] == 1 and "shards" not in m and not (b / "shards").exists()
        assert all(t["relative_path"] == f"blobs/{t['blob_id']:010d}.safetensors" for t in m["tensors"])
        for lazy in (False, True):
            back = tl.load(b, lazy=lazy)
            for e in back:
                if lazy and e.has_saved_activations:
                    e.materialize_activation()
            _assert_same(log, back)
    _assert_same(log, s)
    # A lazily loaded format-1 log saves as format 2.
    tl.save(tl.load(tmp_path / "v1", lazy=True), tmp_path / "v2")
    assert _manifest(tmp_path / "v2")["io_format_version"] == 2
    _assert_same(log, tl.load(tmp_path / "v2"))


def test_checked_in_format_1_bundle_loads_bit_for_bit() -> None:
    """`tests/data/bundle_v1_tiny`: written by the format-1 writer (one file per tensor) of the
    release before format 2, for `Tiny()` with `torch.manual_seed(3)`, input `torch.randn(2, 4)`."""
    torch.manual_seed(3)
    model, x = Tiny(), torch.randn(2, 4)
    ref = tl.log_forward_pass(model, x)
    m = _manifest(FIXTURE)
    assert m["io_format_version"] == 1 and len(list((FIXTURE / "blobs").iterdir())) == len(m["tensors"]) == 4
    for lazy in (False, True):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "bundle was written with torch", UserWarning)
            back = tl.load(FIXTURE, lazy=lazy)
        assert back.layer_labels == ref.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "mul_1_3", "output_1"]
        for e in back:
            if lazy:
                e.materialize_activation()
        _assert_same(ref, back)


# ------------------------------------------------------------------------------- lazy and eager reads
def test_lazy_open_reads_no_shard_and_materialize_reads_only_its_range(tmp_path: Path) -> None:
    log = _small_log()
    tl.save(log, tmp_path / "b")
    m = _manifest(tmp_path / "b")
    shard = tmp_path / "b" / "shards" / "00001.safetensors"
    # Lazy open does not touch the shard: a garbage header goes unnoticed until an eager read.
    orig = shard.read_bytes()
    raw = bytearray(orig)
    raw[8:16] = b"!!!!!!!!"
    shard.write_bytes(bytes(raw))
    lz = tl.load(tmp_path / "b", lazy=True)
    # Materializing reads only the tensor's byte range: every tensor still reads back exactly.
    for e, r in zip(lz, log, strict=True):
        if r.has_saved_activations:
            assert torch.equal(e.materialize_activation(), r.activation)
    with pytest.raises(TorchLensIOError, match="invalid safetensors header"):
        tl.load(tmp_path / "b")
    raw = bytearray(orig)
    # Flip one byte of the third tensor: only that one fails, lazily and eagerly.
    t3 = m["tensors"][2]
    raw[t3["offset"] + 1] ^= 0xFF
    shard.write_bytes(bytes(raw))
    lz = tl.load(tmp_path / "b", lazy=True)
    bad = lz[t3["label"]]
    for e in lz:
        if e.has_saved_activations and e is not bad and not e.is_output_layer:
            e.materialize_activation()
    with pytest.raises(TorchLensIOError, match="checksum mismatch"):
        bad.materialize_activation()
    with pytest.raises(TorchLensIOError, match=f"Checksum mismatch for blob_id={t3['blob_id']}"):
        tl.load(tmp_path / "b")


# ------------------------------------------------------------------------------- hostile input
def test_hostile_shard_manifests_are_refused(tmp_path: Path) -> None:
    tl.save(_small_log(), tmp_path / "b0")
    m0 = _manifest(tmp_path / "b0")
    size = m0["shards"][0]["bytes"]
    ds = m0["shards"][0]["data_start"]
    t0, t1 = m0["tensors"][0], m0["tensors"][1]
    cases = {
        "offset beyond the file": lambda m: m["tensors"][1].update(offset=size),
        "range runs past the end": lambda m: m["tensors"][-1].update(offset=size - 4),
        "range in the header": lambda m: m["tensors"][0].update(offset=ds - 8),
        "offset 0": lambda m: m["tensors"][0].update(offset=0),
        "huge offset": lambda m: m["tensors"][0].update(offset=2**64 - 8),
        "overlapping": lambda m: m["tensors"][1].update(offset=t0["offset"] + 4),
        "same range twice": lambda m: m["tensors"][1].update(offset=t0["offset"]),
        "length mismatch": lambda m: m["tensors"][1].update(length=t1["length"] - 4),
        "unknown shard": lambda m: m["tensors"][0].update(shard=2),
        "shard 0": lambda m: m["tensors"][0].update(shard=0),
        "path escape": lambda m: m["tensors"][0].update(relative_path="../../etc/passwd"),
        "shard path escape": lambda m: m["shards"][0].update(relative_path="../x.safetensors"),
        "shard size": lambda m: m["shards"][0].update(bytes=size + 8),
        "data_start past the file": lambda m: m["shards"][0].update(data_start=size + 8),
        "data_start unaligned": lambda m: m["shards"][0].update(data_start=ds + 1),
        "format 1 field": lambda m: m["tensors"][0].update(bytes=100),
        "no offset": lambda m: m["tensors"][0].pop("offset"),
        "negative offset": lambda m: m["tensors"][0].update(offset=-1),
        "shards in format 1": lambda m: m.update(io_format_version=1),
    }
    for name, fn in cases.items():
        b = tmp_path / "b"
        shutil.rmtree(b, ignore_errors=True)
        shutil.copytree(tmp_path / "b0", b)
        _rewrite(b, fn)
        for lazy in (False, True):
            with pytest.raises(TorchLensIOError):
                tl.load(b, lazy=lazy)
                pytest.fail(f"{name} (lazy={lazy}) was accepted")


def test_fuzzed_offsets_and_lengths_only_raise_torchlens_io_error(tmp_path: Path) -> None:
    """Random offsets, lengths, shard numbers and shard sizes: a load either fails with
    TorchLensIOError or gives exactly the saved tensors (when the mutation changed nothing)."""
    log = _small_log()
    tl.save(log, tmp_path / "b0")
    m0 = _manifest(tmp_path / "b0")
    size = m0["shards"][0]["bytes"]
    rng = random.Random(15)
    values = [0, 1, 7, 8, 16, size - 1, size, size + 1, 2**32, 2**63 - 1, 2**64 - 1]
    b = tmp_path / "b"
    shutil.copytree(tmp_path / "b0", b)
    accepted = 0
    for i in range(150):
        m = json.loads(json.dumps(m0))
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.8:
                t = rng.choice(m["tensors"])
                key = rng.choice(["offset", "length", "shard"])
                t[key] = rng.choice([*values, t[key], t[key] + rng.choice([-8, -4, -1, 1, 4, 8])])
            else:
                s = m["shards"][0]
                key = rng.choice(["bytes", "data_start"])
                s[key] = rng.choice([*values, s[key] + rng.choice([-8, 8])])
        (b / "manifest.json").write_text(json.dumps(m))
        lazy = i % 2 == 1
        try:
            back = tl.load(b, lazy=lazy)
            for e in back:
                if lazy and e.has_saved_activations:
                    e.materialize_activation()
        except TorchLensIOError:
            continue
        accepted += 1
        assert m == m0 or all(t == t0 for t, t0 in zip(m["tensors"], m0["tensors"], strict=True)), (
            "a changed placement was accepted"
        )
        _assert_same(log, back)
    assert accepted < 150


def test_symlinked_truncated_missing_and_stray_shards(tmp_path: Path) -> None:
    tl.save(_small_log(), tmp_path / "b")
    shard = tmp_path / "b" / "shards" / "00001.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[:-3])
    with pytest.raises(TorchLensIOError, match="truncated"):
        tl.load(tmp_path / "b", lazy=True)
    shard.unlink()
    with pytest.raises(TorchLensIOError, match="missing: shards/00001.safetensors"):
        tl.load(tmp_path / "b", lazy=True)
    elsewhere = tmp_path / "elsewhere.safetensors"
    elsewhere.write_bytes(data)
    shard.symlink_to(elsewhere)
    with pytest.raises(TorchLensIOError, match="refusing symlinked shard"):
        tl.load(tmp_path / "b", lazy=True)
    shard.unlink()
    shard.write_bytes(data)
    (tmp_path / "b" / "shards" / "stray.bin").write_bytes(b"x")
    with pytest.warns(UserWarning, match="unexpected files in shards/"):
        tl.load(tmp_path / "b")
    # A shard whose header names other tensors than the manifest is refused on eager load.
    m = _manifest(tmp_path / "b")
    a, b2 = m["tensors"][0], m["tensors"][1]

    def swap(mm):
        mm["tensors"][0]["blob_id"], mm["tensors"][1]["blob_id"] = b2["blob_id"], a["blob_id"]

    (tmp_path / "b" / "shards" / "stray.bin").unlink()
    _rewrite(tmp_path / "b", swap)
    with pytest.raises(TorchLensIOError):
        tl.load(tmp_path / "b")


# ------------------------------------------------------------------------------- recovery
class Dies(nn.Module):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.at = at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(200):
            x = torch.tanh(self.fc(x))
            if i == self.at:
                raise RuntimeError("boom")
        return x


def test_interrupted_stream_recovers_complete_tensors_of_a_partly_written_shard(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, x = Dies(150), torch.randn(2, 8)
    target = tmp_path / "s"
    with pytest.raises(RuntimeError, match="boom"):
        tl.log_forward_pass(model, x, streaming=tl.StreamingOptions(bundle_path=str(target)))
    (tmp,) = tmp_path.glob("s.tmp.*")
    shard = tmp / "shards" / "00001.safetensors"
    assert shard.exists() and (tmp / "tensors.jsonl").exists()
    # The shard has no header yet (the crash came before it was closed); cut its last tensor short.
    lines = [json.loads(s) for s in (tmp / "tensors.jsonl").read_text().splitlines()]
    last = lines[-1]
    with shard.open("r+b") as f:
        f.truncate(last["offset"] + last["length"] - 5)
    with (tmp / "tensors.jsonl").open("a") as f:
        f.write('{"blob_id": 99999, "shard": 1, "off')  # a torn journal line
    assert tl.recover_bundle(target) == str(target)
    m = _manifest(target)
    assert m["io_format_version"] == 2 and not (target / "tensors.jsonl").exists()
    kept = {t["blob_id"] for t in m["tensors"]}
    assert last["blob_id"] not in kept
    assert len(kept) >= 2 * 100  # input + linear/tanh pairs journaled before the failure
    # The recovered shard is a valid safetensors file ending with the last complete tensor.
    got = load_file(str(target / "shards" / "00001.safetensors"))
    assert set(got) >= {f"{b:010d}" for b in kept}
    rec = tl.load(target)
    # Reference: the same model without the failure; recovered activations match bit for bit.
    model.at = -1
    full = tl.log_forward_pass(model, x)
    by_raw = {e.tensor_label_raw: e for e in full}
    n = 0
    for e in rec:
        if e.has_saved_activations:
            assert torch.equal(e.activation, by_raw[e.tensor_label_raw].activation), e.tensor_label_raw
            n += 1
    assert n == rec.num_tensors_saved == len(kept)


def test_second_backward_supersedes_gradients_inside_the_shards(tmp_path: Path) -> None:
    """Format 2 keeps superseded gradient bytes in a shard, unlisted; the bundle gives the
    latest gradients, equal to `torch.autograd.grad` on a plain run of the second loss."""
    from models.bundle_grads import mlp, mlp_input

    target = tmp_path / "g"
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=target)
    out = log[log.output_layers[0]].activation
    (out**2).sum().backward(retain_graph=True)
    (out * 3).sum().backward()
    log.finalize_gradient_bundle()
    m = _manifest(target)
    assert m["io_format_version"] == 2 and m["n_gradient_blobs"] == 4  # linear_1_1 .. output_1
    shard_names = set()
    for sh in m["shards"]:
        shard_names |= set(load_file(str(target / sh["relative_path"])))
    listed = {f"{t['blob_id']:010d}" for t in m["tensors"]}
    assert listed < shard_names and len(shard_names - listed) == 4  # the first backward's, unlisted
    # Reference: d (3 * sum(out)) / d (each module's output) on a plain run.
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        mod.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o)) for n, mod in model.named_children()
    ]
    try:
        y = model(x)
    finally:
        for h in hooks:
            h.remove()
    grads = dict(zip(outs, torch.autograd.grad((y * 3).sum(), list(outs.values())), strict=True))
    ref = {"linear_1_1": grads["0"], "relu_1_2": grads["1"], "linear_2_3": grads["2"], "output_1": grads["2"]}
    for lazy in (False, True):
        back = tl.load(target, lazy=lazy)
        got = {e.layer_label: e.gradient for e in back if e.has_gradient}
        assert got.keys() == ref.keys()
        for k, g in ref.items():
            assert torch.equal(got[k], g), k
