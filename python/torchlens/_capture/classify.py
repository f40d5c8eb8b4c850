"""The one rule deciding which tensors an intercepted call turns into nodes (spec §7.2 steps 7-9).

Both capture sessions (`session.Session` and `fastlog._session.FastSession`) get their `call`
method from `make_call`, so they cannot disagree on an op that returns its own input, returns
None after changing it, or returns a tuple. The rule is generated once per session class rather
than called as a helper because it runs for every torch call of the forward pass: a second
Python call per op would be a measurable share of the capture cost.

A session provides: `pending_buffers` (truthy while model buffers wait for their first use) and
`_buffers_in(items)`, `by_root` and `protect(t)` (copy-on-write of kept outputs), `ncalls`, and
`_log(t, fid, tid, out_index, args, kwargs, bottom)` for a lone tensor that becomes a node,
`_log_multi(items, fid, tid, args, kwargs, bottom)` for the `(out_index, tensor)` results of a call
returning several (every one's parents are the arguments' tags from before any result is tagged:
a result can be one of the arguments), and `_log_inplace` (same arguments as `_log`) for a changed
input `args[0]` that becomes a node: its parents must be read before it takes its new tag.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any

from torch import Tensor
from torch.nn import Parameter

from .._data import FLAG_INPLACE, FLAG_RETURNS_NONE_SELF, FLAG_SELF_NOT_PARENT, OUT_SINGLE
from .hot import FLAG_INPLACE_ARG, INPLACE_POS_SHIFT, is_seq_type, raw_view_as


def make_call(tag: str, timed: bool) -> Callable[..., Any]:
    """The `call(orig, fid, tid, flags, args, kwargs)` method of a session that tags tensors with `tag`.

    With `timed`, the op's own wall time is left in `self._dt` for `_log` to record.
    """
    _type = type
    _getattr = getattr
    _len = len
    _perf = perf_counter
    _raw_view_as = raw_view_as

    def call(self: Any, orig: Any, fid: int, tid: int, flags: int, args: tuple, kwargs: dict) -> Any:
        if self.pending_buffers:
            # A buffer's node must hold its value from before the op that first uses it.
            self._buffers_in(args)
            if kwargs:
                self._buffers_in(kwargs.values())
        if flags & FLAG_INPLACE_ARG:
            pos = flags >> INPLACE_POS_SHIFT
            if kwargs.get("inplace", False) if "inplace" in kwargs else (_len(args) > pos and args[pos] is True):
                flags |= FLAG_INPLACE
        if flags & FLAG_INPLACE and self.by_root and args and isinstance(args[0], Tensor):
            self.protect(args[0])
        n0 = self.ncalls + 1
        self.ncalls = n0
        if timed:
            t0 = _perf()
            out = orig(*args, **kwargs)
            self._dt = _perf() - t0
        else:
            out = orig(*args, **kwargs)
        # Bottom-level: no other wrapped call ran inside this one. A composite call only logs the
        # outputs its inner calls did not.
        bottom = self.ncalls == n0
        to = _type(out)
        if to is Tensor:
            if flags & FLAG_SELF_NOT_PARENT:
                if bottom or _getattr(out, tag, None) is None:
                    self._log(out, fid, tid, OUT_SINGLE, args[1:], kwargs, bottom)
                return out
            if args and out is args[0]:
                if not bottom:
                    return out
                if flags & FLAG_INPLACE:
                    self._log_inplace(out, fid, tid, OUT_SINGLE, args, kwargs, bottom)
                    return out
                # A non-in-place op handed back its input (x.contiguous(), x.to(x.dtype)): the
                # caller gets an alias so the input keeps its own node for its other uses.
                out = _raw_view_as(out, out)
                self._log(out, fid, tid, OUT_SINGLE, args, kwargs, bottom)
                return out
            if bottom or _getattr(out, tag, None) is None:
                self._log(out, fid, tid, OUT_SINGLE, args, kwargs, bottom)
            return out
        if to is Parameter:
            # A non-in-place op handed back its parameter argument (w.float(), w.to(w.dtype),
            # w.contiguous()): like 2.15, a node with the parameter recorded on it, holding a
            # plain-tensor alias of it (the caller gets the alias).
            if bottom and args and out is args[0] and not flags & FLAG_INPLACE:
                out = _raw_view_as(out, out)
                self._log(out, fid, tid, OUT_SINGLE, args, kwargs, bottom)
            return out
        if out is None:
            if flags & FLAG_RETURNS_NONE_SELF and bottom and args and isinstance(args[0], Tensor):
                self._log_inplace(args[0], fid, tid, OUT_SINGLE, args, kwargs, bottom)
            return out
        if to is tuple or to is list or is_seq_type(to):
            items = out
        elif isinstance(out, dict):
            items = out.values()
        else:
            return out
        new = [(i, o) for i, o in enumerate(items) if _type(o) is Tensor and (bottom or _getattr(o, tag, None) is None)]
        if new:
            self._log_multi(new, fid, tid, args, kwargs, bottom)
        return out

    return call
