"""Gradients in bundles (spec §9, §14-15, §1.2 `save_gradients_to` / `keep_gradients_in_memory`):
`save(include_gradients=)` / `load` (eager and lazy), streaming to a bundle committed after the
backward, recovery of an interrupted stream, and bundles without gradients.

References never go through torchlens: `torch.autograd.grad` of the same loss on a plain run,
with the module outputs taken by forward hooks (each module's output is one logged layer).
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens import TorchLensIOError
from torchlens.io import LazyActivationRef, _shards

from models.bundle_grads import LAYERS, cnn, cnn_input, mlp, mlp_input

MODELS = {"mlp": (mlp, mlp_input), "cnn": (cnn, cnn_input)}
# Arrival order of `out.square().sum().backward()` (reverse topological; outputs get their parent's gradient).
ORDER = {
    "mlp": ["linear_2_3", "output_1", "relu_1_2", "linear_1_1"],
    "cnn": ["linear_1_5", "output_1", "flatten_1_4", "maxpool2d_1_3", "relu_1_2", "conv2d_1_1"],
}


def _loss(out: torch.Tensor) -> torch.Tensor:
    return out.square().sum()


def reference_grads(name: str, model: nn.Module, x: torch.Tensor, loss_fn: Any = _loss) -> dict[str, torch.Tensor]:
    """label -> d loss / d (that layer's output) on a plain run, by `torch.autograd.grad`."""
    outs: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(n, o)) for n, m in model.named_children()]
    try:
        y = model(x)
    finally:
        for h in hooks:
            h.remove()
    names = list(outs)
    grads = torch.autograd.grad(loss_fn(y), [outs[n] for n in names])
    ref = {LAYERS[name][n]: g for n, g in zip(names, grads, strict=True)}
    ref["output_1"] = ref[LAYERS[name][names[-1]]]
    return ref


def _backward(log: tl.ModelLog, loss_fn: Any = _loss, **kw: Any) -> None:
    loss_fn(log[log.output_layers[0]].activation).backward(**kw)


def _logged(name: str, **kw: Any) -> tuple[tl.ModelLog, dict[str, torch.Tensor]]:
    """A log of the model with gradients captured by `loss.backward()`, and the reference gradients."""
    make, inp = MODELS[name]
    model, x = make(), inp()
    log = tl.log_forward_pass(model, x, save_gradients=True, **kw)
    _backward(log)
    return log, reference_grads(name, model, x)


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def _metadata(path: Path) -> dict[str, Any]:
    return json.loads((path / "metadata.json").read_text())


def _assert_gradients(log: tl.ModelLog, name: str, ref: dict[str, torch.Tensor]) -> None:
    """Exactly the layers of ORDER hold a gradient, each bit-for-bit the reference."""
    assert log.has_gradients
    assert log.layers_with_saved_gradients == ORDER[name]
    for e in log:
        if e.layer_label in ref:
            assert e.has_gradient, e.layer_label
            g = e.gradient
            assert g.dtype == ref[e.layer_label].dtype and torch.equal(g, ref[e.layer_label]), e.layer_label
            assert e.grad_shape == tuple(ref[e.layer_label].shape)
        else:
            assert not e.has_gradient and e.gradient is None, e.layer_label


# ------------------------------------------------------------------------------ save / load
@pytest.mark.parametrize("name", ["mlp", "cnn"])
@pytest.mark.parametrize("lazy", [False, True])
def test_round_trip_equals_memory_and_autograd(tmp_path: Path, name: str, lazy: bool) -> None:
    log, ref = _logged(name)
    _assert_gradients(log, name, ref)
    tl.save(log, tmp_path / "b")
    man = _manifest(tmp_path / "b")
    assert man["n_gradient_blobs"] == len(ORDER[name])
    grad_blobs = {t["label"] for t in man["tensors"] if t["kind"] == "gradient"}
    assert grad_blobs == {f"{label}:1" for label in ORDER[name]}  # pass-qualified labels
    info = _metadata(tmp_path / "b")["info"]["gradients"]
    assert info["save_gradients"] is True and info["gradients_to_save"] == "all" and info["has_gradients"] is True
    assert [log.layer_labels[log._node_ids.index(n)] for n in info["order"]] == ORDER[name]

    loaded = tl.load(tmp_path / "b", lazy=lazy)
    assert loaded.save_gradients and loaded.gradients_to_save == "all"
    if lazy:
        for label in ORDER[name]:
            r = loaded[label].gradient_ref
            assert isinstance(r, LazyActivationRef) and r.kind == "gradient"
            assert r.source_bundle_path == str((tmp_path / "b").resolve())
            assert r.shape == tuple(ref[label].shape)
    else:
        assert all(e.gradient_ref is None for e in loaded)
    _assert_gradients(loaded, name, ref)
    for a, b in zip(log, loaded, strict=True):
        assert (a.gradient is None and b.gradient is None) or torch.equal(a.gradient, b.gradient)
        assert b.save_gradients == a.save_gradients
    assert all(e.gradient_ref is None for e in loaded)  # read once, then held by the log


def test_lazy_materialize_gradient_and_resave(tmp_path: Path) -> None:
    log, ref = _logged("mlp")
    tl.save(log, tmp_path / "a")
    lazy = tl.load(tmp_path / "a", lazy=True)
    g = lazy["relu_1_2"].materialize_gradient(map_location="cpu")
    assert torch.equal(g, ref["relu_1_2"])
    assert lazy["relu_1_2"].gradient_ref is None and lazy["linear_1_1"].gradient_ref is not None
    # a lazily loaded log is saved by copying its gradient blobs
    tl.save(lazy, tmp_path / "b")
    again = tl.load(tmp_path / "b")
    _assert_gradients(again, "mlp", ref)


def test_include_gradients_false_drops_them(tmp_path: Path) -> None:
    log, _ = _logged("cnn")
    tl.save(log, tmp_path / "b", include_gradients=False)
    man = _manifest(tmp_path / "b")
    assert man["n_gradient_blobs"] == 0
    assert {t["kind"] for t in man["tensors"]} == {"activation"}
    loaded = tl.load(tmp_path / "b")
    assert not loaded.has_gradients and loaded.layers_with_saved_gradients == []
    assert all(not e.has_gradient and e.gradient is None for e in loaded)
    assert loaded.save_gradients  # the capture's options are kept
    for a, b in zip(log, loaded, strict=True):
        assert torch.equal(a.activation, b.activation)


def test_gradient_postfunc_outputs_persisted(tmp_path: Path) -> None:
    def post(g: torch.Tensor) -> torch.Tensor:
        return g.abs().amax(dim=0)

    log, ref = _logged("mlp", gradient_postfunc=post, save_raw_gradient=False)
    assert log.layers_with_saved_gradients == ORDER["mlp"]
    tl.save(log, tmp_path / "b")
    man = _manifest(tmp_path / "b")
    assert sorted(t["kind"] for t in man["tensors"] if t["kind"].endswith("gradient")) == ["transformed_gradient"] * 4
    for lazy in (False, True):
        loaded = tl.load(tmp_path / "b", lazy=lazy)
        assert loaded.layers_with_saved_gradients == ORDER["mlp"] and not loaded.save_raw_gradient
        assert loaded.gradient_postfunc_repr == repr(post)
        for label in ORDER["mlp"]:
            e = loaded[label]
            assert e.has_gradient and e.gradient is None
            assert torch.equal(e.transformed_gradient, post(ref[label]))
            assert torch.equal(e.transformed_gradient, log[label].transformed_gradient)


def test_non_tensor_gradient_postfunc_output_is_listed_unsupported(tmp_path: Path) -> None:
    log, ref = _logged("mlp", gradient_postfunc=lambda g: float(g.sum()))
    tl.save(log, tmp_path / "b")  # strict: only tensors that cannot be stored raise
    man = _manifest(tmp_path / "b")
    assert {(u["label"], u["kind"]) for u in man["unsupported_tensors"]} == {
        (f"{label}:1", "transformed_gradient") for label in ORDER["mlp"]
    }
    assert all(u["reason"] == "not a tensor (float)" for u in man["unsupported_tensors"])
    loaded = tl.load(tmp_path / "b")
    _assert_gradients(loaded, "mlp", ref)  # the raw gradients are there
    assert all(e.transformed_gradient is None for e in loaded)


def test_gradients_to_save_selection_persisted(tmp_path: Path) -> None:
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, gradients_to_save=["relu_1_2"])
    _backward(log)
    ref = reference_grads("mlp", model, x)
    assert log.layers_with_saved_gradients == ["relu_1_2"]
    tl.save(log, tmp_path / "b")
    loaded = tl.load(tmp_path / "b")
    assert loaded.gradients_to_save == ["relu_1_2"] and loaded.layers_with_saved_gradients == ["relu_1_2"]
    assert [e.save_gradients for e in loaded] == [e.save_gradients for e in log] == [False, False, True, False, False]
    assert torch.equal(loaded["relu_1_2"].gradient, ref["relu_1_2"])
    assert loaded["linear_1_1"].gradient is None


# ------------------------------------------------------------------------------ old bundles
def _strip_gradient_section(path: Path) -> None:
    """Rewrite a bundle as the code before gradient saving wrote it: no `info.gradients`, no
    gradient blobs, the manifest's sizes, checksums and counts fixed."""
    meta = _metadata(path)
    del meta["info"]["gradients"]
    raw = json.dumps(meta, separators=(",", ":")).encode()
    (path / "metadata.json").write_bytes(raw)
    man = _manifest(path)
    for t in man["tensors"]:
        if t["kind"].endswith("gradient"):
            (path / t["relative_path"]).unlink()
    man["tensors"] = [t for t in man["tensors"] if not t["kind"].endswith("gradient")]
    man["n_gradient_blobs"] = 0
    man["metadata"].update(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    (path / "manifest.json").write_text(json.dumps(man, indent=2))


@pytest.mark.parametrize("lazy", [False, True])
def test_bundles_without_gradients_still_load(tmp_path: Path, lazy: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shards, "WRITE_FORMAT", 1)  # bundles of that time: io format 1
    model, x = mlp(), mlp_input()
    plain = tl.log_forward_pass(model, x)
    tl.save(plain, tmp_path / "plain")
    assert "gradients" not in _metadata(tmp_path / "plain")["info"]
    log, _ = _logged("mlp")
    tl.save(log, tmp_path / "stripped")
    _strip_gradient_section(tmp_path / "stripped")
    for p in ("plain", "stripped"):
        loaded = tl.load(tmp_path / p, lazy=lazy)
        assert loaded.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "output_1"]
        assert not loaded.has_gradients and not loaded.save_gradients
        assert loaded.layers_with_saved_gradients == []
        assert all(not e.has_gradient and e.gradient is None and e.gradient_ref is None for e in loaded)
        for a, b in zip(log, loaded, strict=True):
            assert torch.equal(a.activation, b.materialize_activation() if lazy else b.activation)


def test_gradient_entry_naming_an_activation_blob_is_refused(tmp_path: Path) -> None:
    log, _ = _logged("mlp")
    tl.save(log, tmp_path / "b")
    meta = _metadata(tmp_path / "b")
    act_blob = meta["activations"][0][1]
    meta["info"]["gradients"]["gradient"][0][1] = act_blob
    raw = json.dumps(meta).encode()
    (tmp_path / "b/metadata.json").write_bytes(raw)
    man = _manifest(tmp_path / "b")
    man["metadata"].update(bytes=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    (tmp_path / "b/manifest.json").write_text(json.dumps(man, indent=2))
    with pytest.raises(TorchLensIOError, match="refers to no gradient blob"):
        tl.load(tmp_path / "b")


# ------------------------------------------------------------------------------ streaming
def _tmp_dirs(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.tmp.*"))


@pytest.mark.parametrize("keep", [True, False])
def test_stream_gradients_finalized_by_hand(tmp_path: Path, keep: bool) -> None:
    target = tmp_path / "g"
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=target, keep_gradients_in_memory=keep)
    assert log.save_gradients and not target.exists() and len(_tmp_dirs(target)) == 1
    _backward(log)
    ref = reference_grads("mlp", model, x)
    assert not target.exists()  # committed only once the backward is over
    assert log.finalize_gradient_bundle() == str(target)
    assert target.exists() and _tmp_dirs(target) == []
    if keep:
        assert all(e.gradient_ref is None for e in log)
    else:  # nothing kept in RAM: the entries read the bundle
        assert log._grad_store.grads == {}
        for label in ORDER["mlp"]:
            assert log[label].gradient_ref.source_bundle_path == str(target.resolve())
    _assert_gradients(log, "mlp", ref)
    for lazy in (False, True):
        loaded = tl.load(target, lazy=lazy)
        _assert_gradients(loaded, "mlp", ref)
        assert not any(e.has_saved_activations for e in loaded)  # only gradients were streamed
    man = _manifest(target)
    assert man["n_activation_blobs"] == 0 and man["n_gradient_blobs"] == 4
    with pytest.raises(ValueError, match="no gradient bundle waiting"):
        log.finalize_gradient_bundle()


@pytest.mark.parametrize("keep_activations", [True, False])
def test_stream_gradients_into_the_activation_bundle(tmp_path: Path, keep_activations: bool) -> None:
    target = tmp_path / "b"
    model, x = cnn(), cnn_input()
    expected = {k: v.detach().clone() for k, v in _plain_outputs("cnn", model, x).items()}
    log = tl.log_forward_pass(
        model,
        x,
        streaming=tl.StreamingOptions(bundle_path=target, retain_in_memory=keep_activations),
        save_gradients=True,
    )
    assert not target.exists()  # the activations' commit waits for the gradients
    if not keep_activations:
        # The activations are read from the temp directory until the commit (the log keeps no
        # graph-connected output to run a backward from); the commit moves the refs along.
        assert torch.equal(log["relu_1_2"].materialize_activation(), expected["relu_1_2"])
        assert log.finalize_gradient_bundle() == str(target)
        assert log["conv2d_1_1"].activation_ref.source_bundle_path == str(target.resolve())
        assert torch.equal(log["conv2d_1_1"].materialize_activation(), expected["conv2d_1_1"])
        loaded = tl.load(target)
        assert not loaded.has_gradients
        for label, t in expected.items():
            assert torch.equal(loaded[label].activation, t)
        return
    _backward(log)
    ref = reference_grads("cnn", model, x)
    log.finalize_gradient_bundle()
    man = _manifest(target)
    assert man["n_activation_blobs"] == 6 and man["n_gradient_blobs"] == 6  # output_1 shares linear_1_5's
    for lazy in (False, True):
        loaded = tl.load(target, lazy=lazy)
        _assert_gradients(loaded, "cnn", ref)
        for label, t in expected.items():
            assert torch.equal(loaded[label].materialize_activation(), t)


def _plain_outputs(name: str, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda _m, _i, o, n=n: outs.__setitem__(LAYERS[name][n], o))
        for n, m in model.named_children()
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def test_stream_committed_after_log_backward(tmp_path: Path) -> None:
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "a")
    log.log_backward(_loss(log[log.output_layers[0]].activation))
    assert (tmp_path / "a").exists() and _tmp_dirs(tmp_path / "a") == []
    ref = reference_grads("mlp", model, x)
    _assert_gradients(tl.load(tmp_path / "a"), "mlp", ref)

    log = tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "b", keep_gradients_in_memory=False)
    with log.recording_backward():
        _backward(log)
    assert (tmp_path / "b").exists()
    _assert_gradients(log, "mlp", ref)
    _assert_gradients(tl.load(tmp_path / "b", lazy=True), "mlp", ref)


def test_stream_second_backward_replaces_blobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_shards, "WRITE_FORMAT", 1)  # one file per tensor (format 2: test_bundle_shards.py)
    target = tmp_path / "g"
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=target)
    _backward(log, retain_graph=True)
    _backward(log, loss_fn=lambda out: (out * 3).sum())
    ref = reference_grads("mlp", model, x, loss_fn=lambda out: (out * 3).sum())
    log.finalize_gradient_bundle()
    assert len(list((target / "blobs").iterdir())) == 4  # the first backward's blobs are gone
    loaded = tl.load(target)
    _assert_gradients(loaded, "mlp", ref)  # order: first arrival


def test_stream_gradient_postfunc(tmp_path: Path) -> None:
    target = tmp_path / "g"
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=target, gradient_postfunc=lambda g: g.sum(dim=0))
    _backward(log)
    ref = reference_grads("mlp", model, x)
    log.finalize_gradient_bundle()
    man = _manifest(target)
    assert sorted(t["kind"] for t in man["tensors"]) == ["gradient"] * 4 + ["transformed_gradient"] * 4
    loaded = tl.load(target, lazy=True)
    _assert_gradients(loaded, "mlp", ref)
    for label in ORDER["mlp"]:
        assert torch.equal(loaded[label].transformed_gradient, ref[label].sum(dim=0))


def test_stream_without_selected_gradients_commits_at_once(tmp_path: Path) -> None:
    log = tl.log_forward_pass(mlp(), mlp_input(), save_gradients_to=tmp_path / "g", layers_to_save=None)
    assert (tmp_path / "g").exists()
    loaded = tl.load(tmp_path / "g")
    assert not log.has_gradients and not loaded.has_gradients and loaded.save_gradients == log.save_gradients
    assert loaded.layer_labels == log.layer_labels


def test_stream_option_errors(tmp_path: Path) -> None:
    model, x = mlp(), mlp_input()
    with pytest.raises(ValueError, match="save_gradients_to must be the same bundle"):
        tl.log_forward_pass(
            model, x, streaming=tl.StreamingOptions(bundle_path=tmp_path / "a"), save_gradients_to=tmp_path / "b"
        )
    (tmp_path / "c").mkdir()
    with pytest.raises(TorchLensIOError, match="Bundle path already exists"):
        tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "c")
    assert _tmp_dirs(tmp_path / "c") == []
    log = tl.log_forward_pass(model, x, save_gradients=True)
    with pytest.raises(ValueError, match="no gradient bundle waiting"):
        log.finalize_gradient_bundle()


def test_interrupted_stream_is_reported_and_recovered(tmp_path: Path) -> None:
    model, x = mlp(), mlp_input()
    # no backward: the capture is recoverable like an interrupted activation stream
    log = tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "a")
    del log
    gc.collect()
    with pytest.raises(TorchLensIOError, match="recover_bundle"):
        tl.load(tmp_path / "a")
    assert tl.recover_bundle(tmp_path / "a") == str(tmp_path / "a")
    rec = tl.load(tmp_path / "a")
    assert rec.layer_labels == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3"]  # no output layers
    assert rec.save_gradients and not rec.has_gradients

    # a backward, then the process ends before the commit: the streamed gradients are recovered
    log = tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "b")
    _backward(log)
    ref = reference_grads("mlp", model, x)
    del log
    gc.collect()
    tmp = _tmp_dirs(tmp_path / "b")
    assert len(tmp) == 1 and not (tmp_path / "b").exists()
    tl.recover_bundle(tmp[0])
    rec = tl.load(tmp_path / "b")
    assert rec.layers_with_saved_gradients == ["linear_2_3", "relu_1_2", "linear_1_1"]
    for label in rec.layers_with_saved_gradients:
        assert torch.equal(rec[label].gradient, ref[label])
    shutil.rmtree(tmp_path / "b")


def test_stream_non_tensor_postfunc_output_listed_unsupported(tmp_path: Path) -> None:
    target = tmp_path / "g"
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=target, gradient_postfunc=lambda g: g.shape)
    _backward(log)
    ref = reference_grads("mlp", model, x)
    log.finalize_gradient_bundle()
    man = _manifest(target)
    assert [(u["label"], u["kind"], u["reason"]) for u in man["unsupported_tensors"]] == [
        (f"{label}:1", "transformed_gradient", "not a tensor (Size)")
        for label in ["linear_1_1", "relu_1_2", "linear_2_3", "output_1"]
    ]
    loaded = tl.load(target)
    _assert_gradients(loaded, "mlp", ref)
    assert all(e.transformed_gradient is None for e in loaded)


def test_failed_gradient_write_aborts_the_stream(tmp_path: Path) -> None:
    model, x = mlp(), mlp_input()
    log = tl.log_forward_pass(model, x, save_gradients_to=tmp_path / "a")
    tmp = _tmp_dirs(tmp_path / "a")[0]
    for _ in range(100):  # the writer threads may still be adding the journal while it is removed
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            break
        time.sleep(0.01)
    assert not tmp.exists()  # the writer threads cannot write there any more
    out = log[log.output_layers[0]].activation
    # The write fails on a writer thread: the error comes with a later gradient of the backward,
    # or at the latest from the commit.
    with pytest.raises(TorchLensIOError, match="No such file or directory"):
        _loss(out).backward(retain_graph=True)
        log.finalize_gradient_bundle()
    with pytest.raises(ValueError, match="no gradient bundle waiting"):
        log.finalize_gradient_bundle()
    _loss(out).backward()  # later gradients are kept in memory only
    _assert_gradients(log, "mlp", reference_grads("mlp", model, x))
    assert not (tmp_path / "a").exists()
