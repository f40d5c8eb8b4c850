"""The function behind an entry: its captured call, argument tokens, timing and RNG state (spec §3.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._data import NO_TOKENS, map_captured, split_tokens
from .._funcconfig import _SIGS

if TYPE_CHECKING:
    from .model_log import ModelLog


def captured_call(log: ModelLog, pos: int) -> tuple | None:
    """(function, args, kwargs) captured with `save_function_args=True`, else None."""
    if not log._is_op(pos):
        return None
    return log._data.func_args.get(log._node_id(pos))


def unref(obj: Any, saved: dict) -> Any:
    """Captured arguments as plain values: parent references replaced by their call-time copies."""
    return map_captured(obj, lambda r: r.value if r.value is not None else saved.get(r.nid))


def raw_tokens(log: ModelLog, pos: int) -> tuple[tuple, tuple]:
    """The argument tokens recorded for an entry, `(positional, kwarg pairs)` (see `_data.split_tokens`)."""
    if log._is_output(pos):
        return NO_TOKENS
    toks = log._data.toks
    nid = log._node_id(pos)
    return toks[nid] if nid < len(toks) else NO_TOKENS


def arg_tokens(log: ModelLog, pos: int) -> tuple[list, dict]:
    """(positional tokens, keyword tokens) of an entry's call."""
    return split_tokens(raw_tokens(log, pos))


def argnames(log: ModelLog, pos: int, layer_type: str) -> tuple[str, ...]:
    sig = _SIGS.get(layer_type)
    if sig is not None:
        return sig
    positional, keyword = arg_tokens(log, pos)
    return tuple(f"arg{i}" for i in range(len(positional))) + tuple(keyword)


def non_tensor_args(log: ModelLog, pos: int) -> tuple[list, dict]:
    positional, keyword = arg_tokens(log, pos)
    return (
        [t for t in positional if t is not None and not isinstance(t, torch.Size)],
        {k: v for k, v in keyword.items() if not isinstance(v, torch.Size)},
    )


def func_time(log: ModelLog, pos: int) -> float | None:
    if not log._is_op(pos):
        return 0.0
    ft = log._data.func_times
    nid = log._node_id(pos)
    return None if ft is None or nid >= len(ft) else ft[nid]


def rng_states(log: ModelLog, pos: int) -> dict[str, Any] | None:
    if log._is_output(pos):
        return None
    st = log._data.func_rng.get(log._record_index(pos))
    return None if st is None else {"cpu": st[0], "cuda": st[1]}


def scaled(flops: int | None, factor: int) -> int | None:
    return None if flops is None else factor * flops


def macs(flops: int | None) -> int | None:
    """Multiply-accumulates of an operation: half its FLOPs (one multiply and one add each)."""
    return None if flops is None else flops // 2
