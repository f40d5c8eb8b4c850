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

from array import array
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
_len = len
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
    # Exact type tests first: `isinstance(v, Tensor)` on a non-tensor and `isinstance(v, tuple | list)`
    # each cost about a microsecond here (the metaclass / union checks), more than the rest of the op.
    if len(names) == 1:  # the common case (a saved input or result): no de-duplication needed
        try:
            v = _getattr(gf, names[0])
        except Exception:  # freed or unavailable saved value
            return 0, 0
        tv = _type(v)
        if tv is Tensor:
            return v.nbytes, 1
        if v is None:
            return 0, 0
        vals = [v]
    else:
        vals = []
        for a in names:
            try:
                v = _getattr(gf, a)
            except Exception:
                continue
            if v is not None:
                vals.append(v)
        if _len(vals) == 1 and _type(vals[0]) is Tensor:  # one saved tensor, the rest None
            return vals[0].nbytes, 1
    seen: set[int] = set()
    total = count = 0
    for v in vals:
        tv = _type(v)
        for u in v if (tv is tuple or tv is list) else (v,):
            if _type(u) is not Tensor and not isinstance(u, Tensor):
                continue
            p = u.data_ptr()
            if p not in seen:
                seen.add(p)
                total += u.nbytes
                count += 1
    return total, count


def autocast_now() -> tuple:
    return tuple((dev, _is_autocast(dev), _autocast_dtype(dev)) for dev in AUTOCAST_DEVICES)


_MISSING = -(1 << 63)  # a record with no value (ids and byte counts are never this)


def _put(a: array, nid: int, value: int) -> None:
    """Set `a[nid]`, padding the records in between as missing (the rare path of `OpState.note`)."""
    if nid < len(a):
        a[nid] = value
        return
    a.extend(array("q", [_MISSING]) * (nid - len(a)))
    a.append(value)


class IntColumn:
    """record -> int, read like a dict (`get`) from an array of one machine word per record.

    A dict entry costs about 100 bytes (the entry, the key and value objects); with grad on every
    op has a grad_fn, so the per-op state is kept in arrays (8 bytes a record)."""

    __slots__ = ("_a",)

    def __init__(self, a: array) -> None:
        self._a = a

    def get(self, nid: int, default: Any = None) -> Any:
        a = self._a
        if 0 <= nid < len(a):
            v = a[nid]
            if v != _MISSING:
                return v
        return default

    def __len__(self) -> int:
        return sum(1 for v in self._a if v != _MISSING)


class SavedColumn:
    """record -> (bytes, count) of the tensors autograd saved (see `IntColumn`)."""

    __slots__ = ("nbytes", "count")

    def __init__(self, nbytes: array, count: array) -> None:
        self.nbytes = IntColumn(nbytes)
        self.count = IntColumn(count)

    def get(self, nid: int, default: Any = None) -> Any:
        b = self.nbytes.get(nid)
        return default if b is None else (b, self.count.get(nid, 0))


class OpState:
    """The per-op state of one capture session (see the module docstring)."""

    __slots__ = ("_saved_b", "_saved_n", "states", "ids", "_index", "always", "_gf_ids")

    def __init__(self) -> None:
        first = autocast_now()
        self._saved_b = array("q")
        self._saved_n = array("q")
        self.states: list[tuple] = [first]
        self.ids: dict[int, int] = {}
        # record -> id(grad_fn): how `log_backward` matches grad_fns to forward layers (no reference kept).
        self._gf_ids = array("q")
        self._index = {first: 0}
        # Started inside an autocast region: an op that runs with it switched off must be told apart.
        self.always = any(en for _, en, _ in first)

    @property
    def saved(self) -> SavedColumn:
        return SavedColumn(self._saved_b, self._saved_n)

    @property
    def grad_fn_ids(self) -> IntColumn:
        return IntColumn(self._gf_ids)

    def note(self, gf: Any, nid: int) -> None:
        """Record the state of op `nid`, whose output's `grad_fn` is `gf` (None without one)."""
        if gf is not None:
            # Records arrive in order, so this is an append but after a source record (no grad_fn).
            g = self._gf_ids
            if len(g) == nid:
                g.append(id(gf))
            else:
                _put(g, nid, id(gf))
            try:
                names = _SAVED_NAMES.get(_type(gf))
                if names is None:
                    names = _saved_names(gf)
                if names:
                    b, n = _saved_bytes(gf, names)
                    sb = self._saved_b
                    if len(sb) == nid:
                        sb.append(b)
                        self._saved_n.append(n)
                    else:
                        _put(sb, nid, b)
                        _put(self._saved_n, nid, n)
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
