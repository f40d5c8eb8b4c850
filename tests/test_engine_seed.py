"""The seed README's examples: SimpleRecurrent and AlexNet (spec Appendix A.1)."""

from __future__ import annotations

import pytest
import torch
import torchvision

import torchlens as tl

from models import SimpleRecurrent

ALEXNET_LABELS = [
    "input_1",
    "conv2d_1_1",
    "relu_1_2",
    "maxpool2d_1_3",
    "conv2d_2_4",
    "relu_2_5",
    "maxpool2d_2_6",
    "conv2d_3_7",
    "relu_3_8",
    "conv2d_4_9",
    "relu_4_10",
    "conv2d_5_11",
    "relu_5_12",
    "maxpool2d_3_13",
    "adaptiveavgpool2d_1_14",
    "flatten_1_15",
    "dropout_1_16",
    "linear_1_17",
    "relu_6_18",
    "dropout_2_19",
    "linear_2_20",
    "relu_7_21",
    "linear_3_22",
    "output_1",
]


def test_simple_recurrent_labels_and_activation() -> None:
    model = SimpleRecurrent()
    x = torch.rand(6, 5)
    log = tl.log_forward_pass(model, x, layers_to_save="all")
    expected = ["input_1"]
    for p in range(1, 5):
        expected += [f"linear_1_1:{p}", f"add_1_2:{p}", f"mul_1_3:{p}"]
    expected.append("output_1")
    assert log.layer_labels == expected
    with torch.no_grad():
        h = (model.fc(x) + 1) * 2
        second = model.fc(h)
    assert torch.equal(log["linear_1_1:2"].activation, second)
    entry = log["linear_1_1:2"]
    assert entry.pass_num == 2 and entry.num_passes == 4
    assert entry.layer_type == "linear" and entry.func_name == "linear"
    assert entry.parent_layers == ["mul_1_3:1"]
    assert entry.child_layers == ["add_1_2:2"]
    assert entry.containing_module == "fc:2"
    assert entry.modules_exited == ["fc"]
    assert log["fc:3"] is log["linear_1_1:3"]
    assert log.layers["linear_1_1"].num_passes == 4
    with torch.no_grad():
        assert torch.equal(log["output_1"].activation, model(x))
    text = str(log)
    assert "recurrent (at most 4 loops)" in text
    assert "\t\t  (4) linear_1_1:2  (2/4 passes)" in text
    assert "\t\tfc:1\n\t\tfc:2\n\t\tfc:3\n\t\tfc:4" in text
    with pytest.raises(ValueError, match="has 4 passes"):
        _ = log["linear_1_1"].activation


@pytest.fixture(scope="module")
def alexnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.alexnet()


@pytest.fixture(scope="module")
def alexnet_input() -> torch.Tensor:
    return torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))


def test_alexnet_layer_list(alexnet: torch.nn.Module, alexnet_input: torch.Tensor) -> None:
    log = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save="all", random_seed=5)
    assert log.layer_labels == ALEXNET_LABELS
    same = [log["conv2d_3"], log["conv2d_3_7:1"], log["features.6"], log[7], log[-17], log["conv2d_3_7"]]
    assert all(e is same[0] for e in same)
    assert same[0].layer_label == "conv2d_3_7"
    assert same[0].operation_num == 7 and log.num_operations == 22
    assert same[0].lookup_keys == [
        -17,
        7,
        "conv2d_3",
        "conv2d_3:1",
        "conv2d_3_7",
        "conv2d_3_7:1",
        "features.6",
        "features.6:1",
    ]
    assert log["features"] is log["maxpool2d_3_13"]
    assert log["input_1_0"] is log["input_1"] and log["output_1_23"] is log["output_1"]
    assert log["relu_1_2"].func_name == "relu_"
    text = str(log)
    assert "\tParameters: 8 parameter operations (61100840 params total; 233.1 MB)" in text
    assert "\t\t- 24 total tensors (4.8 MB) computed in forward pass." in text
    assert "\t\t- 23 total modules" in text
    assert (
        "\t\tfeatures\n\t\t    features.0, features.1, features.2, features.3, features.4, features.5, "
        "features.6, features.7, \n\t\t    features.8, features.9, features.10, features.11, features.12\n"
        "\t\tavgpool\n\t\tclassifier\n"
    ) in text
    assert "\t\t  (7) conv2d_3_7 \n" in text


def test_alexnet_activations_match_hooks(alexnet: torch.nn.Module, alexnet_input: torch.Tensor) -> None:
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_hook(lambda mod, a, out, name=name: seen.__setitem__(name, out.clone()))
        for name, m in alexnet.named_modules()
        if name
    ]
    try:
        torch.manual_seed(3)
        alexnet(alexnet_input)
    finally:
        for h in handles:
            h.remove()
    log = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save="all", random_seed=3)
    for name, value in seen.items():
        assert torch.equal(log[name].activation, value), name


def test_alexnet_selective_save(alexnet: torch.nn.Module, alexnet_input: torch.Tensor) -> None:
    log = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save=["conv2d_3_7", "features", -5, "linear"])
    assert log.layers_with_saved_activations == [
        "conv2d_3_7",
        "maxpool2d_3_13",
        "linear_1_17",
        "dropout_2_19",
        "linear_2_20",
        "linear_3_22",
        "output_1",
    ]
    assert log["relu_1_2"].activation is None
    full = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save="all", random_seed=log.random_seed_used)
    for label in log.layers_with_saved_activations:
        assert torch.equal(log[label].activation, full[label].activation), label
    assert log.layer_labels == ALEXNET_LABELS
    assert "\t\t* (7) conv2d_3_7 \n" in str(log)


def test_metadata_only(alexnet: torch.nn.Module, alexnet_input: torch.Tensor) -> None:
    log = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save=None)
    assert log.layer_labels == ALEXNET_LABELS
    assert log.layers_with_saved_activations == []
    assert log["conv2d_3_7"].tensor_shape == (1, 384, 13, 13)
    assert log["conv2d_3_7"].tensor_dtype == torch.float32
    assert "Layers (no layer activations are saved):" in str(log)
    meta = tl.log_model_metadata(alexnet, alexnet_input)
    assert meta.layer_labels == ALEXNET_LABELS


def test_bad_keys(alexnet: torch.nn.Module, alexnet_input: torch.Tensor) -> None:
    log = tl.log_forward_pass(alexnet, alexnet_input, layers_to_save=None)
    with pytest.raises(ValueError, match="only 24 layers"):
        log[99]
    with pytest.raises(ValueError, match="Ambiguous lookup: 'relu'"):
        log["relu"]
    with pytest.raises(ValueError, match="not found"):
        log["nonexistent_layer"]
    with pytest.raises(ValueError):
        tl.log_forward_pass(alexnet, alexnet_input, layers_to_save=["no_such_layer"])
    assert log["MAXPOOL2D_3_13"] is log["maxpool2d_3_13"]
    assert log["adaptiveavg"] is log["adaptiveavgpool2d_1_14"]
