"""A log's life after the pass: releasing the model's parameters, cleanup, and plain pickling (spec §2.6).

A `ModelLog` never holds the model: modules and parameters are weak references, and
`release_param_refs` drops even those (after caching the gradient metadata). What can still keep
parameters alive are the values the log saved: the parameters passed to an op when
`save_function_args=True`, and the autograd graph of activations saved without
`detach_saved_tensors`. `release_param_refs` replaces the former by plain tensors; `cleanup`
drops every saved value.

Pickling stores the capture data and the saved values, never the core's columns (they are
rebuilt from the records on load), the model, or any weak reference.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
import sys
from typing import TYPE_CHECKING, Any

import torch

from .._data import GeneratorSnapshot, ParentRef
from .._errors import TorchLensIOError
from .._native import core as _core
from . import conditionals

if TYPE_CHECKING:
    from .._data import CaptureData
    from .model_log import ModelLog

# Version of the pickled state (the bundle format version, spec §2.6).
PICKLE_FORMAT_VERSION = 1
# Caches of derived tables that a pickle keeps: the user's scratch dicts (`extra_data`).
# Derived tables a pickled log keeps: they need what does not pickle (code objects, live tensors).
_KEPT_CACHES = ("extra", "extra_rolled", "cond")
# Attributes rebuilt on load rather than pickled.
_REBUILT = frozenset({"_fin", "_cols", "_entries", "_layer_logs", "_records", "_node_ids", "_n_records", "_n_pos"})
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size, slice)


class CodeInfo:
    """Stands in for a code object in a pickled log (file, name, first line, qualname, docstring)."""

    __slots__ = ("co_filename", "co_name", "co_firstlineno", "co_qualname", "co_consts")

    def __init__(self, co: Any) -> None:
        self.co_filename = str(co.co_filename)
        self.co_name = str(co.co_name)
        self.co_firstlineno = int(co.co_firstlineno)
        self.co_qualname = str(getattr(co, "co_qualname", co.co_name))
        consts = getattr(co, "co_consts", ())
        self.co_consts = (consts[0],) if consts and isinstance(consts[0], str) else ()


class UnpicklableValue:
    """Stands in for a captured argument that pickle cannot store (its `repr` is kept)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"<unpicklable {self.text}>"


# ---------------------------------------------------------------------------------- parameters
def release_param_refs(log: ModelLog) -> None:
    """Cache each parameter's gradient metadata, then drop every reference to the live parameters."""
    for p in log.param_logs:
        p.release_param_ref()
    data = log._data
    # ParamInfo objects are shared with the capture plan's cache: replace, never mutate.
    data.params = [dataclasses.replace(info, param=None) for info in data.params]
    if data.func_args:
        memo: dict[int, Any] = {}
        data.func_args = {nid: _map_values(cap, _param_free, memo) for nid, cap in data.func_args.items()}


def _param_free(v: Any, memo: dict[int, Any]) -> Any:
    if not isinstance(v, torch.nn.Parameter):
        return v
    d = memo.get(id(v))
    if d is None:
        d = memo[id(v)] = v.detach()
    return d


def cleanup(log: ModelLog) -> None:
    """Drop every saved value and cached table, release the parameters and empty the CUDA cache."""
    release_param_refs(log)
    log._saved.clear()
    log._lazy.clear()
    log._transformed = {}
    log._data.func_args = {}
    log._data.func_rng = {}
    params = log._cols.get("params")
    log._cols.clear()
    if params is not None:
        log._cols["params"] = params  # parameter metadata, with the gradient metadata cached above
    log._entries.clear()
    log._layer_logs = None
    log.activation_postfunc = None
    log.gradient_postfunc = None
    log._grad_store = None  # kept gradients; hooks still in a live graph find no store and do nothing
    log.has_gradients = False
    log._lazy_grads = {}
    log.__dict__.pop("_backward", None)  # the backward graph's GradFnLogs and their gradient copies
    log._data.grad_fn_ids = {}
    log._rng_before_forward = None
    log._source_model_ref = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def full_view(log: ModelLog) -> ModelLog:
    """The log with every entry shown: a keep_unsaved_layers=False log's whole graph (shares its data)."""
    view = object.__new__(type(log))
    view.__dict__.update(log.__dict__)
    view._kept = None
    view._cols = {}
    view._entries = {}
    view._layer_logs = None
    return view


# ---------------------------------------------------------------------------------- pickling
def log_state(log: ModelLog) -> dict[str, Any]:
    """The picklable state of a log (see `ModelLog.__getstate__`)."""
    state = {k: v for k, v in log.__dict__.items() if k not in _REBUILT}
    memo: dict[int, Any] = {}
    state["_data"] = _portable_data(log._data, memo)
    state["_saved"] = {nid: _detached(t, memo) for nid, t in log._saved.items()}
    state["_transformed"] = _portable_dict(log._transformed, memo)
    state["_lazy"] = dict(log._lazy)
    state["_source_model_ref"] = None
    state["activation_postfunc"] = _picklable_or_none(log.activation_postfunc)
    state["gradient_postfunc"] = _picklable_or_none(getattr(log, "gradient_postfunc", None))
    state["_activation_callback"] = _picklable_or_none(log._activation_callback)
    conditionals.table(log)  # located in the source now: the copy has no code objects to do it with
    state["_caches"] = {k: log._cols[k] for k in _KEPT_CACHES if k in log._cols}
    state["_pickle_format_version"] = PICKLE_FORMAT_VERSION
    return state


def restore_state(log: ModelLog, state: dict[str, Any]) -> None:
    """Rebuild a log from `log_state` output: the core finalizes the records again."""
    version = state.get("_pickle_format_version")
    if version != PICKLE_FORMAT_VERSION:
        raise TorchLensIOError(
            f"This pickled ModelLog has format version {version!r}; this torchlens reads version "
            f"{PICKLE_FORMAT_VERSION}. Re-create the log, or move it between versions with torchlens.save/load."
        )
    state = dict(state)
    caches = state.pop("_caches", {})
    del state["_pickle_format_version"]
    log.__dict__.update(state)
    data: CaptureData = log._data
    log._fin = _core.finalize(*data.core_inputs(), bool(log.detect_loops))
    log._records = data.records
    log._n_records = len(data.records)
    log._node_ids = log._fin.node_ids()
    log._n_pos = len(log._node_ids)
    log._cols = dict(caches)
    log._entries = {}
    log._layer_logs = None


def _portable_data(data: CaptureData, memo: dict[int, Any]) -> CaptureData:
    codes: dict[int, CodeInfo] = {}

    def code(co: Any) -> Any:
        if isinstance(co, CodeInfo) or not hasattr(co, "co_filename"):
            return co
        c = codes.get(id(co))
        if c is None:
            c = codes[id(co)] = CodeInfo(co)
        return c

    def site(frames: Any) -> tuple:
        return tuple((code(co), line) for co, line in frames)

    return dataclasses.replace(
        data,
        sites=[site(s) for s in data.sites],
        caller_site=None if data.caller_site is None else (code(data.caller_site[0]), data.caller_site[1]),
        params=[dataclasses.replace(p, param=None) for p in data.params],
        module_objects={
            addr: (None, snap[1], _importable_class(snap[2])) for addr, snap in data.module_objects.items()
        },
        func_args={nid: _map_values(cap, _portable_leaf, memo) for nid, cap in data.func_args.items()},
        grad_fn_ids={},  # ids of grad_fns of this process: meaningless in another one
        bool_events=[],  # already turned into the kept "cond" table
    )


def _importable_class(cls: Any) -> Any:
    """The class itself when pickle can store it by name, else None (its docstrings are then unknown)."""
    if cls is None:
        return None
    obj: Any = sys.modules.get(getattr(cls, "__module__", "") or "")
    for part in getattr(cls, "__qualname__", "<locals>").split("."):
        obj = getattr(obj, part, None)
    return cls if obj is cls else None


def _detached(t: Any, memo: dict[int, Any]) -> Any:
    """A tensor without its autograd history (pickle refuses graph-attached tensors); shared ones stay shared."""
    if not isinstance(t, torch.Tensor):
        return t
    d = memo.get(id(t))
    if d is None:
        d = memo[id(t)] = t.detach() if (t.requires_grad or type(t) is not torch.Tensor) else t
    return d


def _portable_dict(d: Any, memo: dict[int, Any]) -> Any:
    new = copy.copy(d)  # keeps a dict subclass (a lazily loaded bundle's tensor dict) and its attributes
    for k, v in dict.items(d):
        dict.__setitem__(new, k, _detached(v, memo))
    return new


def _portable_leaf(v: Any, memo: dict[int, Any]) -> Any:
    if isinstance(v, torch.Tensor):
        return _detached(v, memo)
    if isinstance(v, _PLAIN) or v is Ellipsis:
        return v
    key = id(v)
    if key not in memo:
        try:
            pickle.dumps(v)
            memo[key] = v
        except Exception:
            memo[key] = UnpicklableValue(repr(v))
    return memo[key]


def _map_values(obj: Any, leaf: Any, memo: dict[int, Any], depth: int = 0) -> Any:
    """Captured call arguments `(function, args, kwargs)` with every leaf value passed through `leaf`."""
    if isinstance(obj, ParentRef):
        return ParentRef(obj.nid, None if obj.value is None else leaf(obj.value, memo))
    if isinstance(obj, GeneratorSnapshot):
        return obj
    if depth < 8:
        if type(obj) is tuple or type(obj) is list:
            return type(obj)(_map_values(o, leaf, memo, depth + 1) for o in obj)
        if type(obj) is dict:
            return {k: _map_values(v, leaf, memo, depth + 1) for k, v in obj.items()}
    return leaf(obj, memo)


def _picklable_or_none(fn: Any) -> Any:
    if fn is None:
        return None
    try:
        pickle.dumps(fn)
    except Exception:
        return None
    return fn
