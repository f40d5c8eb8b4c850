"""Which nodes no longer hold the value their tensor has: in-place writes through aliases.

A node's value is its tensor's value when the op produced it. An intercepted in-place op that
writes a tensor's storage through another alias (`x.unsqueeze(0).fill_(0)`, `x[1:3].zero_()`,
`h.t().mul_(3)`) makes that older node *stale*: the tensor object still carries the old node's
tag, but its contents are now different. Whoever receives the tensor after the write (the
model's caller, the caller of a module) did not receive that node's value.

The session records each intercepted write as the written node's id and geometry under the
address of the written storage. `stale(writes, t, tag)` asks whether a write newer than node `tag`
overlaps `t`'s elements. A storage address can be reused after the storage is freed, but every
node created after the reuse is newer than the writes recorded under the old storage, so a reused
address never marks a tensor stale.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from . import hot

_raw_as_strided = torch._C.TensorBase.as_strided


def _key(t: Tensor) -> Any:
    """The storage `t` views: its address, so that views, `detach()` and `.data` aliases all meet (a
    tensor without a real storage, e.g. on the meta device, falls back to its view root)."""
    try:
        ptr = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        ptr = 0
    if ptr:
        return (ptr, t.device)
    base = t._base
    return id(t if base is None else base)


def _geometry(t: Tensor) -> tuple:
    return (t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def note_write(writes: dict[int, list], t: Tensor, nid: int) -> None:
    """Record that node `nid` wrote `t`'s elements in place."""
    writes.setdefault(_key(t), []).append((nid, _geometry(t)))


def stale(writes: dict[int, list], t: Tensor, tag: int) -> bool:
    """Whether a write made after node `tag` was created changed some element of `t`."""
    entries = writes.get(_key(t))
    if not entries:
        return False
    mine = None
    for nid, geom in reversed(entries):
        if nid <= tag:
            break
        if mine is None:
            mine = _geometry(t)
        if _overlap(mine, geom):
            return True
    return False


def _span(geom: tuple) -> tuple[int, int] | None:
    """[first, last] element offsets a view touches, or None when it has no elements."""
    off, shape, stride, _ = geom
    lo = hi = off
    for n, s in zip(shape, stride, strict=True):
        if n == 0:
            return None
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
    return lo, hi


def _overlap(a: tuple, b: tuple) -> bool:
    """Whether two views of one storage share an element (exact; conservative across dtypes)."""
    sa, sb = _span(a), _span(b)
    if sa is None or sb is None or sa[1] < sb[0] or sb[1] < sa[0]:
        return False
    if a[3] != b[3] or a[3].itemsize != b[3].itemsize:
        return True  # element offsets of different-width views are not comparable: assume they meet
    lo = min(sa[0], sb[0])
    size = max(sa[1], sb[1]) - lo + 1
    with hot.paused():
        mark = torch.zeros(size, dtype=torch.bool)
        _raw_as_strided(mark, b[1], b[2], b[0] - lo).fill_(True)
        return bool(_raw_as_strided(mark, a[1], a[2], a[0] - lo).any())


def output_value(t: Tensor, stale_now: bool, saved: Any) -> bool:
    """Whether a returned tensor needs a value of its own rather than its node's saved one: the node went
    stale, or the session kept a copy of the node's value that no longer equals the tensor (a write the
    wrappers did not see, e.g. an `out=` argument)."""
    if stale_now:
        return True
    if saved is None or saved is t:
        return False
    if saved.shape != t.shape or saved.dtype != t.dtype:
        return True
    if _geometry(saved)[:3] == _geometry(t)[:3] and saved.data_ptr() == t.data_ptr():
        return False  # the node's tensor itself (or a detached alias of it)
    with hot.paused(), torch.no_grad():
        return not bool(torch.equal(saved.detach(), t.detach()))
