"""The function behind an entry: its captured call, argument tokens, timing and RNG state (spec §3.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._data import F_FUNC, F_KIND, F_PARENTS, KIND_OP, NO_TOKENS, map_captured, split_tokens
from .._funcconfig import _SIGS
from . import flops as _flops

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


# ------------------------------------------------------------------ FLOPs (spec §7.6)
def flops(log: ModelLog, pos: int) -> tuple[int | None, int | None]:
    """(forward, backward) FLOPs of an entry: 0 for inputs and buffers, an output its producer's.

    Memoized per record; the memo follows the log's metadata (save_new_activations replaces it).
    """
    d = log._data
    memo = log._cached("func_call.flops", dict)
    stamp = memo.get("stamp")
    if stamp is None or stamp[0] is not d.toks or stamp[1] is not d.meta_ids:
        memo.clear()
        memo["stamp"] = (d.toks, d.meta_ids)
    rec = _copied_record(log, pos)
    hit = memo.get(rec)
    if hit is None:
        hit = memo[rec] = _flops_of_record(log, rec)
    return hit


def _copied_record(log: ModelLog, pos: int) -> int:
    """The record an entry reads its per-op metadata from: its own, or for an output node its
    producer's; a pass-through `identity` node (a module that returned its input) is looked through,
    as 2.15 hangs the output on the tensor's producer."""
    rec = log._record_index(pos)
    if log._is_output(pos):
        records, strings = log._records, log._data.strings
        for _ in range(64):
            r = records[rec]
            if r[F_KIND] != KIND_OP or strings[r[F_FUNC]] != "identity" or len(r[F_PARENTS]) != 1:
                break
            rec = r[F_PARENTS][0]
    return rec


def _flops_of_record(log: ModelLog, rec: int) -> tuple[int | None, int | None]:
    pos = log._pos_of_nid().get(rec)
    if pos is None or not log._is_op(pos):
        return 0, 0
    lt, fn = log._layer_type(pos), log._func_name(pos)
    positional, keyword = arg_tokens(log, pos)
    params = log._data.params
    in_order = [params[p].shape for p in log._param_ids(pos)]
    used = [p.shape for p in log._params_of(pos)]
    fwd = _flops.flops_forward(lt, fn, log._shape(pos), positional, keyword, in_order, used)
    return fwd, _flops.flops_backward(lt, fn, fwd)


def total_flops(log: ModelLog) -> tuple[int, int]:
    """(forward, backward) FLOPs summed over the entries the log shows, None skipped (outputs included,
    each repeating its producer's count, as 2.15 sums them)."""
    fwd = bwd = 0
    for p in log._positions():
        f, b = flops(log, p)
        fwd += f or 0
        bwd += b or 0
    return fwd, bwd


def macs(flops: int | None) -> int | None:
    """Multiply-accumulates of an operation: half its FLOPs (one multiply and one add each)."""
    return _flops.macs(flops)


# ------------------------------------------------------------------ autograd and autocast
def autograd_saved(log: ModelLog, pos: int) -> tuple[int, int] | None:
    """(bytes, count) of the tensors autograd saved for the op's grad_fn, deduplicated by data
    pointer; None for sources, outputs, ops without a grad_fn, and logs that did not record it."""
    rec_saved = log._data.autograd_saved
    if rec_saved is None or not log._is_op(pos) or log._grad_fn_name(pos) == "NoneType":
        return None
    return rec_saved.get(log._record_index(pos), (0, 0))


def total_autograd_saved_bytes(log: ModelLog) -> int | None:
    """Bytes autograd saved over every op of the pass; None if no op had a grad_fn (or not recorded)."""
    vals = [st[0] for p in range(log._n_pos) if (st := autograd_saved(log, p)) is not None]
    return sum(vals) if vals else None


def autocast_state(log: ModelLog, pos: int) -> dict[str, dict[str, Any]] | None:
    """Autocast state when the op ran, `{device: {"enabled": bool, "dtype": torch.dtype}}`.

    Inputs and buffers have `{}`; an output has its producer's state; None if not recorded.
    """
    d = log._data
    if d.autocast_states is None:
        return None
    if not log._is_op(pos) and not log._is_output(pos):
        return {}
    rec = _copied_record(log, pos)
    if log._records[rec][F_KIND] != KIND_OP:
        return {}
    state = d.autocast_states[d.autocast_ids.get(rec, 0)]
    return {dev: {"enabled": en, "dtype": dt} for dev, en, dt in state}
