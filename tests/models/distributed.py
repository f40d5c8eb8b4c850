"""Models for tests/test_distributed_models.py: small transformers logged sharded (FSDP2) on two
gloo ranks and unsharded in the test process. Built from a seed, so every process gets the same weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 32
WIDTH = 16
SEQ = 6


class TinyBlock(nn.Module):
    """Pre-norm attention + MLP; the MLP's output projection is a bare parameter used through `.t()`
    (a view of a gathered FSDP parameter that the log must keep after FSDP frees the gather)."""

    def __init__(self, d: int = WIDTH, heads: int = 2) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 2 * d)
        self.proj = nn.Parameter(torch.randn(d, 2 * d) * 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        h = F.gelu(self.fc(self.ln2(x)))
        return x + h @ self.proj.t()


class TinyTransformer(nn.Module):
    """Token embedding + learned positions (root parameters, read through a slice), two blocks, a
    final norm and a head tied to the embedding."""

    def __init__(self, layers: int = 2) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(torch.randn(1, SEQ, WIDTH) * 0.1)
        self.blocks = nn.ModuleList([TinyBlock() for _ in range(layers)])
        self.ln_f = nn.LayerNorm(WIDTH)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok(ids) + self.pos[:, : ids.shape[1]]
        for block in self.blocks:
            x = block(x)
        return F.linear(self.ln_f(x), self.tok.weight)


def tiny_transformer() -> TinyTransformer:
    torch.manual_seed(0)
    return TinyTransformer()


def torch_encoder() -> nn.TransformerEncoder:
    """torch's own encoder (fused-path checks, MultiheadAttention) with the same seeded weights."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(WIDTH, 2, 2 * WIDTH, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(WIDTH, 2 * WIDTH)
        self.fc2 = nn.Linear(2 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def tiny_mlp() -> TinyMLP:
    torch.manual_seed(0)
    return TinyMLP()


def rank_ids(rank: int) -> torch.Tensor:
    """Each rank's own batch of token ids."""
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randint(0, VOCAB, (2, SEQ), generator=g)


def rank_features(rank: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(200 + rank)
    return torch.randn(2, SEQ, WIDTH, generator=g)


def tiny_gpt2() -> nn.Module:
    """A two-layer GPT-2 LM from a small config (random weights; nothing downloaded)."""
    import transformers as hf

    torch.manual_seed(0)
    cfg = hf.GPT2Config(
        n_layer=2, n_head=2, n_embd=WIDTH, vocab_size=VOCAB, n_positions=SEQ, bos_token_id=0, eos_token_id=0
    )
    return hf.GPT2LMHeadModel(cfg).eval()
