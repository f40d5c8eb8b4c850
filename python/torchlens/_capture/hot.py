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
    flags = op_flags(name)

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


# Unwrapped C implementations used by the session itself, so its own tensor work is never logged.
TensorBase = torch._C.TensorBase
raw_clone = TensorBase.clone
raw_view_as = TensorBase.view_as
raw_detach = TensorBase.detach
