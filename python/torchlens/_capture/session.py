"""One capture session: the records of a single forward pass and everything needed to undo it."""

from __future__ import annotations

import os
import sys
import warnings
import weakref
from array import array
from types import MethodType
from typing import Any

import torch
from torch import Tensor
from torch.nn import Parameter

from .._data import (
    F_FUNC,
    F_KIND,
    KIND_BUFFER,
    KIND_INPUT,
    KIND_OP,
    KWARG_PARENTS,
    NO_STR,
    NO_TOKENS,
    OUT_SINGLE,
    PARENT_LIMITS,
    ParentRef,
)
from . import alias, hot
from .captured import copy_arg as _copy_arg
from .captured import identity, prune_versions
from .captured import rng_state as _rng_state
from .classify import make_call
from .opstate import OpState
from .opstate import any_autocast as _any_autocast
from .postfunc import save_post
from .strings import intern
from .tokens import HASH_MEMO
from .tokens import SCALARS as _SCALARS
from .tokens import stable_hash as _stable_hash
from .tokens import tok as _tok

TAG = hot.TAG
_PARENT_LIMITS = {intern(name): n for name, n in PARENT_LIMITS.items()}
_KWARG_PARENTS = {intern(name): names for name, names in KWARG_PARENTS.items()}
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
_getframe = sys._getframe
_is_tensor = hot.is_tensor_type
_BOOL = torch.bool
_PKG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Call-stack frames: id(code object) -> 0 keep, 1 skip (torchlens internals), 2 stop (a module call
# boundary). Keyed by id because hashing a code object is slow; `_code_keep` pins the ids.
_code_class: dict[int, int] = {}
_code_keep: list[Any] = []
_STOP_NAMES = frozenset({"_call_impl", "_wrapped_call_impl"})


def _classify(co: Any) -> int:
    fn = co.co_filename
    inside = fn.startswith(_PKG_DIR)
    if co.co_name in _STOP_NAMES or (inside and co.co_name == "__call__" and fn.endswith("wrap.py")):
        c = 2
    elif inside:
        c = 1
    else:
        c = 0
    _code_class[id(co)] = c
    _code_keep.append(co)
    return c


class Session:
    """Records one forward pass. Created and torn down by `capture.run_capture`."""

    def __init__(
        self,
        save: str | frozenset[int] | None,
        detach: bool = False,
        copy_all: bool = False,
        save_args: bool = False,
        save_rng: bool = False,
        postfunc: Any = None,
        save_raw: bool = True,
        grad_hook: Any = None,
        train_mode: bool = False,
    ) -> None:
        self.records: list[tuple] = []
        # Parallel per-node arrays (not part of the record schema shared with the core):
        # call-site id (into `sites`), argument tokens (for func_config), wall time of the call.
        self.site_ids = array("q")
        self.sites: list[tuple] = [()]
        self._site_index: dict[tuple, int] = {(): 0}
        self.stack_sites: list[int] = [0]
        self.stack_lasti: list[int] = [-1]  # per stack entry: instruction of the module call (-1: none)
        self.stack_parent: list[int] = [0]
        self.toks: list[tuple] = []
        self.op_times = array("d")
        self._dt = 0.0
        self.func_args: dict[int, tuple] = {}
        self.func_rng: dict[int, Any] = {}
        self.opstate = OpState()  # autograd-saved bytes and autocast state per op
        self._opstate_always = self.opstate.always
        self.buffer_nid: dict[int, int] = {}
        self.save_args = save_args
        self.save_rng = save_rng
        self.postfunc = postfunc
        self.save_raw = save_raw
        self.train_mode = train_mode
        # Gradient capture (`log/gradients.py`): called with each logged tensor that requires grad.
        self.grad_hook = grad_hook
        self.transformed: dict[int, Any] = {}
        if save_args or save_rng:
            self.call = self._call_slow  # type: ignore[method-assign]
        if postfunc is not None:
            self._save = MethodType(save_post, self)  # type: ignore[method-assign]
        # Per node: an id into `metas`, the interned (shape, dtype, grad_fn class name) triples.
        self.meta_ids = array("q")
        self.metas: list[tuple[tuple[int, ...], Any, str]] = []
        self._meta_index: dict[Any, int] = {}
        self.saved: dict[int, Tensor] = {}
        self.copy_all = copy_all
        self.by_root: dict[int, list[int]] = {}
        self.ref_versions: dict[int, int] = {}
        # Written storage -> the in-place writes into it, as (node id, geometry) (see `alias.py`).
        self.writes: dict[int, list] = {}
        self.save_all = save == "all"
        self.save_set: frozenset[int] | None = save if isinstance(save, frozenset) else None
        self.detach = detach
        self.ncalls = 0
        self.stack_id = 0
        self.module_stacks: list[list[tuple[int, int]]] = [[]]
        self.module_exits: list[tuple[int, int, int]] = []
        self.param_ids: dict[int, int] = {}
        self.module_index: dict[int, int] = {}
        self.prepared: Any = None
        self.params: list[tuple[str, Parameter]] = []
        self.buffer_roles: list[int] = []
        self.buffer_tensors: list[Tensor] = []
        self.pending_buffers = 0
        self.transform_warned = False
        self.tagged: list[Any] = []
        self.outputs: list[tuple[int, int, int]] = []
        self.output_tensors: list[Tensor] = []
        self.bool_events: list[tuple] = []  # see `note_bool`
        # Streaming (`_io.StreamSink`): called with each saved tensor; its `keep` says whether the
        # tensor also stays in `saved`.
        self.sink: Any = None

    # ------------------------------------------------------------------ hot path
    # Which tensors of a call become nodes: the rule shared with fastlog (classify.py).
    call = make_call(TAG, timed=True)

    def _buffers_in(self, items: Any) -> None:
        for a in items:
            ta = _type(a)
            if ta is Tensor or ta is Parameter or _is_tensor(ta):
                tg = _getattr(a, TAG, None)
                if tg is not None and tg < 0:
                    self._log_buffer(a, tg)
            elif ta is list or ta is tuple:
                self._buffers_in(a)

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
            elif ta not in _SCALARS and _is_tensor(ta):
                tg = _getattr(a, TAG, None)
                if tg is not None:
                    if tg < 0:
                        tg = self._log_buffer(a, tg)
                    parents.append(tg)

    def _log(
        self,
        t: Tensor,
        fid: int,
        tid: int,
        out_index: int,
        args: tuple,
        kwargs: dict,
        bottom: bool,
        defer: bool = False,
        depth: int = 3,
    ) -> int:
        parents: list[int] = []
        params: list[int] = []
        toks: list[Any] = []
        nested: list[int] | None = None  # parents inside list/tuple arguments come after the direct ones (2.15)
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
                toks.append(None)
            elif ta in _SCALARS:
                toks.append(a)
            else:
                if ta is tuple or ta is list or _is_tensor(ta):
                    if nested is None:
                        nested = []
                    self._scan((a,), nested, params)
                toks.append(_tok(a))
        if nested:
            parents += nested
        limit = _PARENT_LIMITS.get(fid)
        if limit is not None:  # only the leading arguments can be parents (`_data.PARENT_LIMITS`)
            parents = []
            self._scan(args[:limit], parents, [])
        if kwargs:
            # As in 2.15 a tensor or parameter passed by keyword is no parent and no parameter of the
            # op (`attn_mask=`, `weight=`), except for the few of `_data.KWARG_PARENTS`.
            names = _KWARG_PARENTS.get(fid)
            if names is not None:
                self._scan([kwargs[k] for k in names if k in kwargs], parents, [])
            tk = (tuple(toks), tuple([(k, _tok(v)) for k, v in kwargs.items()]))
        else:
            tk = (tuple(toks), ())
        self.toks.append(tk)
        self.op_times.append(self._dt)
        if params:
            arg_hash = 0
        else:  # the memo lookup inline (a hit per op; `stable_hash` computes a miss)
            arg_hash = HASH_MEMO.get(tk)
            if arg_hash is None:
                arg_hash = _stable_hash(tk)
        # Call site: the frames between the op and the nearest module call, interned as one id.
        f = _getframe(depth)
        co = f.f_code
        c = _code_class.get(id(co))
        if c is None:
            c = _classify(co)
        if c == 0:
            # Common case: the user frame calling the op, plus its caller unless that is a module call.
            # Sites are keyed by instruction offset: `f_lasti` is a field read, while `f_lineno` walks
            # the line table (microseconds late in a long forward), so lines are read once per site.
            f2 = f.f_back
            co2 = f2.f_code
            c = _code_class.get(id(co2))
            if c is None:
                c = _classify(co2)
            if c:
                key = (id(co), f.f_lasti)
                sid = self._site_index.get(key)
                if sid is None:
                    sid = self._site_index[key] = _len(self.sites)
                    self.sites.append(((co, f.f_lineno),))
            else:
                key = (id(co), f.f_lasti, id(co2), f2.f_lasti)
                sid = self._site_index.get(key)
                if sid is None:
                    sid = self._site_index[key] = _len(self.sites)
                    self.sites.append(((co, f.f_lineno), (co2, f2.f_lineno)))
        else:
            chain = self._walk_rest((), f)
            key = tuple([(id(a), b) for a, b in chain])
            sid = self._site_index.get(key)
            if sid is None:
                sid = self._site_index[key] = _len(self.sites)
                self.sites.append(chain)
        self.site_ids.append(sid)
        nid = _len(self.records)
        self.records.append(
            (KIND_OP, fid, tid, arg_hash, out_index, self.stack_id, tuple(params), tuple(parents), NO_STR)
        )
        # `grad_fn` is read once per op: each read builds a Python object for the node.
        gf = t.grad_fn
        # Most ops need no per-op state (no grad_fn, no autocast region): skip the call.
        if gf is not None or self._opstate_always or _any_autocast():
            self.opstate.note(gf, nid)
        if not defer:
            self._tag_and_meta(t, nid, gf)
        return nid

    def _log_multi(self, items: list, fid: int, tid: int, args: tuple, kwargs: dict, bottom: bool) -> None:
        """Several results of one call: every record reads the arguments' tags before any result is tagged
        (a result can be an argument itself, e.g. `broadcast_tensors` hands back a tensor it did not expand)."""
        nids = [self._log(o, fid, tid, i, args, kwargs, bottom, True, 4) for i, o in items]
        for (_, o), nid in zip(items, nids, strict=True):
            self._tag_and_meta(o, nid, o.grad_fn)

    def _log_inplace(
        self, t: Tensor, fid: int, tid: int, out_index: int, args: tuple, kwargs: dict, bottom: bool
    ) -> None:
        """`t` (an argument) was changed in place: it becomes a new node, and its storage is marked written so
        that an older node sharing it is known to no longer hold the value the storage now has."""
        nid = self._log(t, fid, tid, out_index, args, kwargs, bottom, True, 4)
        alias.note_write(self.writes, t, nid)
        self._tag_and_meta(t, nid, t.grad_fn)

    def _tag_and_meta(self, t: Tensor, nid: int, gf: Any) -> None:
        if _getattr(t, TAG, None) is None:
            self.tagged.append(weakref.ref(t))
        _setattr(t, TAG, nid)
        key = (t.shape, t.dtype, _type(gf))
        mid = self._meta_index.get(key)
        if mid is None:
            mid = self._meta_index[key] = _len(self.metas)
            self.metas.append((tuple(key[0]), key[1], key[2].__name__))
        self.meta_ids.append(mid)
        gh = self.grad_hook
        if gh is not None and t.requires_grad:
            gh(t, nid)
        if self.save_all or (self.save_set is not None and nid in self.save_set):
            self._save(t, nid)

    def _save(self, t: Tensor, nid: int) -> None:
        """Keep the op's output itself instead of a copy, until something could change it.

        Copying every activation costs more than the forward for large models (memory bandwidth
        and page faults). Outputs are kept by reference; an intercepted in-place op first swaps in
        a copy of every saved tensor sharing its storage, and `versions_intact()` verifies at the
        end that nothing else wrote to them (the caller re-runs with copies if something did).
        """
        sink = self.sink
        if sink is not None:
            sink(self, t, nid)  # copies the bytes now, so later in-place ops cannot change them
            if not sink.keep:
                return
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

    def note_transform(self) -> None:
        if not self.transform_warned:
            self.transform_warned = True
            warnings.warn(
                "torchlens detected a torch.func transform (vmap/grad/jacrev/jacfwd/...) during this forward "
                "pass. Operations that run inside the transform are not logged; their results enter the graph "
                "as tensors without parents.",
                UserWarning,
                stacklevel=4,
            )

    def note_bool(self, t: Tensor, value: bool) -> None:
        """`Tensor.__bool__` on a logged 0-d bool tensor: (node, value, caller code, instruction, line)."""
        tg = _getattr(t, TAG, None)
        if tg is None or tg < 0 or t.dtype is not _BOOL or t.ndim != 0:
            return
        f = _getframe(2)  # 0 note_bool, 1 the __bool__ hook, 2 the code that consumed the bool
        self.bool_events.append((tg, bool(value), f.f_code, f.f_lasti, f.f_lineno))

    # ------------------------------------------------------------------ sources
    def log_input(self, t: Tensor, role: str) -> None:
        nid = _len(self.records)
        # Fingerprint: shape and dtype only (spec §6.1), so that inputs feeding the same parameter op
        # can merge into one multi-pass input layer, as in 2.15 (`input_1:1`, `input_1:2`).
        h = _stable_hash((tuple(t.shape), str(t.dtype)))
        self.records.append((KIND_INPUT, _FUNC_NONE, _TYPE_INPUT, h, OUT_SINGLE, 0, (), (), intern(role)))
        self._source_extras()
        self._tag_and_meta(t, nid, t.grad_fn)

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
        self.records.append(
            (KIND_BUFFER, _FUNC_NONE, _TYPE_BUFFER, 0, OUT_SINGLE, self.stack_id, (), (), self.buffer_roles[k])
        )
        self.buffer_nid[k] = nid
        self._source_extras()
        if self.save_rng:
            self.func_rng[nid] = _rng_state()
        copy_all = self.copy_all
        self.copy_all = True  # buffers are model state that kernels update in place (BatchNorm stats)
        try:
            self._tag_and_meta(t, nid, t.grad_fn)
        finally:
            self.copy_all = copy_all
        return nid

    def log_identity(self, t: Tensor) -> Tensor:
        """Give a module output that is one of its inputs its own node (spec §7.4)."""
        alias = _raw_view_as(t, t)
        self._dt = 0.0
        self._log(alias, _FUNC_IDENTITY, _TYPE_IDENTITY, OUT_SINGLE, (t,), {}, True)
        if self.save_args:  # the value the module handed back, which its node lacks if it went stale
            self.func_args[_len(self.records) - 1] = (identity, (_copy_arg(t, []),), {})
        return alias

    def add_output(self, t: Tensor, role: str) -> None:
        tg = _getattr(t, TAG, None)
        if tg is None or tg < 0:
            return
        h = _stable_hash((tuple(t.shape), str(t.dtype)))
        self.outputs.append((tg, intern(role), h))
        self.output_tensors.append(t)
        streamed = getattr(self.sink, "streamed", None)  # a bundle sink knows what it wrote
        if (tg in self.saved or tg in self.transformed or (streamed and streamed(tg))) and alias.output_value(
            t, alias.stale(self.writes, t, tg), self.saved.get(tg)
        ):
            self._keep_output(t, _len(self.records) + _len(self.outputs) - 1)

    def _keep_output(self, t: Tensor, nid: int) -> None:
        """An output node's own value: the returned tensor as the caller got it, when its producer's saved
        value is older (spec §8.1: an output's activation is a copy of the returned tensor)."""
        c = _raw_clone(t)
        if self.detach:
            c = _raw_detach(c)
        tr = None
        if self.postfunc is not None:
            with hot.paused():
                tr = self.postfunc(c)
        stream_own = getattr(self.sink, "stream_output", None)
        if stream_own is not None and not self.sink.keep:  # nothing kept in memory: straight to the bundle
            stream_own(self, c if self.save_raw else None, tr, nid)
            return
        if self.postfunc is not None:
            self.transformed[nid] = tr
            if not self.save_raw:
                return
        self.saved[nid] = c

    # ------------------------------------------------------------------ modules
    def _walk_rest(self, key: tuple, f: Any) -> tuple:
        """Continue a call-site walk from frame `f` up to the nearest module-call boundary."""
        chain = [key] if key else []
        n = 0
        while f is not None and n < 40:
            co = f.f_code
            c = _code_class.get(id(co))
            if c is None:
                c = _classify(co)
            if c == 2:
                break
            if c == 0:
                chain.append((co, f.f_lineno))
            f = f.f_back
            n += 1
        return tuple(chain)

    def _source_extras(self) -> None:
        self.toks.append(NO_TOKENS)
        self.op_times.append(0.0)
        self.site_ids.append(0)

    # ------------------------------------------------------------------ slow paths (opt-in)
    def _call_slow(self, orig: Any, fid: int, tid: int, flags: int, args: tuple, kwargs: dict) -> Any:
        """`call` plus argument copies (save_function_args) and RNG snapshots (save_rng_states)."""
        records = self.records
        n_before = _len(records)
        cap = None
        refs: list[tuple[ParentRef, Tensor]] = []
        if self.save_args:
            limit = _PARENT_LIMITS.get(fid)
            cargs = (
                _copy_arg(args, refs)
                if limit is None
                else tuple(_copy_arg(a, refs if i < limit else None, 1) for i, a in enumerate(args))
            )
            names = _KWARG_PARENTS.get(fid, ())
            cap = (orig, cargs, {k: _copy_arg(v, refs if k in names else None, 1) for k, v in kwargs.items()})
        rng = _rng_state() if self.save_rng else None
        n_calls = self.ncalls
        out = Session.call(self, orig, fid, tid, flags, args, kwargs)
        # A call that ran other wrapped calls reads its parents' tags after them (an inner call may
        # have re-tagged an argument): each captured argument names the node the record names.
        inner = self.ncalls != n_calls + 1
        own = [
            nid
            for nid in range(n_before, _len(records))
            if records[nid][F_KIND] == KIND_OP and records[nid][F_FUNC] == fid and nid not in self.func_args
        ]
        for r, t in refs:
            if inner:
                tg = _getattr(t, TAG, None)
                # (not this call's own node: an in-place call re-tags its first argument)
                if tg is not None and tg >= 0 and tg not in own:
                    r.nid = tg
            if r.nid < 0:
                r.nid = self.buffer_nid.get(-r.nid - 1, -1)
        for nid in own:
            self.func_args[nid] = cap
            if rng is not None:
                self.func_rng[nid] = rng
        return out

    def prune_arg_versions(self) -> None:
        """Drop each captured parent value that equals the parent's saved activation (keep the differing ones)."""
        prune_versions(self.saved, self.func_args)

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
