"""Models written for the classes of label differences from TorchLens 2.15 found by `make diff-peer`
(issue 11): each class has at least five variants, registered in `registry.REGISTRY` (families
`labels-*`); tests/test_zoo_labels.py holds their exact 2.15 labels. This file: keyword arguments,
functions 2.15 wraps or leaves alone, and argument positions that are no parents.
More classes (loops, outputs, torchvision ops, identity modules) are in `zoo_labels2`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .zoo import randn

Spec = tuple[Callable[[], nn.Module], Callable[[], tuple[tuple, dict]]]


def _x(*shape: int) -> Callable[[], tuple[tuple, dict]]:
    return lambda: ((randn(*shape, seed=1),), {})


# ----------------------------------------------------------------- keyword arguments are no edges
# T5's relative-position bias reaches attention only as `attn_mask=`: 2.15 drops the branch as
# orphans, since a tensor passed by keyword is no parent.


class RelPosBiasAttention(nn.Module):
    """T5-style bucketed relative-position bias passed to attention by keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.bias = nn.Embedding(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, 2, 4).permute(2, 0, 3, 1, 4)
        rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
        bucket = rel.abs().clamp(max=7)
        mask = self.bias(bucket).permute(2, 0, 1).unsqueeze(0).contiguous()
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).reshape(b, n, 8)


class KeywordWeights(nn.Module):
    """`F.linear(x, weight=..., bias=...)`: keyword parameters are not the op's parameters in 2.15."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.linear(x, weight=self.w, bias=self.b))


class KeywordPositions(nn.Module):
    """Sinusoidal positions built from `arange`, added through `other=`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(x.shape[-1], dtype=x.dtype)
        enc = torch.sin(pos / 10000 ** (pos / x.shape[-1]))
        return torch.add(x * 2, other=enc).relu()


class KeywordMaskFromInput(nn.Module):
    """An input-derived `attn_mask=`: its ops stay, but no edge joins them to attention."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = (x.sum(-1, keepdim=True) > 0).float() * -1e4
        return F.scaled_dot_product_attention(x, x * 2, x * 3, attn_mask=mask)


class KeywordWhere(nn.Module):
    """`torch.where(cond, x, other=fill)` with the fill built inside forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fill = torch.full_like(x, -1.0) * 0.5
        return torch.where(x > 0, x, other=fill).exp()


class KeywordDiff(nn.Module):
    """The exceptions: `diff(prepend=)` and `isin(test_elements=)` keep their keyword parents."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = torch.diff(x * 2, dim=-1, prepend=x[:, :1] * 3)
        hit = torch.isin(x.round(), test_elements=x[0].round())
        return d + hit.float()


# ------------------------------------------------------- functions 2.15 wraps (or leaves alone)
# mobilenet_v3's squeeze-excitation gate `Hardsigmoid` calls torch._C._nn directly: 2.15 wraps
# `F.hardsigmoid` / `F.hardswish` although torch lists them as not overridable.


class SqueezeExcite(nn.Module):
    """mobilenet_v3's squeeze-excitation block (ReLU then Hardsigmoid gate)."""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, c // 2, 1)
        self.fc2 = nn.Conv2d(c // 2, c, 1)
        self.act = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class SqueezeExciteInplace(nn.Module):
    """The same gate as a functional in-place hardsigmoid, after a hardswish activation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.hardswish(self.conv(x))
        g = F.hardsigmoid(self.fc(h.mean((2, 3), keepdim=True)), inplace=True)
        return h * g


class HardSwishStack(nn.Module):
    """Conv, BatchNorm and Hardswish twice (mobilenet_v3's stem)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Hardswish(), nn.Conv2d(4, 4, 1), nn.Hardswish()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FftFrequencies(nn.Module):
    """`torch.fft.fftfreq` is a logged factory in 2.15; `torch.empty` and `randn_like` are not."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        freq = torch.fft.fftfreq(x.shape[-1])
        scratch = torch.empty(x.shape[-1]).fill_(0.5)
        return x * freq + scratch


class CastsAndMoves(nn.Module):
    """`type_as` and `cpu` are logged ops in 2.15 (`type_as`'s template is no parent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x * 2).type_as(x)
        z = (x + 1).cpu()
        return y.type_as(z.double()) + z


# -------------------------------- parameters returned as they are, arguments that are no parents
# Mamba's mixer runs `A_log.float()` and `D.float()` (a parameter handed back unchanged: a node
# in 2.15), calls conv1d with keyword weights, and copies into its cache (`copy_`'s source is no
# parent in 2.15).


class SelectiveScan(nn.Module):
    """A small Mamba-style mixer: parameter casts, keyword conv weights, a cache copy, a scan."""

    def __init__(self, d: int = 4, n: int = 3) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d, 2 * d)
        self.conv_w = nn.Parameter(torch.randn(d, 1, 3))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))
        self.D = nn.Parameter(torch.ones(d))
        self.out_proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        h, gate = self.in_proj(x).transpose(1, 2).chunk(2, dim=1)
        A = -torch.exp(self.A_log.float())
        cache = torch.zeros(b, d, 3)
        cache.copy_(h[..., -3:])
        h = F.conv1d(h, weight=self.conv_w, padding=2, groups=d)[..., :length]
        h = F.silu(h)
        state = torch.zeros(b, d, A.shape[1])
        ys = []
        for t in range(length):
            state = state * torch.exp(A) + h[:, :, t, None]
            ys.append(state.sum(-1))
        y = torch.stack(ys, dim=-1) + h * self.D.float()[:, None]
        return self.out_proj((y * F.silu(gate)).transpose(1, 2))


class ParameterCasts(nn.Module):
    """`w.to(dtype)`, `w.contiguous()`, `w.float()` and `w.type_as(x)` of parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.w.contiguous())
        h = h * self.scale.to(x.dtype) + self.scale.float()
        return h * self.scale.type_as(x)


class CacheCopy(nn.Module):
    """A state buffer refreshed with `copy_`: the copy (and its zeros) are orphans in 2.15."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = torch.zeros(x.shape[0], 2)
        state.copy_(x[:, -2:])
        keep = torch.zeros_like(x)
        keep.copy_(x * 3)
        return x * 2 + keep


class ExpertScatter(nn.Module):
    """Mixtral-style routing: expert outputs accumulated with `index_add_` (only the target is a parent)."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(4, 2)
        self.experts = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        choice = self.router(x).argmax(-1)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            idx = torch.where(choice == e)[0]
            out.index_add_(0, idx, expert(x[idx]))
        return out + x


class TensorBounds(nn.Module):
    """`clamp` with tensor bounds, `masked_fill` with a tensor value, `scatter_add` and `expand_as`:
    2.15 records only their leading arguments as parents."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lo, hi = x.min(0).values, x.max(0).values * 0.5
        c = x.clamp(lo, hi)
        m = c.masked_fill(c > 0, x.mean())
        s = torch.zeros_like(m).scatter_add(1, (x > 0).long(), m)
        return s + lo.expand_as(s)


def _ids() -> tuple[tuple, dict]:
    return (randn(1, 6, 8, seed=1),), {}


FAMILIES: dict[str, Callable[[], dict[str, Spec]]] = {
    "labels-kwargs": lambda: {
        "lbl_relpos_bias": (RelPosBiasAttention, _ids),
        "lbl_keyword_weights": (KeywordWeights, _x(2, 4)),
        "lbl_keyword_positions": (KeywordPositions, _x(2, 6)),
        "lbl_keyword_mask_from_input": (KeywordMaskFromInput, _x(1, 3, 4)),
        "lbl_keyword_where": (KeywordWhere, _x(2, 4)),
        "lbl_keyword_diff": (KeywordDiff, _x(3, 4)),
    },
    "labels-wrapped": lambda: {
        "lbl_squeeze_excite": (SqueezeExcite, _x(1, 8, 4, 4)),
        "lbl_squeeze_excite_inplace": (SqueezeExciteInplace, _x(1, 4, 4, 4)),
        "lbl_hardswish_stack": (HardSwishStack, _x(1, 3, 6, 6)),
        "lbl_fft_frequencies": (FftFrequencies, _x(2, 6)),
        "lbl_casts_and_moves": (CastsAndMoves, _x(2, 3)),
    },
    "labels-params": lambda: {
        "lbl_selective_scan": (SelectiveScan, _x(1, 5, 4)),
        "lbl_parameter_casts": (ParameterCasts, _x(2, 4)),
        "lbl_cache_copy": (CacheCopy, _x(2, 4)),
        "lbl_expert_scatter": (ExpertScatter, _x(6, 4)),
        "lbl_tensor_bounds": (TensorBounds, _x(3, 4)),
    },
}
