"""Models whose saved tensors have every stride pattern torch allows (for the bundle writers).

Only view operations are used, so the same model runs for every dtype (float8 and the unsigned
types included, where torch has no arithmetic).
"""

from __future__ import annotations

import torch
from torch import nn

# Elements of the flat input `StrideViews` expects.
STRIDE_INPUT_NUMEL = 240


class StrideViews(nn.Module):
    """Views of a flat input with odd, zero and size-1 strides, storage offsets, size-0 and 0-d shapes.

    `forward` returns a dict; each value is the op output itself (a view into the input), so the
    log saves it with exactly these strides. With `complex_views=True` (for complex inputs) it adds
    conjugate and negative views, which torch resolves lazily.
    """

    def __init__(self, complex_views: bool = False) -> None:
        super().__init__()
        self.complex_views = complex_views

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        g = x.reshape(4, 6, 10)
        out = {
            "transposed": g.transpose(0, 2),
            "sliced": g[:, ::2, 1:7],
            "offset": g[1:3],
            # GPT-2's `hidden[:, -1]`: shape (1,), stride 240, is_contiguous() True.
            "row_of_one": x.reshape(1, 240)[:, 7],
            "col_of_one": x.reshape(1, 240)[:, 7:8],
            "size1_mid": x.as_strided((4, 1, 5), (5, 17, 1), 3),
            "size1_lead": x.as_strided((1, 6), (99, 1), 2),
            "size1_trail": x.as_strided((3, 1), (1, 13), 5),
            "size1_all": x.as_strided((1, 1, 1), (31, 7, 3), 11),
            "empty": g[:, :0],
            "empty_odd": x.as_strided((0, 3), (7, 5), 9),
            "empty_mid": g[2:2].transpose(0, 1),
            "scalar": g[1, 2, 3],
            "expanded": g[:, :1, :].expand(4, 6, 10),
            "scalar_expanded": g[3, 5, 9].expand(3, 2),
            "odd_strides": x.as_strided((3, 4), (7, 2), 1),
            "overlapping": x.as_strided((5, 4), (1, 1)),
            "last_dim_strided": g[..., ::3],
        }
        if self.complex_views:
            out["conj"] = torch.conj(g.transpose(0, 1))
            out["conj_sliced"] = torch.conj(g[:, 1:2, ::2])
            out["neg_imag"] = torch.imag(torch.conj(g))  # a negative view (is_neg() True)
            out["neg_imag_size1"] = torch.imag(torch.conj(x.reshape(1, 240)[:, 5]))
        return out
