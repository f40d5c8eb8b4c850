"""The other 2.15 entry points and options (spec §1.2, §1.4, §8.6, §8.7): optimizer marks, train-mode
guard rails, unsupported tensor variants, validation aliases, batch validation, `rehydrate_nested`,
`ModelLog.save_new_activations`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import torchlens as tl
from torchlens import _options

from models.small import SeqThenLoop, SignBranch


def test_optimizer_marks_params() -> None:
    model = SeqThenLoop()
    opt = torch.optim.SGD(model.fc.parameters(), lr=0.1)
    log = tl.log_forward_pass(model, torch.randn(2, 3), optimizer=opt)
    assert {p.address: p.has_optimizer for p in log.params} == {
        "seq.0.weight": False,
        "seq.0.bias": False,
        "fc.weight": True,
        "fc.bias": True,
    }
    assert all(p.has_optimizer is None for p in tl.log_forward_pass(model, torch.randn(2, 3)).params)


def test_train_mode_guard_rails() -> None:
    model = SeqThenLoop()
    x = torch.randn(2, 3)
    with pytest.raises(tl.TrainingModeConfigError, match="detach_saved_tensors=False"):
        tl.log_forward_pass(model, x, train_mode=True, detach_saved_tensors=True)
    with torch.inference_mode(), pytest.raises(tl.TrainingModeConfigError, match="inference mode"):
        tl.log_forward_pass(model, x, train_mode=True)
    log = tl.log_forward_pass(model, x, train_mode=True)
    assert log.train_mode is True and log["linear_2_3:2"].activation.grad_fn is not None


def test_unsupported_tensor_variants() -> None:
    from torchlens._robustness import UnsupportedTensorVariantError

    with pytest.raises(UnsupportedTensorVariantError, match="meta tensor in input"):
        tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3, device="meta"))
    with pytest.raises(UnsupportedTensorVariantError, match="model parameters/buffers"):
        tl.validate_forward_pass(SeqThenLoop().to("meta"), torch.randn(2, 3))
    # torch is left as found: a normal call afterwards logs as usual
    assert tl.log_forward_pass(SeqThenLoop(), torch.randn(2, 3)).num_operations == 5


def test_check_metadata_invariants_and_validate_aliases(tmp_path: Path) -> None:
    model = SeqThenLoop()
    x = torch.randn(2, 3)
    assert tl.check_metadata_invariants(tl.log_forward_pass(model, x)) is True
    _options._warned.clear()
    with pytest.warns(DeprecationWarning, match="validate_saved_activations"):
        assert tl.validate_saved_activations(model, x) is True
    with pytest.raises(TypeError, match="ModelLog"):
        tl.rehydrate_nested(model)
    log = tl.log_forward_pass(model, x)
    tl.save(log, tmp_path / "b")
    loaded = tl.load(tmp_path / "b", materialize_nested=False)
    assert tl.rehydrate_nested(loaded, map_location="cpu") is None
    assert torch.equal(loaded["linear_2_3:2"].activation, log["linear_2_3:2"].activation)


def test_validate_batch_of_models_and_inputs(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    out = tmp_path / "results.csv"
    built: list[str] = []

    def loader(cls: type[nn.Module]) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            built.append(cls.__name__)
            return cls()

        return build

    spec = {
        "seq": {
            "model_category": "toy",
            "model_loading_func": loader(SeqThenLoop),
            "model_sample_inputs": {"a": torch.randn(2, 3), "b": torch.randn(5, 3)},
        },
        "sign": {
            "model_category": "branch",
            "model_loading_func": loader(SignBranch),
            "model_sample_inputs": {"pos": torch.ones(3)},
        },
    }
    table = tl.validate_batch_of_models_and_inputs(spec, str(out))
    assert table.values.tolist() == [
        ["toy", "seq", "a", True],
        ["toy", "seq", "b", True],
        ["branch", "sign", "pos", True],
    ]
    assert built == ["SeqThenLoop", "SignBranch"]
    again = tl.validate_batch_of_models_and_inputs(spec, str(out), redo_model_if_already_run=False)
    assert built == ["SeqThenLoop", "SignBranch"] and again.values.tolist() == table.values.tolist()
    redone = tl.validate_batch_of_models_and_inputs({"sign": spec["sign"]}, str(out))
    assert built[-1] == "SignBranch" and len(redone) == 3 and out.read_text().count("sign") == 1


def _hook_outputs(model: nn.Module, x: torch.Tensor) -> tuple[dict[str, list[torch.Tensor]], torch.Tensor]:
    """Every module's output per call, by address (forward hooks), and the model's output."""
    outs: dict[str, list[torch.Tensor]] = {}
    handles = [
        m.register_forward_hook(lambda mod, i, o, name=name: outs.setdefault(name, []).append(o.detach().clone()))
        for name, m in model.named_modules()
        if name
    ]
    try:
        y = model(x)
    finally:
        for h in handles:
            h.remove()
    return outs, y


def test_save_new_activations() -> None:
    model = SeqThenLoop()
    log = tl.log_forward_pass(model, torch.randn(2, 3))
    labels = log.layer_labels
    x2 = torch.randn(2, 3)
    log.save_new_activations(model, x2)
    hooks, y = _hook_outputs(model, x2)
    assert log.layer_labels == labels and log.logging_mode == "fast"
    assert torch.equal(log["linear_1_1"].activation, hooks["seq.0"][0])
    assert torch.equal(log["relu_1_2"].activation, hooks["seq"][0])
    assert torch.equal(log["linear_2_3:1"].activation, hooks["fc"][0])
    assert torch.equal(log["linear_2_3:2"].activation, hooks["fc"][1])
    assert torch.equal(log["output_1"].activation, y)
    # a selection: only those layers (and the outputs) keep values
    x3 = torch.randn(2, 3)
    log.save_new_activations(model, x3, layers_to_save=["relu_1_2"])
    assert log.layers_with_saved_activations == ["relu_1_2", "sum_1_4", "output_1"]
    assert torch.equal(log["relu_1_2"].activation, torch.relu(model.seq[0](x3)))
    # new shapes: a warning, and the new shapes are reported
    with pytest.warns(UserWarning) as record:
        log.save_new_activations(model, torch.randn(5, 3))
    changed = [str(w.message).split("'")[1] for w in record]
    assert changed == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3:1", "linear_2_3:2"]  # the sum stays 0-d
    assert str(record[0].message) == (
        "Tensor shape changed for 'input_1': expected (2, 3), got (5, 3). The computational graph may have "
        "changed between passes."
    )
    assert log["linear_1_1"].tensor_shape == (5, 4)


def test_save_new_activations_refuses_a_changed_graph() -> None:
    model = SignBranch()
    log = tl.log_forward_pass(model, torch.ones(3))
    assert log.layer_labels == ["input_1", "sum_1_1", "gt_1_2", "relu_1_3", "output_1"]
    with pytest.raises(ValueError, match="computational graph changed"):
        log.save_new_activations(model, -torch.ones(3))
    log.save_new_activations(model, torch.full((3,), 2.0))
    assert torch.equal(log["output_1"].activation, torch.full((3,), 2.0))
