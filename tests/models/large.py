"""Real-world architectures (torchvision, transformers, torch.nn) at small sizes, built in code with
random weights, for test_validation. Each entry: name -> (build, make_input); make_input returns a
tensor, a list of args, or `(args, kwargs)`."""

from __future__ import annotations

import torch
import torchvision
import transformers
from torch import nn

tv = torchvision.models


def _small_vit() -> nn.Module:
    return tv.VisionTransformer(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)


BIG = {
    "resnet18": (lambda: tv.resnet18(), lambda: torch.randn(1, 3, 64, 64)),
    "resnet50": (lambda: tv.resnet50(), lambda: torch.randn(1, 3, 64, 64)),
    "mobilenet_v3_small": (lambda: tv.mobilenet_v3_small(), lambda: torch.randn(1, 3, 64, 64)),
    "efficientnet_b0": (lambda: tv.efficientnet_b0(), lambda: torch.randn(1, 3, 64, 64)),
    "densenet121": (lambda: tv.densenet121(), lambda: torch.randn(1, 3, 64, 64)),
    "vit_b_16_small": (_small_vit, lambda: torch.randn(1, 3, 32, 32)),
    "vit_b_16": (lambda: tv.vit_b_16(), lambda: torch.randn(1, 3, 224, 224)),
    # MNASNet checks per-module state-dict versions when validation restores the weights.
    "mnasnet0_5": (lambda: tv.mnasnet0_5(), lambda: torch.randn(1, 3, 64, 64)),
    # Returns a cache object beside its tensors: ground truth must be matched by output address.
    "t5": (
        lambda: transformers.T5Model(
            transformers.T5Config(num_layers=2, d_model=64, d_ff=128, num_heads=2, d_kv=32, vocab_size=500)
        ),
        lambda: ((), {"input_ids": torch.arange(8).view(1, 8), "decoder_input_ids": torch.arange(8).view(1, 8)}),
    ),
    "swin_t": (lambda: tv.swin_t(), lambda: torch.randn(1, 3, 64, 64)),
    "fasterrcnn_mobilenet_v3_large_fpn": (
        lambda: tv.detection.fasterrcnn_mobilenet_v3_large_fpn(
            weights=None, weights_backbone=None, min_size=64, max_size=64
        ),
        lambda: ([torch.rand(3, 64, 64)],),
    ),
    "lstm": (lambda: nn.LSTM(4, 8, num_layers=2, batch_first=True), lambda: torch.randn(2, 5, 4)),
    "gru": (lambda: nn.GRU(4, 8, batch_first=True), lambda: torch.randn(2, 5, 4)),
    "transformer_encoder": (
        lambda: nn.TransformerEncoder(
            nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2, enable_nested_tensor=False
        ),
        lambda: torch.randn(2, 5, 16),
    ),
    "gpt2": (
        lambda: transformers.GPT2Model(
            transformers.GPT2Config(
                n_layer=2, n_head=2, n_embd=32, vocab_size=100, n_positions=32, bos_token_id=0, eos_token_id=0
            )
        ),
        lambda: torch.randint(0, 100, (1, 8)),
    ),
    "bert": (
        lambda: transformers.BertModel(
            transformers.BertConfig(
                num_hidden_layers=2,
                num_attention_heads=2,
                hidden_size=32,
                intermediate_size=64,
                vocab_size=100,
                max_position_embeddings=32,
            )
        ),
        lambda: torch.randint(0, 100, (1, 8)),
    ),
}
