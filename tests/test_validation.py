"""validate_forward_pass (spec §11): replay from saved activations on 50+ models, corruption detection."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import torchlens as tl

from models import zoo
from models.large import BIG

NAMES = sorted(zoo.ZOO)


@pytest.mark.parametrize("name", NAMES)
def test_zoo_validates(name: str) -> None:
    case = zoo.ZOO[name]
    model = case.factory()
    model.train(case.train)
    args, kwargs = case.inputs()
    assert tl.validate_forward_pass(model, args, kwargs, random_seed=0) is True


@pytest.mark.parametrize("name", sorted(BIG))
def test_real_models_validate(name: str) -> None:
    build, inputs = BIG[name]
    model = build().eval()
    x = inputs()
    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], dict):
        assert tl.validate_forward_pass(model, list(x[0]), x[1], random_seed=0) is True
        return
    assert tl.validate_forward_pass(model, x, random_seed=0) is True


def test_validation_covers_fifty_models() -> None:
    assert len(NAMES) + len(BIG) >= 50


def test_dropout_in_train_mode_replays_with_rng() -> None:
    model = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.5), nn.ReLU()).train()
    assert tl.validate_forward_pass(model, torch.randn(4, 6)) is True


def _resnet_log() -> tuple[tl.ModelLog, torch.Tensor]:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        gt = model(x)
    log = tl.log_forward_pass(model, x, save_function_args=True, save_rng_states=True, random_seed=0)
    return log, gt


def test_corrupted_activation_fails(caplog: pytest.LogCaptureFixture) -> None:
    log, gt = _resnet_log()
    assert log.validate_forward_pass([gt]) is True
    with torch.no_grad():
        log["relu_3"].activation.mul_(1.5)
    assert log.validate_forward_pass([gt]) is False
    assert "do not match the values computed based on the parent layers" in caplog.text


def test_corrupted_output_fails(caplog: pytest.LogCaptureFixture) -> None:
    log, gt = _resnet_log()
    assert log.validate_forward_pass([gt + 1]) is False
    assert "0th output layer, output_1, does not match the ground truth" in caplog.text


def test_wrong_parent_attribution_fails_perturbation(caplog: pytest.LogCaptureFixture) -> None:
    from torchlens._capture.session import ParentRef

    class TwoParents(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = x + 1
            b = x * 3
            return a * 2 + b

    log = tl.log_forward_pass(TwoParents(), torch.randn(3, 3), save_function_args=True, random_seed=0)
    # Make mul_1_3 (`a * 2`) claim it has `b` as an extra, unused argument: perturbing it changes nothing.
    nid = log._node_ids[log._fin.lookup("mul_2_3")]
    orig, args, kwargs = log._data.func_args[nid]
    b_nid = log._node_ids[log._fin.lookup("mul_1_2")]
    log._data.func_args[nid] = (lambda t, k, unused: orig(t, k), (*args, ParentRef(b_nid, None)), kwargs)
    assert log.validate_forward_pass([log[-1].activation]) is False
    assert "did not change its output" in caplog.text


def test_metadata_invariants_pass_and_detect() -> None:
    log, _ = _resnet_log()
    assert log.check_metadata_invariants() is True
    log._cols["parents"] = [list(p) for p in log._col("parents")]
    log._cols["parents"][5].append(7)
    with pytest.raises(tl.MetadataInvariantError):
        log.check_metadata_invariants()


def test_validate_saved_activations_alias() -> None:
    log, gt = _resnet_log()
    with pytest.warns(DeprecationWarning):
        assert log.validate_saved_activations([gt]) is True


def test_validation_restores_state_and_inputs() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).train()
    x = torch.randn(5, 4)
    x0 = x.clone()
    rm = model[1].running_mean.clone()
    assert tl.validate_forward_pass(model, x) is True
    assert torch.equal(x, x0)
    # Ground truth and logged pass each update the stats once; validation restores in between.
    assert not torch.equal(model[1].running_mean, rm)
    assert model.training


class _ConstStateMax(nn.Module):
    """An RWKV-like state that starts at -1e38: no value within its range differs from it."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.full((2, 4), -1e38) + 0.0
        return torch.maximum(state, self.fc(x)) * 2


def test_parent_with_no_differing_value_is_not_a_false_alarm(caplog: pytest.LogCaptureFixture) -> None:
    # TorchLens 2.15.0 returns True here too; its labels are the same.
    torch.manual_seed(0)
    model, x = _ConstStateMax(), torch.randn(2, 4)
    assert tl.validate_forward_pass(model, x)
    assert "did not change its output" not in caplog.text
    log = tl.log_forward_pass(model, x)
    assert log.layer_labels == ["input_1", "full_1_1", "add_1_2", "linear_1_3", "maximum_1_4", "mul_1_5", "output_1"]
