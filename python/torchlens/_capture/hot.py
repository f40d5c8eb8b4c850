"""The per-call hot path: wrapper factory and the active capture session.

Every intercepted torch callable goes through `make_wrapper`. When no session is active the
wrapper costs one global read. When one is, `Session.call` appends one record of ints per new
tensor; all analysis happens later in the Rust core.
"""

from __future__ import annotations

from typing import Any

import torch

from .._data import op_flags
from .strings import intern

# The active session, or None. Read by every wrapper; written only by Session.activate/deactivate
# and by `paused()`.
_session: Any = None

TAG = "_tl_id"

_NEVER_LOG = frozenset({"numpy", "__array__", "size", "dim"})


def make_wrapper(orig: Any, name: str, layer_type: str) -> Any:
    """Build the wrapper installed in place of one torch callable."""
    if name in _NEVER_LOG:

        def passthrough(*args: Any, **kwargs: Any) -> Any:
            return orig(*args, **kwargs)

        passthrough.__name__ = name
        return passthrough

    fid = intern(name)
    tid = intern(layer_type)
    flags = op_flags(name) | _inplace_arg_flags(orig)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        s = _session
        if s is None:
            return orig(*args, **kwargs)
        return s.call(orig, fid, tid, flags, args, kwargs)

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.__doc__ = getattr(orig, "__doc__", None)
    wrapper.__torchlens_original__ = orig  # type: ignore[attr-defined]
    return wrapper


# A function with an `inplace` parameter (F.leaky_relu, F.silu, F.hardswish, F.dropout, ...) changes
# its input when called with inplace=True, whatever its name: the call is then treated as in-place
# (classify.py). The parameter's position is kept in the bits above INPLACE_POS_SHIFT.
FLAG_INPLACE_ARG = 1 << 8
INPLACE_POS_SHIFT = 16


def _inplace_arg_flags(orig: Any) -> int:
    code = getattr(orig, "__code__", None)
    if code is None:
        return 0
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    if "inplace" not in names:
        return 0
    pos = names.index("inplace")
    # A keyword-only `inplace` can never arrive positionally: point its position past any call.
    return FLAG_INPLACE_ARG | ((pos if pos < code.co_argcount else 0xFFFF) << INPLACE_POS_SHIFT)


class paused:
    """Context manager that turns capture off (e.g. while running a postfunc)."""

    def __enter__(self) -> None:
        global _session
        self._prev = _session
        _session = None

    def __exit__(self, *exc: object) -> None:
        global _session
        _session = self._prev


def set_session(session: Any) -> Any:
    global _session
    prev = _session
    _session = session
    return prev


def get_session() -> Any:
    return _session


# `isinstance(x, Tensor)` on a non-tensor, and `isinstance(x, tuple | list)`, cost about a
# microsecond each here (metaclass and union checks), several times a plain call: the hot path
# tests exact types first and classifies any other type once.
_TENSOR_TYPE: dict[type, bool] = {}
_SEQ_TYPE: dict[type, bool] = {}


def is_tensor_type(ta: type) -> bool:
    """`issubclass(ta, Tensor)`, cached per type."""
    r = _TENSOR_TYPE.get(ta)
    if r is None:
        r = _TENSOR_TYPE[ta] = issubclass(ta, torch.Tensor)
    return r


def is_seq_type(ta: type) -> bool:
    """`issubclass(ta, (tuple, list))`, cached per type (named tuples, torch.Size, return types)."""
    r = _SEQ_TYPE.get(ta)
    if r is None:
        r = _SEQ_TYPE[ta] = issubclass(ta, (tuple, list))
    return r


# Unwrapped C implementations used by the session itself, so its own tensor work is never logged.
TensorBase = torch._C.TensorBase
raw_clone = TensorBase.clone
raw_view_as = TensorBase.view_as
raw_detach = TensorBase.detach
