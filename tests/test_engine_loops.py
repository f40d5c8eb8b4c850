"""Every row of spec §6.4 (loop detection), on real torch models."""

from __future__ import annotations

import torch
from torch import nn

import torchlens as tl

from models import SimpleRecurrent
from models.zoo_modules import SharedBlockTwice


def labels_of(model: nn.Module, *inputs: torch.Tensor) -> list[str]:
    return tl.log_forward_pass(model, list(inputs), layers_to_save=None).layer_labels


def passes(prefix: str, n: int) -> list[str]:
    return [f"{prefix}:{i}" for i in range(1, n + 1)]


def test_simple_loop() -> None:
    labels = labels_of(SimpleRecurrent(), torch.rand(2, 5))
    body = [lab for lab in labels if lab.startswith(("linear", "add", "mul"))]
    assert sorted(body) == sorted(passes("linear_1_1", 4) + passes("add_1_2", 4) + passes("mul_1_3", 4))


def test_same_block_twice() -> None:
    log = tl.log_forward_pass(SharedBlockTwice(), torch.rand(2, 4), layers_to_save=None)
    assert log.layer_labels == ["input_1", "linear_1_1:1", "relu_1_2:1", "linear_1_1:2", "relu_1_2:2", "output_1"]
    assert log["relu_1_2:2"].containing_modules == ["block:2"]
    assert log["block:1"] is log["relu_1_2:1"]
    assert log["block:2"] is log["relu_1_2:2"]


class SharedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc(x)
        b = torch.exp(a)
        c = b * 3
        return self.fc(c)


def test_same_linear_unrelated_places() -> None:
    labels = labels_of(SharedLinear(), torch.rand(2, 3))
    assert labels == ["input_1", "linear_1_1:1", "exp_1_2", "mul_1_3", "linear_1_1:2", "output_1"]


class Sin3(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(torch.sin(torch.sin(x)))


def test_sin_chain_is_recurrent() -> None:
    assert labels_of(Sin3(), torch.rand(3)) == ["input_1", *passes("sin_1_1", 3), "output_1"]


class TwoLoops(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(3):
            x = torch.cos(torch.sin(x))
        x = x + 1
        for _ in range(3):
            x = torch.cos(torch.sin(x))
        return x


def test_two_separate_loops() -> None:
    labels = labels_of(TwoLoops(), torch.rand(3))
    assert labels[1:3] == ["sin_1_1:1", "cos_1_2:1"]
    assert "add_1_3" in labels
    assert [lab for lab in labels if lab.startswith("sin_2_4")] == passes("sin_2_4", 3)
    assert [lab for lab in labels if lab.startswith("cos_2_5")] == passes("cos_2_5", 3)


class MulChain(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2
        x = x * 3
        return x * 2


def test_different_args_not_merged() -> None:
    assert labels_of(MulChain(), torch.rand(3)) == ["input_1", "mul_1_1", "mul_2_2", "mul_3_3", "output_1"]


class TwoLinearsFunctionalRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 4)
        self.l2 = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.l2(torch.relu(self.l1(x))))


def test_relu_separated_by_param_op() -> None:
    labels = labels_of(TwoLinearsFunctionalRelu(), torch.rand(2, 4))
    assert labels == ["input_1", "linear_1_1", "relu_1_2", "linear_2_3", "relu_2_4", "output_1"]


class ParallelSin(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sin(x)
        b = torch.sin(x * 2)
        return a + b


def test_parallel_sin_are_two_layers() -> None:
    labels = labels_of(ParallelSin(), torch.rand(3))
    assert labels == ["input_1", "sin_1_1", "mul_1_2", "sin_2_3", "add_1_4", "output_1"]


class NestedLoops(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            for _ in range(3):
                x = torch.sin(x)
            x = x * 2
        return x


def test_nested_param_free_loops() -> None:
    log = tl.log_forward_pass(NestedLoops(), torch.rand(3), layers_to_save=None)
    sins = [lab for lab in log.layer_labels if lab.startswith("sin")]
    assert sins == passes("sin_1_1", 12)
    assert [lab for lab in log.layer_labels if lab.startswith("mul")] == passes("mul_1_2", 4)


class TwoInputsChain(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.tanh(a) + torch.tanh(b)


def test_identical_inputs_do_not_crash() -> None:
    log = tl.log_forward_pass(TwoInputsChain(), [torch.rand(3), torch.rand(3)], layers_to_save="all")
    assert log.layer_labels[-1] == "output_1"
    assert log.input_layers == ["input_1", "input_2"]
    assert log.layer_labels == ["input_1", "input_2", "tanh_1_1", "tanh_2_2", "add_1_3", "output_1"]


def test_reduced_mode_only_groups_params() -> None:
    log = tl.log_forward_pass(SimpleRecurrent(), torch.rand(2, 5), layers_to_save=None, detect_recurrent_patterns=False)
    labels = log.layer_labels
    assert [lab for lab in labels if lab.startswith("linear")] == passes("linear_1_1", 4)
    assert len([lab for lab in labels if lab.startswith("add")]) == 4
    assert all(":" not in lab for lab in labels if lab.startswith(("add", "mul")))


class LstmOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 4, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h, c) = self.lstm(x)
        return out[:, -1] + h[0] + c[0]


def test_outputs_of_one_parameter_op_are_passes_of_one_layer() -> None:
    # As in TorchLens 2.15: output, h and c of one LSTM call use the same function and parameters,
    # so the parameter rule makes them three passes of one layer (labels checked against 2.15.0).
    log = tl.log_forward_pass(LstmOutputs(), torch.rand(2, 3, 4), layers_to_save=None)
    assert log.layer_labels == [
        "input_1",
        "zeros_1_1",
        "zeros_2_2",
        "lstm_1_3:1",
        "lstm_1_3:2",
        "lstm_1_3:3",
        "getitem_1_4",
        "getitem_2_5:1",
        "add_1_6:1",
        "getitem_2_5:2",
        "add_1_6:2",
        "output_1",
    ]
    assert [log[f"lstm_1_3:{k}"].iterable_output_index for k in (1, 2, 3)] == [0, 1, 2]
