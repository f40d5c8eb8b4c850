"""The fastlog capture session: same wrapper protocol as `_capture.session.Session`, no graph.

Every wrapped torch callable calls `call(orig, fid, tid, flags, args, kwargs)`; module calls come
through `prepared.call_module(...)` (the session is its own `prepared`). Per event the session
keeps a handful of counters and one event tuple; a `RecordContext` is built only when a predicate
is consulted, and tensors are copied only for kept events.
"""

from __future__ import annotations

import time
import traceback
import weakref
from collections import deque
from typing import Any

import torch
from torch import Tensor

from .._capture import hot
from .._capture.classify import make_call
from .._capture.modules import plan_for
from .._capture.strings import STRINGS, intern
from ._types import (
    _RESOLVED,
    DROP,
    CaptureSpec,
    PredicateError,
    PredicateFailure,
    RecordContext,
)

TAG = "_tl_fastlog"
_type = type
_getattr = getattr
_setattr = setattr
_raw_clone = hot.raw_clone
_raw_detach = hot.raw_detach
_raw_to = torch._C.TensorBase.to
_perf = time.perf_counter
_fast_ctx = RecordContext._fast
_FLOATING_OK = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128)


class Decider:
    """Turns predicate results into `CaptureSpec`s (spec §10.5)."""

    def __init__(
        self, keep_op: Any, keep_module: Any, default_op: Any, default_module: Any, fail_fast: bool, max_failures: int
    ) -> None:
        self.keep_op = keep_op
        self.keep_module = keep_module
        self.default_op = _as_spec(default_op)
        self.default_module = _as_spec(default_module)
        self.true_op = _true_spec(default_op)
        self.true_module = _true_spec(default_module)
        self.fail_fast = fail_fast
        self.max_failures = max_failures
        self.failures: list[PredicateFailure] = []
        self.overflow = 0
        self.total_failures = 0
        self.last_error = ""

    def decide(self, pred: Any, ctx: RecordContext, default: CaptureSpec, true_spec: CaptureSpec) -> CaptureSpec:
        prev = hot._session
        hot._session = None  # predicates run with logging paused
        try:
            r = pred(ctx)
        except Exception as e:
            hot._session = prev
            return self._failed(ctx, e)
        finally:
            hot._session = prev
        if r is None:
            return default
        if r is True:
            return true_spec
        if r is False:
            return DROP
        if isinstance(r, CaptureSpec):
            return r
        raise PredicateError("predicate must return bool, CaptureSpec, or None", ctx=ctx.frozen(False), result=r)

    def _failed(self, ctx: RecordContext, e: BaseException) -> CaptureSpec:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        last = (tb.strip().splitlines() or [repr(e)])[-1]
        self.total_failures += 1
        self.last_error = last
        if self.fail_fast:
            fail = PredicateFailure(ctx.event_index, ctx.kind, ctx.label, tb)
            raise PredicateError(
                f"fastlog predicate failed during recording: {last}",
                ctx=ctx.frozen(False),
                failures=(fail,),
                total_count=1,
            ) from e
        if len(self.failures) < self.max_failures:
            self.failures.append(PredicateFailure(ctx.event_index, ctx.kind, ctx.label, tb))
        else:
            self.overflow += 1
        return DROP


def _as_spec(v: Any) -> CaptureSpec:
    if isinstance(v, CaptureSpec):
        return v
    return CaptureSpec() if v else DROP


def _true_spec(default: Any) -> CaptureSpec:
    if isinstance(default, CaptureSpec):
        return CaptureSpec(True, True, default.keep_grad, default.device, default.dtype)
    return CaptureSpec()


class FastSession:
    """One fastlog pass. `sink(ctx, spec, tensor)` receives every kept event."""

    def __init__(
        self,
        model: torch.nn.Module,
        decider: Decider,
        sink: Any,
        history_size: int,
        include_sources: bool,
        pass_index: int,
        sample_id: Any,
        keep_all_contexts: Any = None,
    ) -> None:
        plan = plan_for(model)
        self.plan = plan
        self.model = model
        self.module_index = plan.module_index
        self.prepared = self
        self.addresses = [STRINGS[a] for a in plan.addr_ids]
        self.module_types = plan.module_types
        self.pass_counts = [0] * len(plan.modules)
        self.decider = decider
        self.keep_op = decider.keep_op
        self.keep_module = decider.keep_module
        self.need_module_ctx = decider.keep_module is not None
        self.module_default = decider.default_module
        self.op_default = decider.default_op
        self.sink = sink
        self.hist: deque | None = deque(maxlen=history_size) if history_size > 0 else None
        self.include_sources = include_sources
        self.pass_index = pass_index
        self.sample_id = sample_id
        self.module_fast = not (
            self.need_module_ctx or keep_all_contexts is not None or self.module_default.save_metadata
        )
        self.keep_history = False  # stored contexts drop recent_events (predicates still see them)
        self.all_contexts = keep_all_contexts  # dry_run: list receiving (ctx, spec) for every event
        self.event_index = 0
        self.op_index = 0
        self.creation = 0
        self.ncalls = 0
        self.type_counts: dict[int, int] = {}
        self.label_of: list[str] = [""]  # creation order -> label, filled lazily
        self.label_parts: list[tuple[int, int]] = [(0, 0)]
        self.tagged: list[Any] = []
        self.pending_buffers: dict[int, tuple[Tensor, str]] = {}
        self.frames: tuple[tuple[str, str, int, int], ...] = ()  # ModuleStackFrame fields, as plain tuples
        self.env = (pass_index, sample_id, include_sources, self)
        self.t0 = _perf()
        # Kept RAM payloads are references to the op outputs themselves (copying every kept
        # activation costs as much as the forward's own memory traffic). Before an intercepted
        # in-place op touches a kept tensor's storage, its record gets a copy (copy-on-write);
        # `check_versions()` reports writes that bypassed the wrappers.
        self.by_root: dict[int, list[tuple[Any, int]]] = {}

    def note_bool(self, t: Tensor, value: bool) -> None:
        """`Tensor.__bool__` during a recording: fastlog attributes no conditionals."""

    # ------------------------------------------------------------------ setup
    def register_buffers(self) -> None:
        for container, key, address in self.plan.tensor_slots:
            try:
                val = container[key]
            except (KeyError, IndexError):
                continue
            if isinstance(val, Tensor) and not isinstance(val, torch.nn.Parameter):
                self.pending_buffers[id(val)] = (val, address)

    # ------------------------------------------------------------------ labels of parents
    def parent_labels(self, args: tuple, kwargs: dict | None) -> tuple[str, ...]:
        out: list[str] = []
        self._collect(args, out, 0)
        if kwargs:
            self._collect(tuple(kwargs.values()), out, 0)
        return tuple(out)

    def _collect(self, items: Any, out: list[str], depth: int) -> None:
        for a in items:
            if isinstance(a, Tensor):
                c = _getattr(a, TAG, None)
                if c is not None:
                    lt, n = self.label_parts[c]
                    out.append(f"{STRINGS[lt]}_{n}_{c}_raw")
            elif (type(a) is tuple or type(a) is list) and depth < 4:
                self._collect(a, out, depth + 1)

    # ------------------------------------------------------------------ hot path
    # Which tensors of a call become events: the rule shared with log_forward_pass (classify.py).
    call = make_call(TAG, timed=False)

    def _tag(self, t: Tensor, tid: int) -> int:
        c = self.creation = self.creation + 1
        n = self.type_counts.get(tid, 0) + 1
        self.type_counts[tid] = n
        self.label_parts.append((tid, n))
        if _getattr(t, TAG, None) is None:
            self.tagged.append(weakref.ref(t))
        _setattr(t, TAG, c)
        return n

    def _log(self, t: Tensor, fid: int, tid: int, out_index: int, args: tuple, kwargs: dict, bottom: bool) -> None:
        n = self._tag(t, tid)
        ei = self.event_index = self.event_index + 1
        oi = self.op_index = self.op_index + 1
        ev = (
            "op",
            ei,
            oi,
            STRINGS[tid],
            n,
            self.creation,
            STRINGS[fid],
            self.frames,
            t,
            out_index if out_index >= 0 else None,
            bottom,
            _perf() - self.t0,
            args,
            kwargs,
            None,
            None,
        )
        self._event(ev, t, self.keep_op, self.op_default, self.decider.true_op)

    def _log_multi(self, items: list, fid: int, tid: int, args: tuple, kwargs: dict, bottom: bool) -> None:
        if any(_getattr(o, TAG, None) is not None for _, o in items):
            # A result that is one of the arguments is about to be re-tagged: read the parents first.
            labels = self.parent_labels(args, kwargs)
            for i, o in items:
                self._log(o, fid, tid, i, labels, _RESOLVED, bottom)
        else:
            for i, o in items:
                self._log(o, fid, tid, i, args, kwargs, bottom)

    def _log_inplace(
        self, t: Tensor, fid: int, tid: int, out_index: int, args: tuple, kwargs: dict, bottom: bool
    ) -> None:
        # Parent labels are read lazily from the argument tensors' tags; `t` is about to be re-tagged.
        self._log(t, fid, tid, out_index, self.parent_labels(args, kwargs), _RESOLVED, bottom)

    def _event(self, ev: tuple, t: Tensor | None, pred: Any, default: CaptureSpec, true_spec: CaptureSpec) -> None:
        hist = self.hist
        ctx = None
        if pred is not None:
            ctx = _fast_ctx(ev, hist if hist is not None else (), self.env)
            spec = self.decider.decide(pred, ctx, default, true_spec)
        else:
            spec = default
        if self.all_contexts is not None:
            if ctx is None:
                ctx = _fast_ctx(ev, hist if hist is not None else (), self.env)
            self.all_contexts.append((ctx.frozen(), spec))
        elif spec.save_activation or spec.save_metadata:
            if ctx is None:
                ctx = _fast_ctx(ev, hist if hist is not None else (), self.env)
            prev = hot._session
            hot._session = None
            try:
                self.sink(ctx.frozen(self.keep_history), spec, t)
            finally:
                hot._session = prev
        if hist is not None:
            hist.append(ev)

    # ------------------------------------------------------------------ sources
    def log_input(self, t: Tensor, address: str) -> None:
        self._source_event("input", t, address)

    def _buffers_in(self, items: Any) -> None:
        for a in items:
            ta = _type(a)
            if ta is Tensor or hot.is_tensor_type(ta):  # not isinstance: ~1 us on a non-tensor
                entry = self.pending_buffers.pop(id(a), None)
                if entry is not None and entry[0] is a:
                    self._source_event("buffer", a, entry[1])
            elif ta is list or ta is tuple:
                self._buffers_in(a)

    def _source_event(self, kind: str, t: Tensor, address: str) -> None:
        """An input or buffer tensor entering the pass (kept only with include_source_events)."""
        n = self._tag(t, intern(kind))
        ei = self.event_index = self.event_index + 1
        ev = (
            kind,
            ei,
            None,
            kind,
            n,
            self.creation,
            None,
            self.frames,
            t,
            None,
            None,
            _perf() - self.t0,
            None,
            None,
            address,
            None,
        )
        if self.include_sources:
            self._event(ev, t, self.keep_op, self.op_default, self.decider.true_op)
        else:
            self._event(ev, t, None, DROP, DROP)

    # ------------------------------------------------------------------ modules
    def _module_event(self, kind: str, address: str, k: int) -> None:
        ei = self.event_index = self.event_index + 1
        ev = (
            kind,
            ei,
            None,
            None,
            k,
            None,
            None,
            self.frames,
            None,
            None,
            None,
            _perf() - self.t0,
            None,
            None,
            address,
            None,
        )
        if self.need_module_ctx or self.all_contexts is not None or self.module_default.save_metadata:
            self._event(ev, None, self.keep_module, self.module_default, self.decider.true_module)
        elif self.hist is not None:
            self.hist.append(ev)

    def enter_root(self) -> None:
        m = self.model
        self.frames = (("", type(m).__name__, id(m), 1),)
        self._module_event("module_enter", "", 1)

    def exit_root(self) -> None:
        self._module_event("module_exit", "", 1)
        self.frames = ()

    def call_module(self, index: int, call: Any, mod: torch.nn.Module, args: tuple, kwargs: dict) -> Any:
        k = self.pass_counts[index] + 1
        self.pass_counts[index] = k
        addr = self.addresses[index]
        prev = self.frames
        frames = self.frames = (*prev, (addr, self.module_types[index], id(mod), k))
        if self.module_fast:
            # No module predicate or default: module events only feed the bounded history.
            hist = self.hist
            ei = self.event_index = self.event_index + 1
            if hist is not None:
                hist.append(
                    ("module_enter", ei, None, None, k, None, None, frames, None, None, None, _perf() - self.t0,
                     None, None, addr, None)
                )  # fmt: skip
            try:
                out = call(*args, **kwargs)
            finally:
                self.frames = prev
            ei = self.event_index = self.event_index + 1
            if hist is not None:
                hist.append(
                    ("module_exit", ei, None, None, k, None, None, frames, None, None, None, _perf() - self.t0,
                     None, None, addr, None)
                )  # fmt: skip
            return out
        try:
            self._module_event("module_enter", addr, k)
            out = call(*args, **kwargs)
            self._module_event("module_exit", addr, k)
        finally:
            self.frames = prev
        return out

    # ------------------------------------------------------------------ copy-on-write of kept payloads
    def track(self, record: Any, t: Tensor) -> None:
        base = t._base
        root = t if base is None else base
        self.by_root.setdefault(id(root), []).append((record, t._version))

    def protect(self, t: Tensor) -> None:
        base = t._base
        entries = self.by_root.pop(id(t if base is None else base), None)
        if entries is None:
            return
        for record, _ in entries:
            v = record.ram_payload
            if v is not None:
                object.__setattr__(record, "ram_payload", _raw_clone(v))

    def check_versions(self) -> list[str]:
        """Labels of kept references that changed after recording without passing a wrapper."""
        bad = []
        for entries in self.by_root.values():
            for record, ver in entries:
                v = record.ram_payload
                if v is not None and v._version != ver:
                    bad.append(record.ctx.label)
        self.by_root.clear()
        return bad

    # ------------------------------------------------------------------ teardown
    def strip_tags(self) -> None:
        for r in self.tagged:
            t = r()
            if t is not None:
                try:
                    delattr(t, TAG)
                except AttributeError:
                    pass
        self.tagged.clear()
        self.pending_buffers.clear()
        self.by_root.clear()
        self.sink = None
        self.env = None
        self.prepared = None  # break the self-reference so the pass's objects die without the cyclic GC
        if self.hist is not None:
            self.hist.clear()


def retained_copy(t: Tensor, spec: CaptureSpec, copy: bool = True) -> Tensor:
    """The tensor a kept event stores: detached unless keep_grad, dtype/device applied, cloned if `copy`."""
    if spec.keep_grad:
        if t.dtype not in _FLOATING_OK:
            raise PredicateError(f"keep_grad=True is invalid for {t.dtype} tensors")
        src = t
    else:
        src = _raw_detach(t)
    if spec.dtype is not None or spec.device is not None:
        kw: dict[str, Any] = {}
        if spec.dtype is not None:
            kw["dtype"] = spec.dtype
        if spec.device is not None:
            kw["device"] = spec.device
        c = _raw_to(src, **kw)
        if c is src:
            c = _raw_clone(src)
        return c
    return _raw_clone(src) if copy else src
