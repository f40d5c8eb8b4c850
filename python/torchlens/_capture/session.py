"""One capture session: the records of a single forward pass and everything needed to undo it."""

from __future__ import annotations

import weakref
from array import array
from typing import Any

from torch import Tensor
from torch.nn import Parameter

from . import hot
from .strings import intern

TAG = hot.TAG
# Must match torchlens._core.RECORD_FIELDS / RECORD_VERSION (checked by tests/test_core_boundary.py).
RECORD_FIELDS = ("kind", "func", "layer_type", "arg_hash", "out_index", "module_stack", "params", "parents", "role")
RECORD_VERSION = 1
NO_STR = 0xFFFFFFFF
_MASK = (1 << 64) - 1
_SCALARS = (int, float, bool, str, type(None), complex)
_FUNC_NONE = intern("none")
_TYPE_INPUT = intern("input")
_TYPE_BUFFER = intern("buffer")
_FUNC_IDENTITY = intern("identity")
_TYPE_IDENTITY = intern("identity")
_raw_clone = hot.raw_clone
_raw_view_as = hot.raw_view_as
_raw_detach = hot.raw_detach
_getattr = getattr
_setattr = setattr
_type = type
_len = len
_hash = hash


def _tok(a: Any, depth: int = 0) -> Any:
    ta = _type(a)
    if ta is Tensor or isinstance(a, Tensor):
        return a.shape if ta is not Parameter else None
    if ta in _SCALARS:
        return a
    if (ta is tuple or ta is list) and depth < 10:
        return tuple([_tok(b, depth + 1) for b in a])
    if ta is dict and depth < 10:
        return tuple([(k, _tok(v, depth + 1)) for k, v in a.items()])
    try:
        _hash(a)
        return a
    except TypeError:
        return str(a)


class Session:
    """Records one forward pass. Created and torn down by `capture.run_capture`."""

    def __init__(self, save: str | frozenset[int] | None, detach: bool = False, copy_all: bool = False) -> None:
        self.records: list[tuple] = []
        # Per node: an id into `metas`, the interned (shape, dtype, grad_fn class name) triples.
        self.meta_ids = array("q")
        self.metas: list[tuple[tuple[int, ...], Any, str]] = []
        self._meta_index: dict[Any, int] = {}
        self.saved: dict[int, Tensor] = {}
        self.copy_all = copy_all
        self.by_root: dict[int, list[int]] = {}
        self.ref_versions: dict[int, int] = {}
        self.save_all = save == "all"
        self.save_set: frozenset[int] | None = save if isinstance(save, frozenset) else None
        self.detach = detach
        self.ncalls = 0
        self.stack_id = 0
        self.module_stacks: list[list[tuple[int, int]]] = [[]]
        self._stack_index: dict[tuple[int, int, int], int] = {}
        self.module_exits: list[tuple[int, int, int]] = []
        self.param_ids: dict[int, int] = {}
        self.module_index: dict[int, int] = {}
        self.prepared: Any = None
        self.params: list[tuple[str, Parameter]] = []
        self.buffer_roles: list[int] = []
        self.buffer_tensors: list[Tensor] = []
        self.pending_buffers = 0
        self.tagged: list[Any] = []
        self.outputs: list[tuple[int, int, int]] = []
        self.output_tensors: list[Tensor] = []

    # ------------------------------------------------------------------ hot path
    def call(self, orig: Any, fid: int, tid: int, flags: int, args: tuple, kwargs: dict) -> Any:
        if self.pending_buffers:
            # A buffer's node must hold its value from before the op that first uses it.
            self._log_buffers_in(args)
            if kwargs:
                self._log_buffers_in(kwargs.values())
        if flags & 1 and self.by_root and args and isinstance(args[0], Tensor):
            self.protect(args[0])
        n0 = self.ncalls + 1
        self.ncalls = n0
        out = orig(*args, **kwargs)
        bottom = self.ncalls == n0
        to = _type(out)
        if flags & 4 and to is Tensor:
            if bottom or _getattr(out, TAG, None) is None:
                self._log(out, fid, tid, -1, args[1:], kwargs, False)
            return out
        if to is Tensor:
            if args and out is args[0]:
                if flags & 1:
                    if bottom:
                        self._log(out, fid, tid, -1, args, kwargs, True)
                    return out
                if not bottom:
                    return out
                out = _raw_view_as(out, out)
                self._log(out, fid, tid, -1, args, kwargs, True)
                return out
            if bottom or _getattr(out, TAG, None) is None:
                self._log(out, fid, tid, -1, args, kwargs, False)
            return out
        if out is None:
            if flags & 2 and args and isinstance(args[0], Tensor) and bottom:
                self._log(args[0], fid, tid, -1, args, kwargs, True)
            return out
        if isinstance(out, tuple | list):
            i = 0
            for o in out:
                if _type(o) is Tensor and (bottom or _getattr(o, TAG, None) is None):
                    self._log(o, fid, tid, i, args, kwargs, False)
                i += 1
        elif isinstance(out, dict):
            i = 0
            for o in out.values():
                if _type(o) is Tensor and (bottom or _getattr(o, TAG, None) is None):
                    self._log(o, fid, tid, i, args, kwargs, False)
                i += 1
        return out

    def _log_buffers_in(self, items: Any) -> None:
        for a in items:
            if isinstance(a, Tensor):
                tg = _getattr(a, TAG, None)
                if tg is not None and tg < 0:
                    self._log_buffer(a, tg)
            elif _type(a) is list or _type(a) is tuple:
                self._log_buffers_in(a)

    def _scan(self, items: Any, parents: list[int], params: list[int]) -> None:
        for a in items:
            ta = _type(a)
            if ta is Tensor:
                tg = _getattr(a, TAG, None)
                if tg is not None:
                    if tg < 0:
                        tg = self._log_buffer(a, tg)
                    parents.append(tg)
            elif ta is Parameter:
                pid = self.param_ids.get(id(a))
                if pid is not None:
                    params.append(pid)
            elif ta is tuple or ta is list:
                self._scan(a, parents, params)
            elif isinstance(a, Tensor):
                tg = _getattr(a, TAG, None)
                if tg is not None:
                    if tg < 0:
                        tg = self._log_buffer(a, tg)
                    parents.append(tg)

    def _log(self, t: Tensor, fid: int, tid: int, out_index: int, args: tuple, kwargs: dict, same: bool) -> None:
        parents: list[int] = []
        params: list[int] = []
        toks: list[Any] = []
        for a in args:
            ta = _type(a)
            if ta is Tensor:
                tg = _getattr(a, TAG, None)
                if tg is not None:
                    if tg < 0:
                        tg = self._log_buffer(a, tg)
                    parents.append(tg)
                toks.append(a.shape)
            elif ta is Parameter:
                pid = self.param_ids.get(id(a))
                if pid is not None:
                    params.append(pid)
            elif ta in _SCALARS:
                toks.append(a)
            else:
                if ta is tuple or ta is list or isinstance(a, Tensor):
                    self._scan((a,), parents, params)
                toks.append(_tok(a))
        if kwargs:
            self._scan(kwargs.values(), parents, params)
            toks.append(tuple([(k, _tok(v)) for k, v in kwargs.items()]))
        arg_hash = 0 if params else _hash(tuple(toks)) & _MASK
        nid = _len(self.records)
        self.records.append((2, fid, tid, arg_hash, out_index, self.stack_id, tuple(params), tuple(parents), NO_STR))
        self._tag_and_meta(t, nid)

    def _tag_and_meta(self, t: Tensor, nid: int) -> None:
        if _getattr(t, TAG, None) is None:
            self.tagged.append(weakref.ref(t))
        _setattr(t, TAG, nid)
        key = (t.shape, t.dtype, _type(t.grad_fn))
        mid = self._meta_index.get(key)
        if mid is None:
            mid = self._meta_index[key] = _len(self.metas)
            self.metas.append((tuple(key[0]), key[1], key[2].__name__))
        self.meta_ids.append(mid)
        if self.save_all or (self.save_set is not None and nid in self.save_set):
            self._save(t, nid)

    def _save(self, t: Tensor, nid: int) -> None:
        """Keep the op's output itself instead of a copy, until something could change it.

        Copying every activation costs more than the forward for large models (memory bandwidth
        and page faults). Outputs are kept by reference; an intercepted in-place op first swaps in
        a copy of every saved tensor sharing its storage, and `versions_intact()` verifies at the
        end that nothing else wrote to them (the caller re-runs with copies if something did).
        """
        if self.copy_all:
            c = _raw_clone(t)
            self.saved[nid] = _raw_detach(c) if self.detach else c
            return
        base = t._base
        root = t if base is None else base
        key = id(root)
        group = self.by_root.get(key)
        if group is None:
            self.by_root[key] = [nid]
        else:
            group.append(nid)
        self.saved[nid] = _raw_detach(t) if self.detach else t
        self.ref_versions[nid] = t._version

    def protect(self, t: Any) -> None:
        """Before an in-place op on `t`: replace saved references sharing its storage by copies."""
        base = t._base
        nids = self.by_root.pop(id(t if base is None else base), None)
        if nids is None:
            return
        saved = self.saved
        versions = self.ref_versions
        for nid in nids:
            v = saved.get(nid)
            if v is not None and versions.pop(nid, None) is not None:
                saved[nid] = _raw_clone(v)

    def versions_intact(self) -> bool:
        saved = self.saved
        return all(saved[nid]._version == v for nid, v in self.ref_versions.items())

    # ------------------------------------------------------------------ sources
    def log_input(self, t: Tensor, role: str) -> None:
        nid = _len(self.records)
        # The role is hashed in so that two inputs never merge into one multi-pass layer (a 2.15 quirk).
        h = _hash((tuple(t.shape), str(t.dtype), role)) & _MASK
        self.records.append((0, _FUNC_NONE, _TYPE_INPUT, h, -1, 0, (), (), intern(role)))
        self._tag_and_meta(t, nid)

    def register_buffer_tensor(self, t: Tensor, address: str) -> None:
        if _getattr(t, TAG, None) is not None:
            return
        k = _len(self.buffer_roles)
        self.buffer_roles.append(intern(address))
        self.buffer_tensors.append(t)
        self.pending_buffers += 1
        _setattr(t, TAG, -(k + 1))

    def _log_buffer(self, t: Tensor, tag: int) -> int:
        self.pending_buffers -= 1
        k = -tag - 1
        nid = _len(self.records)
        self.records.append((1, _FUNC_NONE, _TYPE_BUFFER, 0, -1, self.stack_id, (), (), self.buffer_roles[k]))
        copy_all = self.copy_all
        self.copy_all = True  # buffers are model state that kernels update in place (BatchNorm stats)
        try:
            self._tag_and_meta(t, nid)
        finally:
            self.copy_all = copy_all
        return nid

    def log_identity(self, t: Tensor) -> Tensor:
        """Give a module output that is one of its inputs its own node (spec §7.4)."""
        alias = _raw_view_as(t, t)
        self._log(alias, _FUNC_IDENTITY, _TYPE_IDENTITY, -1, (t,), {}, False)
        return alias

    def add_output(self, t: Tensor, role: str) -> None:
        tg = _getattr(t, TAG, None)
        if tg is None or tg < 0:
            return
        h = _hash((tuple(t.shape), str(t.dtype))) & _MASK
        self.outputs.append((tg, intern(role), h))
        self.output_tensors.append(t)

    # ------------------------------------------------------------------ modules
    def enter_module(self, addr_id: int, pass_num: int) -> int:
        prev = self.stack_id
        key = (prev, addr_id, pass_num)
        sid = self._stack_index.get(key)
        if sid is None:
            sid = self._stack_index[key] = _len(self.module_stacks)
            self.module_stacks.append([*self.module_stacks[prev], (addr_id, pass_num)])
        self.stack_id = sid
        return prev

    # ------------------------------------------------------------------ teardown
    def strip_tags(self) -> None:
        for r in self.tagged:
            t = r()
            if t is not None:
                try:
                    delattr(t, TAG)
                except AttributeError:
                    pass
        for t in self.buffer_tensors:
            try:
                delattr(t, TAG)
            except AttributeError:
                pass
        for t in self.saved.values():
            if hasattr(t, TAG):
                delattr(t, TAG)
        self.tagged.clear()
