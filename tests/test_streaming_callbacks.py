"""Streaming to a callback (`StreamingOptions(activation_callback=...)`, deprecated `activation_sink`)
and streaming combined with `activation_postfunc` (spec §8.5, docs/bundle-format.md).

The callback labels of `LoopWithBuffer` are the ones TorchLens 2.15.0 reports for the same model
(raw labels `{type}_{type count}_{creation order}_raw` in a single exhaustive pass, pass-qualified
final labels in the saving pass of a selection).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import torchlens as tl
from torchlens import TorchLensIOError
from torchlens._capture import hot

from models.streaming import FailsMidway, LoopWithBuffer

RAW_LABELS = [
    "input_1_raw",
    "linear_1_2_raw",
    "relu_1_3_raw",
    "buffer_1_raw",
    "add_1_5_raw",
    "linear_2_6_raw",
    "relu_2_7_raw",
    "linear_3_8_raw",
    "relu_3_9_raw",
    "linear_4_10_raw",
]
# The same nodes, by final label (the log's order; output_1 is not saved through the callback).
FINAL_LABELS = [
    "input_1",
    "linear_1_1:1",
    "relu_1_2:1",
    "buffer_1",
    "add_1_3",
    "linear_1_1:2",
    "relu_1_2:2",
    "linear_1_1:3",
    "relu_1_2:3",
    "linear_2_4",
]


class Calls:
    """A callback that records `(label, tensor)` in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, torch.Tensor]] = []

    def __call__(self, label: str, t: torch.Tensor) -> None:
        self.calls.append((label, t))

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.calls]


def _callback(cb: Any, **kw: Any) -> tl.StreamingOptions:
    return tl.StreamingOptions(activation_callback=cb, **kw)


def _hook_outputs(model: torch.nn.Module, x: torch.Tensor, *names: str) -> dict[str, list[torch.Tensor]]:
    """What each named submodule returned, per call, in a plain forward pass (forward hooks)."""
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = [
        getattr(model, n).register_forward_hook(lambda _m, _i, o, n=n: got[n].append(o.detach().clone())) for n in names
    ]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def _expected_raw_labels(log: tl.ModelLog) -> list[str]:
    """Spec §5.2 raw labels of every non-output entry, in creation order, from the log's own fields."""
    counts: dict[str, int] = {}
    out = []
    for lab in log.layer_labels:
        e = log[lab]
        if e.layer_type == "output":
            continue
        n = counts[e.layer_type] = counts.get(e.layer_type, 0) + 1
        tail = "" if e.layer_type in ("input", "buffer") else f"_{e.creation_order}"
        out.append(f"{e.layer_type}_{n}{tail}_raw")
    return out


# --------------------------------------------------------------------------- callback
def test_callback_gets_raw_labels_in_capture_order_and_the_saved_tensors() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cb = Calls()
    log = tl.log_forward_pass(model, x, streaming=_callback(cb))
    assert cb.labels == RAW_LABELS
    assert log.layer_labels == [*FINAL_LABELS, "output_1"]
    # Each tensor is the saved copy itself (one object, not a second copy).
    for (raw, t), final in zip(cb.calls, FINAL_LABELS, strict=True):
        assert t is log[final].activation, raw
    hooks = _hook_outputs(model, x, "l1", "l2")
    assert [torch.equal(cb.calls[i][1], h) for i, h in zip((1, 5, 7), hooks["l1"], strict=True)] == [True] * 3
    assert torch.equal(cb.calls[9][1], hooks["l2"][0])
    assert torch.equal(cb.calls[0][1], x)
    assert torch.equal(cb.calls[3][1], model.b)
    # Not detached: the copy keeps the autograd history of the op output (a clone node).
    assert cb.calls[1][1].grad_fn is not None and type(cb.calls[1][1].grad_fn).__name__ == "CloneBackward0"


def test_callback_with_layer_selection_gets_final_labels() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cb = Calls()
    log = tl.log_forward_pass(model, x, layers_to_save=["relu"], streaming=_callback(cb))
    # The selection plus the output's parent (saved so that the output has a value), in order.
    assert cb.labels == ["relu_1_2:1", "relu_1_2:2", "relu_1_2:3", "linear_2_4:1"]
    for label, t in cb.calls:
        assert t is log[label].activation
    assert [lab for lab in log.layer_labels if log[lab].has_saved_activations] == [
        "relu_1_2:1",
        "relu_1_2:2",
        "relu_1_2:3",
        "linear_2_4",
        "output_1",
    ]
    cb2 = Calls()
    tl.log_forward_pass(model, x, layers_to_save=["input_1", 2], streaming=_callback(cb2))
    assert cb2.labels == ["input_1:1", "relu_1_2:1", "linear_2_4:1"]
    ref = tl.log_forward_pass(model, x)
    for label, t in cb2.calls:
        assert torch.equal(t, ref[label].activation), label


def test_callback_with_nothing_saved_is_never_called() -> None:
    cb = Calls()
    log = tl.log_forward_pass(LoopWithBuffer(), torch.randn(2, 4), layers_to_save=None, streaming=_callback(cb))
    assert cb.calls == [] and len(log) == 11


def test_activation_sink_is_the_deprecated_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchlens import _options

    monkeypatch.setattr(_options, "_warned", set())
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cb = Calls()
    with pytest.warns(DeprecationWarning, match="activation_sink"):
        log = tl.log_forward_pass(model, x, activation_sink=cb)
    assert cb.labels == RAW_LABELS
    assert cb.calls[4][1] is log["add_1_3"].activation
    with pytest.raises(TypeError, match="activation_sink"):
        tl.log_forward_pass(model, x, activation_sink=cb, streaming=_callback(cb))


def test_callback_option_errors(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    with pytest.raises(ValueError, match="mutually exclusive"):
        tl.log_forward_pass(model, x, streaming=_callback(Calls(), bundle_path=str(tmp_path / "b")))
    assert not list(tmp_path.iterdir())
    with pytest.raises(TypeError, match="callable"):
        tl.log_forward_pass(model, x, streaming=_callback("not callable"))


def test_callback_detached_and_on_output_device() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cb = Calls()
    log = tl.log_forward_pass(model, x, detach_saved_tensors=True, output_device="cpu", streaming=_callback(cb))
    assert cb.labels == RAW_LABELS
    assert not any(t.requires_grad for _, t in cb.calls)
    assert all(t.device.type == "cpu" for _, t in cb.calls)
    for (_, t), final in zip(cb.calls, FINAL_LABELS, strict=True):
        assert t is log[final].activation


def test_callback_without_retaining_keeps_nothing_in_memory() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    ref = tl.log_forward_pass(model, x)
    cb = Calls()
    log = tl.log_forward_pass(model, x, streaming=_callback(cb, retain_in_memory=False))
    assert cb.labels == RAW_LABELS
    for (_, t), final in zip(cb.calls, FINAL_LABELS, strict=True):
        assert torch.equal(t, ref[final].activation), final
        assert log[final].activation is None and not log[final].has_saved_activations
    assert log.layer_labels == ref.layer_labels


def test_callback_torch_calls_are_not_logged() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    sums: list[float] = []
    log = tl.log_forward_pass(
        model, x, streaming=_callback(lambda label, t: sums.append(float(torch.sum(t.detach() * 2))))
    )
    plain = tl.log_forward_pass(model, x)
    assert log.layer_labels == plain.layer_labels
    assert sums == [float(torch.sum(plain[lab].activation.detach() * 2)) for lab in FINAL_LABELS]


def test_callback_exception_aborts_and_leaves_torch_as_found() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    seen: list[str] = []

    def fails(label: str, t: torch.Tensor) -> None:
        seen.append(label)
        if label.startswith("relu"):
            raise KeyError("stop here")

    with pytest.raises(KeyError, match="stop here"):
        tl.log_forward_pass(model, x, streaming=_callback(fails))
    assert seen == RAW_LABELS[:3]
    assert hot.get_session() is None
    assert torch.equal(model(x), _hook_outputs(model, x, "l2")["l2"][0])
    cb = Calls()
    tl.log_forward_pass(model, x, streaming=_callback(cb))
    assert cb.labels == RAW_LABELS


def test_callback_with_postfunc_gets_raw_copies() -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cb = Calls()
    log = tl.log_forward_pass(model, x, activation_postfunc=lambda t: t * 2, streaming=_callback(cb))
    assert cb.labels == RAW_LABELS
    ref = tl.log_forward_pass(model, x)
    for (_, t), final in zip(cb.calls, FINAL_LABELS, strict=True):
        assert t is log[final].activation
        assert torch.equal(t, ref[final].activation)
        assert torch.equal(log[final].transformed_activation, ref[final].activation * 2)
    # Without the raw copy there is no saved raw activation to report (as in 2.15).
    cb2 = Calls()
    log2 = tl.log_forward_pass(
        model, x, activation_postfunc=lambda t: t * 2, save_raw_activation=False, streaming=_callback(cb2)
    )
    assert cb2.calls == []
    assert torch.equal(log2["relu_1_2:3"].transformed_activation, ref["relu_1_2:3"].activation * 2)
    assert log2["relu_1_2:3"].activation is None


def test_callback_on_gpt2_follows_capture_order() -> None:
    import transformers

    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=64, n_head=2, vocab_size=1000, n_positions=64, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 1000, (1, 32))
    cb = Calls()
    log = tl.log_forward_pass(model, ids, input_kwargs={"use_cache": False}, streaming=_callback(cb))
    assert not log.orphan_layers
    assert cb.labels == _expected_raw_labels(log)
    saved = [lab for lab in log.layer_labels if log[lab].layer_type != "output"]
    assert len(cb.calls) == len(saved) > 100
    for (raw, t), lab in zip(cb.calls, saved, strict=True):
        assert t is log[lab].activation, raw
    with torch.no_grad():
        logits = model(ids, use_cache=False).logits
    last = cb.calls[-1][1]
    assert torch.equal(last, logits)


# --------------------------------------------------------------------------- bundle + postfunc
def _manifest(path: Path) -> dict[str, Any]:
    return json.loads((path / "manifest.json").read_text())


def test_streaming_with_postfunc_writes_raw_and_transformed(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    post = lambda t: t.float().mean(dim=-1, keepdim=True) * 3  # noqa: E731
    ref = tl.log_forward_pass(model, x, activation_postfunc=post)
    path = tmp_path / "s"
    log = tl.log_forward_pass(model, x, activation_postfunc=post, streaming=tl.StreamingOptions(bundle_path=str(path)))
    man = _manifest(path)
    entries = [(t["blob_id"], t["kind"], t["label"]) for t in man["tensors"]]
    expected = []
    for nid, final in enumerate(FINAL_LABELS):  # node n: raw blob 2n+1, transformed blob 2n+2
        pq = final if ":" in final else f"{final}:1"
        expected += [(2 * nid + 1, "activation", pq), (2 * nid + 2, "transformed_activation", pq)]
    assert entries == expected
    assert man["n_activation_blobs"] == 20
    for final in FINAL_LABELS:
        assert torch.equal(log[final].activation, ref[final].activation)
        assert torch.equal(log[final].transformed_activation, ref[final].transformed_activation)
    for lazy in (False, True):
        back = tl.load(path, lazy=lazy)
        for final in [*FINAL_LABELS, "output_1"]:
            e = back[final]
            raw = e.materialize_activation() if lazy else e.activation
            assert torch.equal(raw, ref[final].activation), final
            assert torch.equal(e.transformed_activation, ref[final].transformed_activation), final


def test_streaming_with_postfunc_not_retained(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    post = lambda t: t * 2  # noqa: E731
    ref = tl.log_forward_pass(model, x, activation_postfunc=post)
    path = tmp_path / "s"
    log = tl.log_forward_pass(
        model,
        x,
        activation_postfunc=post,
        streaming=tl.StreamingOptions(bundle_path=str(path), retain_in_memory=False),
    )
    assert not log._saved
    finals = [*FINAL_LABELS, "output_1"]
    assert all(log[f].activation is None and log[f].activation_ref is not None for f in finals)
    for final in finals:
        e = log[final]
        assert e.has_saved_activations
        assert torch.equal(e.materialize_activation(), ref[final].activation), final
        # Read from the bundle on first access, like a lazy load.
        assert torch.equal(e.transformed_activation, ref[final].transformed_activation), final


def test_streaming_postfunc_without_raw(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    post = lambda t: t + 1  # noqa: E731
    ref = tl.log_forward_pass(model, x)
    path = tmp_path / "s"
    log = tl.log_forward_pass(
        model,
        x,
        activation_postfunc=post,
        save_raw_activation=False,
        streaming=tl.StreamingOptions(bundle_path=str(path)),
    )
    man = _manifest(path)
    assert [t["kind"] for t in man["tensors"]] == ["transformed_activation"] * 10
    assert [t["blob_id"] for t in man["tensors"]] == [2 * n + 2 for n in range(10)]
    back = tl.load(path)
    for final in [*FINAL_LABELS, "output_1"]:
        assert log[final].activation is None and back[final].activation is None
        assert back[final].has_saved_activations
        assert torch.equal(back[final].transformed_activation, ref[final].activation + 1), final


def test_streaming_postfunc_with_selection(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    post = lambda t: -t  # noqa: E731
    ref = tl.log_forward_pass(model, x)
    path = tmp_path / "s"
    tl.log_forward_pass(
        model,
        x,
        layers_to_save=["relu"],
        activation_postfunc=post,
        streaming=tl.StreamingOptions(bundle_path=str(path)),
    )
    man = _manifest(path)
    labels = ["relu_1_2:1", "relu_1_2:2", "relu_1_2:3", "linear_2_4:1"]
    assert [(t["kind"], t["label"]) for t in man["tensors"]] == [
        (k, lab) for lab in labels for k in ("activation", "transformed_activation")
    ]
    back = tl.load(path)
    for lab in labels:
        assert torch.equal(back[lab].activation, ref[lab].activation)
        assert torch.equal(back[lab].transformed_activation, -ref[lab].activation)
    assert back["add_1_3"].activation is None and back["add_1_3"].transformed_activation is None


def test_streaming_postfunc_non_tensor_output_aborts(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    path = tmp_path / "s"
    with pytest.raises(
        TorchLensIOError,
        match=r"^Streaming save requires activation_postfunc outputs to be torch.Tensor instances, but layer "
        r"input_1_raw produced Size\.$",
    ):
        tl.log_forward_pass(
            model, x, activation_postfunc=lambda t: t.shape, streaming=tl.StreamingOptions(bundle_path=str(path))
        )
    assert not path.exists()
    (tmp,) = tmp_path.glob("s.tmp.*")
    assert (tmp / "PARTIAL").exists() and "Streaming save requires" in (tmp / "REASON.txt").read_text()


def test_postfunc_error_says_whether_streaming(tmp_path: Path) -> None:
    model, x = LoopWithBuffer(), torch.randn(2, 4)

    def bad(t: torch.Tensor) -> torch.Tensor:
        raise ValueError("nope")

    with pytest.raises(tl.TorchLensPostfuncError, match=r"streaming_active=True\)\.$") as e:
        tl.log_forward_pass(
            model, x, activation_postfunc=bad, streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "s"))
        )
    assert isinstance(e.value.__cause__, ValueError)
    with pytest.raises(tl.TorchLensPostfuncError, match=r"streaming_active=False\)\.$"):
        tl.log_forward_pass(model, x, activation_postfunc=bad, streaming=_callback(Calls()))


def test_recover_streamed_postfunc_capture(tmp_path: Path) -> None:
    post = lambda t: t * 10  # noqa: E731
    torch.manual_seed(0)
    failing = FailsMidway(fail_at=120)
    x = torch.randn(2, 8)
    path = tmp_path / "s"
    with pytest.raises(RuntimeError, match="failed at step 120"):
        tl.log_forward_pass(
            failing, x, random_seed=5, activation_postfunc=post, streaming=tl.StreamingOptions(bundle_path=str(path))
        )
    assert tl.recover_bundle(path) == str(path)
    rec = tl.load(path)
    assert json.loads((path / "metadata.json").read_text())["info"]["recovered"] is True
    whole = FailsMidway()
    whole.load_state_dict(failing.state_dict())
    ref = tl.log_forward_pass(whole, x, random_seed=5, activation_postfunc=post)
    by_raw = {e.tensor_label_raw: e for e in ref}
    n = 0
    for e in rec:
        if e.has_saved_activations:
            r = by_raw[e.tensor_label_raw]
            assert torch.equal(e.activation, r.activation), e.tensor_label_raw
            assert torch.equal(e.transformed_activation, r.activation * 10), e.tensor_label_raw
            n += 1
    man = _manifest(path)
    assert n > 100
    assert man["n_activation_blobs"] == 2 * n


# --------------------------------------------------------------------------- options object
def test_streaming_options_track_explicit_fields() -> None:
    s = tl.StreamingOptions(bundle_path="x")
    assert (s.bundle_path, s.retain_in_memory, s.activation_callback) == ("x", True, None)
    assert s.is_field_explicit("bundle_path") and not s.is_field_explicit("retain_in_memory")
    assert s.as_dict() == {"bundle_path": "x", "retain_in_memory": True, "activation_callback": None}
    assert s == tl.StreamingOptions(bundle_path="x", retain_in_memory=True) and hash(s) == hash(
        tl.StreamingOptions("x")
    )
    t = tl.StreamingOptions.from_values(
        {"bundle_path": "y", "retain_in_memory": False, "activation_callback": None}, frozenset({"retain_in_memory"})
    )
    assert t.retain_in_memory is False and t.is_field_explicit("retain_in_memory")
    assert not t.is_field_explicit("bundle_path")
    with pytest.raises(TypeError):
        tl.StreamingOptions(foo=1)  # type: ignore[call-arg]


def test_flat_streaming_kwargs_conflict_with_explicit_fields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchlens import _options

    monkeypatch.setattr(_options, "_warned", set())
    model, x = LoopWithBuffer(), torch.randn(2, 4)
    cases = [
        (
            {"keep_activations_in_memory": False},
            tl.StreamingOptions(bundle_path=str(tmp_path / "a"), retain_in_memory=True),
            "keep_activations_in_memory",
        ),
        ({"save_activations_to": str(tmp_path / "b")}, tl.StreamingOptions(bundle_path=str(tmp_path / "c")), "save"),
        ({"activation_sink": Calls()}, tl.StreamingOptions(activation_callback=None), "activation_sink"),
    ]
    for flat, opts, name in cases:
        with pytest.raises(TypeError, match=f"Do not pass both `{name}"):
            tl.log_forward_pass(model, x, streaming=opts, **flat)
    assert not list(tmp_path.iterdir())
    # A field left at its default does not conflict: the flat value applies.
    with pytest.warns(DeprecationWarning, match="keep_activations_in_memory"):
        log = tl.log_forward_pass(
            model, x, streaming=tl.StreamingOptions(bundle_path=str(tmp_path / "d")), keep_activations_in_memory=False
        )
    assert log["relu_1_2:2"].activation is None and log["relu_1_2:2"].activation_ref is not None


@pytest.mark.parametrize("retain", [True, False])
@pytest.mark.parametrize("postfunc", [None, torch.neg])
def test_streamed_output_written_through_a_view_is_the_returned_value(
    tmp_path: Path, retain: bool, postfunc: Any
) -> None:
    from models.zoo_fidelity import UnsqueezeFill

    torch.manual_seed(0)
    model, x = UnsqueezeFill(), torch.randn(3, 4)
    with torch.no_grad():
        returned = model(x.clone())
    opts = tl.StreamingOptions(bundle_path=tmp_path / "b", retain_in_memory=retain)
    log = tl.log_forward_pass(model, x.clone(), streaming=opts, activation_postfunc=postfunc)
    back = tl.load(tmp_path / "b")
    if not retain:
        assert torch.equal(log["output_1"].activation_ref.materialize(), returned)
    for lg in (log, back) if retain else (back,):
        assert torch.equal(lg["output_1"].activation, returned)
        if postfunc is not None:
            assert torch.equal(lg["output_1"].transformed_activation, postfunc(returned))
    # the producer keeps the value its own op made, as the in-memory log does
    mem = tl.log_forward_pass(model, x.clone(), activation_postfunc=postfunc)
    for e in mem:
        assert torch.equal(back[e.layer_label].activation, e.activation), e.layer_label


def test_save_new_activations_sends_the_new_activations_to_the_callback() -> None:
    # TorchLens 2.15.0 prints these two label lists for the same model and calls.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    seen: list[tuple[str, torch.Tensor]] = []
    opts = tl.StreamingOptions(activation_callback=lambda label, t: seen.append((label, t)))
    log = tl.log_forward_pass(model, torch.randn(2, 3), streaming=opts)
    assert [s[0] for s in seen] == ["input_1_raw", "linear_1_2_raw", "relu_1_3_raw", "linear_2_4_raw"]
    seen.clear()
    x2 = torch.randn(2, 3)
    log.save_new_activations(model, x2)
    assert [s[0] for s in seen] == ["input_1:1", "linear_1_1:1", "relu_1_2:1", "linear_2_3:1"]
    for label, t in seen:
        assert t is log[label].activation
    with torch.no_grad():
        assert torch.equal(seen[2][1], torch.relu(model[0](x2)))
        assert torch.equal(log["output_1"].activation, model(x2))
