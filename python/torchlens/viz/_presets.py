"""Node-mode presets (spec §12.5): rows added to a layer node's default spec before `node_spec_fn`.

- `profiling`: `t=<ms>ms` (the op's runtime), `out=<bytes>B` (the stored output), `call=<file>:<line>`
  and `fn=<qualname>` (where the model's code called the op; `fn=none` for inputs and outputs).
- `vision`: `in=<shape> out=<shape>` for convolution and pooling ops.
- `attention`: `(attention)` on `scaled_dot_product_attention`, `(attn-softmax)` on a softmax fed by a
  matmul/bmm, `(role=qkv)` / `(role=out)` on the projections of an `nn.MultiheadAttention`;
  the fill of every annotated node turned amber (unless it already has a colour).
"""

from __future__ import annotations

import os
from typing import Any

from ._dot import shape_str
from ._spec import NodeSpec

NODE_MODES = ("default", "profiling", "vision", "attention")

_MATMULS = ("matmul", "bmm", "baddbmm", "einsum", "__matmul__", "mm")
_ATTN_FILL = "#FFE8B3"


def apply_preset(mode: str, entry: Any, log: Any, spec: NodeSpec, params: list[Any]) -> NodeSpec:
    """`spec` with the rows of node mode `mode` for `entry` (a pass entry, or the LayerLog when rolled);
    `params` are the parameters the op used."""
    if mode == "default":
        return spec
    if mode == "profiling":
        rows = profiling_rows(entry)
    elif mode == "vision":
        rows = vision_rows(entry, log)
    elif mode == "attention":
        rows = attention_rows(entry, log, [prm.name for prm in params])
        if rows:
            return spec.replace(lines=[*spec.lines, *rows], fillcolor=_ATTN_FILL if _plain(spec) else spec.fillcolor)
    else:
        raise ValueError(f"node_mode must be one of {list(NODE_MODES)}, not {mode!r}.")
    return spec.replace(lines=[*spec.lines, *rows]) if rows else spec


def _plain(spec: NodeSpec) -> bool:
    return spec.fillcolor in (None, "white")


def profiling_rows(entry: Any) -> list[str]:
    """Rows of one pass entry; for a rolled layer of several passes, `t=` is the sum over its passes."""
    passes = list(entry.passes.values()) if getattr(entry, "num_passes", 1) > 1 and hasattr(entry, "passes") else []
    if passes:
        seconds = sum(e.func_time or 0.0 for e in passes)
        entry = passes[0]
    else:
        seconds = entry.func_time or 0.0
    rows = [f"t={seconds * 1000:.2f}ms", f"out={int(entry.tensor_memory or 0)}B"]
    if entry.is_input_layer or entry.is_output_layer or entry.is_buffer_layer:
        return [*rows, "fn=none"]
    stack = entry.func_call_stack or []
    if stack:
        frame = stack[0]  # the model's own frame that made the call (outermost frame inside the forward)
        rows.append(f"call={os.path.basename(frame.file)}:{frame.line_number}")
        rows.append(f"fn={frame.code_qualname or frame.func_name}")
    else:
        rows.append("fn=none")
    return rows


def _is_spatial(entry: Any) -> bool:
    kind = (entry.layer_type or "").lower()
    return "conv" in kind or "pool" in kind or kind in ("upsample", "interpolate", "pixelshuffle", "pixelunshuffle")


def vision_rows(entry: Any, log: Any) -> list[str]:
    if not _is_spatial(entry) or not entry.parent_layers:
        return []
    parent = log[entry.parent_layers[0]]
    return [f"in={shape_str(parent.tensor_shape)} out={shape_str(entry.tensor_shape)}"]


def attention_rows(entry: Any, log: Any, param_names: list[str]) -> list[str]:
    kind = (entry.layer_type or "").lower()
    func = (entry.func_name or "").lower()
    if "scaleddotproductattention" in kind or func == "scaled_dot_product_attention":
        return ["(attention)"]
    mha = _mha_address(entry, log)
    if kind == "softmax":
        parents = [log[p] for p in entry.parent_layers]
        fed_by_matmul = any((p.func_name or "").lower() in _MATMULS or p.layer_type in _MATMULS for p in parents)
        if fed_by_matmul or mha is not None:
            return ["(attn-softmax)"]
        return []
    if mha is not None and kind == "linear":
        return ["(role=qkv)" if any("in_proj" in n for n in param_names) else "(role=out)"]
    return []


def _mha_address(entry: Any, log: Any) -> str | None:
    """The innermost `nn.MultiheadAttention` the op ran inside, if any."""
    types = log._module_types()
    for m in reversed(entry.containing_modules or []):
        addr = m.rsplit(":", 1)[0]
        if types.get(addr) == "MultiheadAttention":
            return addr
    return None
