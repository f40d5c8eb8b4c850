"""The seed README's snippets, run as written (spec wins where the two differ; see docs/quickstart.md)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

import torchlens as tl

from models import SimpleRecurrent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path) -> None:
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield
    finally:
        os.chdir(old)


def test_readme_snippets_run_as_written() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the seed uses the flat vis_* / streaming names
        x = torch.rand(6, 5)
        model_history = tl.log_forward_pass(SimpleRecurrent(), x, layers_to_save="all", vis_mode="rolled")
        assert model_history["linear_1_1:2"].activation.shape == (6, 5)
        assert Path("graph.gv.pdf").stat().st_size > 0

        alexnet = torchvision.models.alexnet()
        x = torch.rand(1, 3, 224, 224)
        model_history = tl.log_forward_pass(alexnet, x, layers_to_save="all", vis_mode="unrolled")
        assert "Log of AlexNet forward pass:" in str(model_history)
        assert str(model_history["conv2d_3_7"]).startswith("Layer conv2d_3_7, operation 7/22:")
        assert model_history["conv2d_3_7"].activation.shape == (1, 384, 13, 13)
        model_history = tl.log_forward_pass(
            alexnet, x, vis_mode="unrolled", layers_to_save=["conv2d_3_7", "features", -5, "linear"]
        )
        assert len(model_history.layer_labels) == 24

        model_history = tl.log_forward_pass(
            alexnet,
            x,
            layers_to_save="all",
            activation_postfunc=lambda t: t.mean(dim=(2, 3)) if t.ndim == 4 else t,
        )
        layer = model_history["conv2d_3_7"]
        assert layer.activation.shape == (1, 384, 13, 13)
        assert layer.transformed_activation.shape == (1, 384)
        assert layer.tensor_shape == (1, 384, 13, 13)
        assert layer.transformed_activation_shape == (1, 384)

        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        x = torch.randn(2, 4)
        model_log = tl.log_forward_pass(model, x, layers_to_save="all")
        tl.save(model_log, "demo_bundle")
        lazy_log = tl.load("demo_bundle", lazy=True)
        activation = lazy_log["linear_1_1"].materialize_activation()
        assert torch.equal(activation, model_log["linear_1_1"].activation)

        streamed_log = tl.log_forward_pass(
            model, x, layers_to_save="all", save_activations_to="stream_bundle", keep_activations_in_memory=False
        )
        assert Path("stream_bundle", "manifest.json").exists()
        assert torch.equal(streamed_log["linear_1_1"].materialize_activation(), model_log["linear_1_1"].activation)

        keep_op = lambda ctx: ctx.kind == "op" and ctx.layer_type == "relu"  # noqa: E731
        recording = tl.fastlog.record(model, x, keep_op=keep_op)
        assert "n_records=1" in str(recording.summary())

        blocks = nn.Sequential()
        blocks.add_module("block1", nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
        model_log = tl.log_forward_pass(blocks, x, layers_to_save=["block1"], train_mode=True)
        aux_loss = model_log["block1"].activation.square().mean()
        aux_loss.backward()
        # the logged activation is part of the autograd graph: same gradient as the plain forward's
        logged_grad = blocks.block1[0].weight.grad.clone()
        blocks.zero_grad()
        blocks(x).square().mean().backward()
        assert logged_grad.abs().sum() > 0
        assert torch.equal(logged_grad, blocks.block1[0].weight.grad)

        loc = model_history["conv2d_3"].func_call_stack[0]
        assert "FuncCallLocation:" in repr(loc) and loc.func_name == "forward" and loc.file.endswith("alexnet.py")
        assert tl.get_model_metadata(alexnet, torch.rand(1, 3, 224, 224)).layers_with_saved_activations == []
        tl.show_model_graph(alexnet, torch.rand(1, 3, 224, 224), vis_save_only=True)
        assert Path("modelgraph.pdf").exists()
