"""Per-op state read right after each call, for `LayerPassLog.autograd_saved_bytes`,
`autograd_saved_tensor_count` and `func_autocast_state` (spec §3.1).

* Autograd: the bytes and count of the tensors the op's `grad_fn` saved for backward (its
  `_saved_*` attributes), deduplicated by data pointer. The attribute names are looked up once
  per grad_fn class, so a class that saves no tensor (views, adds) costs one dict read.
* Autocast: `(device, enabled, dtype)` for cpu and cuda. The state at the start of the capture is
  taken once; per op only `torch._C._is_any_autocast_enabled()` is asked, and the full state is read
  (and interned) only while some autocast region is on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

AUTOCAST_DEVICES = ("cpu", "cuda")
_is_autocast = torch.is_autocast_enabled
any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None) or (
    lambda: any(_is_autocast(d) for d in AUTOCAST_DEVICES)
)
_autocast_dtype = torch.get_autocast_dtype
_type = type
_getattr = getattr
# grad_fn class -> the `_saved_*` attributes that can hold tensors.
_SAVED_NAMES: dict[type, tuple[str, ...]] = {}


def _saved_names(gf: Any) -> tuple[str, ...]:
    names = []
    for a in dir(gf):
        if not a.startswith("_saved_") or a.endswith(("_sym_sizes", "_sym_strides")):
            continue
        try:
            v = getattr(gf, a)
        except Exception:
            v = None
        if v is None or isinstance(v, Tensor) or (isinstance(v, tuple | list) and not all(_type(x) is int for x in v)):
            names.append(a)
    out = _SAVED_NAMES[_type(gf)] = tuple(names)
    return out


def _saved_bytes(gf: Any, names: tuple[str, ...]) -> tuple[int, int]:
    if len(names) == 1:  # the common case (a saved input or result): no de-duplication needed
        try:
            v = _getattr(gf, names[0])
        except Exception:  # freed or unavailable saved value
            return 0, 0
        if _type(v) is Tensor:
            return v.nbytes, 1
        names_vals = [v]
    else:
        names_vals = []
        for a in names:
            try:
                names_vals.append(_getattr(gf, a))
            except Exception:
                continue
    seen: set[int] = set()
    total = count = 0
    for v in names_vals:
        for u in (v,) if isinstance(v, Tensor) else v if isinstance(v, tuple | list) else ():
            if not isinstance(u, Tensor):
                continue
            p = u.data_ptr()
            if p not in seen:
                seen.add(p)
                total += u.nbytes
                count += 1
    return total, count


def autocast_now() -> tuple:
    return tuple((dev, _is_autocast(dev), _autocast_dtype(dev)) for dev in AUTOCAST_DEVICES)


class OpState:
    """The per-op state of one capture session (see the module docstring)."""

    __slots__ = ("saved", "states", "ids", "_index", "always", "grad_fn_ids")

    def __init__(self) -> None:
        first = autocast_now()
        self.saved: dict[int, tuple[int, int]] = {}
        self.states: list[tuple] = [first]
        self.ids: dict[int, int] = {}
        # record -> id(grad_fn): how `log_backward` matches grad_fns to forward layers (no reference kept).
        self.grad_fn_ids: dict[int, int] = {}
        self._index = {first: 0}
        # Started inside an autocast region: an op that runs with it switched off must be told apart.
        self.always = any(en for _, en, _ in first)

    def note(self, gf: Any, nid: int) -> None:
        """Record the state of op `nid`, whose output's `grad_fn` is `gf` (None without one)."""
        if gf is not None:
            self.grad_fn_ids[nid] = id(gf)
            try:
                names = _SAVED_NAMES.get(_type(gf))
                if names is None:
                    names = _saved_names(gf)
                if names:
                    self.saved[nid] = _saved_bytes(gf, names)
            except Exception:  # a tensor kind without sizes or pointers (sparse, meta, ...): counted as none
                pass
        if self.always or any_autocast():
            st = autocast_now()
            i = self._index.get(st)
            if i is None:
                i = self._index[st] = len(self.states)
                self.states.append(st)
            if i:
                self.ids[nid] = i
