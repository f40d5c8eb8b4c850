"""`func_config` (spec §7.6): salient hyper-parameters of an op, from its recorded argument tokens.

The capture keeps, per op, its argument tokens (tensor args as their shape, parameters as None,
scalars as themselves; positional and keyword arguments apart, see `_data.split_tokens`). The
extractors below map those back to names with the torch signatures of the common ops.
"""

from __future__ import annotations

from typing import Any

import torch

from ._data import split_tokens

_SIGS: dict[str, tuple[str, ...]] = {
    "conv1d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "conv2d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "conv3d": ("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
    "convtranspose1d": ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
    "convtranspose2d": ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
    "convtranspose3d": ("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
    "linear": ("input", "weight", "bias"),
    "batchnorm": ("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
    "layernorm": ("input", "normalized_shape", "weight", "bias", "eps"),
    "groupnorm": ("input", "num_groups", "weight", "bias", "eps"),
    "instancenorm": ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps"),
    "dropout": ("input", "p", "training", "inplace"),
    "maxpool1d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "maxpool2d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "maxpool3d": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
    "avgpool1d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    "avgpool2d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "avgpool3d": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    "adaptiveavgpool1d": ("input", "output_size"),
    "adaptiveavgpool2d": ("input", "output_size"),
    "adaptiveavgpool3d": ("input", "output_size"),
    "adaptivemaxpool2d": ("input", "output_size"),
    "leakyrelu": ("input", "negative_slope", "inplace"),
    "elu": ("input", "alpha", "inplace"),
    "hardtanh": ("input", "min_val", "max_val", "inplace"),
    "threshold": ("input", "threshold", "value", "inplace"),
    "softmax": ("input", "dim"),
    "logsoftmax": ("input", "dim"),
    "scaleddotproductattention": ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale"),
    "interpolate": ("input", "size", "scale_factor", "mode", "align_corners"),
    "upsample": ("input", "size", "scale_factor", "mode", "align_corners"),
    "embedding": ("input", "weight", "padding_idx"),
    "cat": ("tensors", "dim"),
    "stack": ("tensors", "dim"),
    "concat": ("tensors", "dim"),
    "sum": ("input", "dim", "keepdim"),
    "mean": ("input", "dim", "keepdim"),
    "prod": ("input", "dim", "keepdim"),
    "amax": ("input", "dim", "keepdim"),
    "amin": ("input", "dim", "keepdim"),
    "max": ("input", "dim", "keepdim"),
    "min": ("input", "dim", "keepdim"),
    "argmax": ("input", "dim", "keepdim"),
    "argmin": ("input", "dim", "keepdim"),
    "permute": ("input", "dims"),
    "transpose": ("input", "dim0", "dim1"),
    "pad": ("input", "pad", "mode", "value"),
    "clamp": ("input", "min", "max"),
}
_KEEP: dict[str, tuple[str, ...]] = {
    "dropout": ("p",),
    "batchnorm": ("momentum", "eps"),
    "layernorm": ("normalized_shape", "eps"),
    "groupnorm": ("num_groups", "eps"),
    "instancenorm": ("momentum", "eps"),
    "leakyrelu": ("negative_slope",),
    "elu": ("alpha",),
    "hardtanh": ("min_val", "max_val"),
    "threshold": ("threshold", "value"),
    "scaleddotproductattention": ("dropout_p", "is_causal", "scale"),
    "interpolate": ("size", "scale_factor", "mode", "align_corners"),
    "upsample": ("size", "scale_factor", "mode", "align_corners"),
    "embedding": ("padding_idx",),
    "pad": ("pad", "mode", "value"),
    "clamp": ("min", "max"),
}
_DEFAULTS = {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "output_padding": 0}


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Size):
        return tuple(v)
    if isinstance(v, list):
        return tuple(_plain(x) for x in v)
    return v


def _named(layer_type: str, pos: list, kw: dict[str, Any]) -> dict[str, Any]:
    sig = _SIGS.get(layer_type)
    if sig is None:
        return {}
    out: dict[str, Any] = {}
    for name, v in zip(sig, pos, strict=False):
        out[name] = v
    out.update(kw)
    if layer_type in ("max", "min") and "dim" in out and isinstance(out["dim"], torch.Size):
        out.pop("dim")  # torch.max(a, b): elementwise
    return out


def func_config(layer_type: str, func_name: str, toks: tuple, param_shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    """The salient hyper-parameters of one op as plain Python values (empty dict if none).

    `toks` is the op's `CaptureData.toks` entry.
    """
    try:
        return _func_config(layer_type, func_name, toks, param_shapes)
    except Exception:
        return {}


def _func_config(layer_type: str, func_name: str, toks: tuple, param_shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    pos, kw = split_tokens(toks)
    a = _named(layer_type, pos, kw)
    cfg: dict[str, Any] = {}
    if layer_type.startswith("conv"):
        w = param_shapes[0] if param_shapes else (a.get("weight") if isinstance(a.get("weight"), tuple) else None)
        if w:
            w = tuple(w)
            groups = a.get("groups", 1) or 1
            if layer_type.startswith("convtranspose"):
                cfg["out_channels"], cfg["in_channels"] = w[1] * groups, w[0]
            else:
                cfg["out_channels"], cfg["in_channels"] = w[0], w[1] * groups
            cfg["kernel_size"] = tuple(w[2:])
        for k in ("stride", "padding", "output_padding", "dilation", "groups"):
            if k in a:
                v = _plain(a[k])
                nd = len(cfg.get("kernel_size", ())) or 1
                norm = v if isinstance(v, tuple | str) else (v,) * nd
                d = _DEFAULTS[k]
                dn = (d,) * nd
                if k == "groups":
                    if v != 1:
                        cfg[k] = v
                elif norm != dn:
                    cfg[k] = norm
        return cfg
    if layer_type == "linear":
        if param_shapes:
            w = param_shapes[0]
            cfg["out_features"] = w[0]
            cfg["in_features"] = w[1] if len(w) > 1 else 1
        return cfg
    if "pool" in layer_type:
        for k in ("kernel_size", "stride", "padding", "output_size"):
            if k in a and a[k] is not None:
                cfg[k] = _plain(a[k])
        return cfg
    if layer_type in ("softmax", "logsoftmax", "cat", "stack", "concat"):
        if "dim" in a:
            cfg["dim"] = _plain(a["dim"])
        return cfg
    if layer_type in ("sum", "mean", "prod", "amax", "amin", "max", "min", "argmax", "argmin"):
        for k in ("dim", "keepdim"):
            if k in a and not isinstance(a[k], torch.Size):
                cfg[k] = _plain(a[k])
        return cfg
    if layer_type == "permute":
        dims = tuple(pos[1:]) if len(pos) > 2 else a.get("dims")
        if dims is not None:
            cfg["dims"] = _plain(dims)
        return cfg
    if layer_type == "transpose":
        for k in ("dim0", "dim1"):
            if k in a:
                cfg[k] = a[k]
        return cfg
    for k in _KEEP.get(layer_type, ()):
        if k in a and not isinstance(a[k], torch.Size):
            cfg[k] = _plain(a[k])
    if layer_type in ("layernorm", "groupnorm", "batchnorm", "instancenorm") and param_shapes:
        cfg.setdefault("num_features", param_shapes[0][0] if param_shapes[0] else None)
    if layer_type == "embedding" and cfg.get("padding_idx", 0) in (None, -1):
        cfg.pop("padding_idx")
    if layer_type == "embedding" and param_shapes:
        cfg["num_embeddings"], cfg["embedding_dim"] = param_shapes[0][0], param_shapes[0][1]
    return cfg
