"""First-class backward capture (spec §14-15, mechanism 2): `log_backward` / `recording_backward`.

Before a backward call runs, the autograd graph reachable from `loss.grad_fn` is walked
breadth-first (`walk`); the Rust core (`_core.backward_graph`) matches each new grad_fn to the
forward layer that produced it (by the `id(grad_fn)` the capture recorded, `CaptureData.grad_fn_ids`)
and labels it. A grad_fn lives as long as its graph, and its `id()` with it; a grad_fn of a freed
graph (a temporary loss) may leave its id to a new one, so each walked grad_fn is also marked in its
`metadata` dict with the log's token (a string: no reference to the log), and an id whose grad_fn
lacks the mark is a new grad_fn. A pre-hook and a hook on every grad_fn of the walk then record one `GradFnPassLog`
per grad_fn the call runs through; the hooks hold only a weak reference to the log and are removed
when the call returns, so a later plain `.backward()` records nothing and a graph that outlives
its log keeps nothing alive.

`BackwardMethods` is mixed into `ModelLog`: the `Backward:` fields of spec §2.5 and the two methods.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .._native import core as _core
from . import gradients
from .grad_fn_log import GradFnAccessor, GradFnLog, GradFnPassLog

if TYPE_CHECKING:
    from .model_log import ModelLog

_NO_LOSS = "log_backward requires a loss tensor with a grad_fn."
_MARK = "torchlens_backward_logs"  # key of the grad_fn `metadata` entry: the tokens of the logs that saw it
_BackwardFn = Any  # an autograd Node (torch.autograd.graph.Node); not weak-referenceable


class BackwardState:
    """Everything one log recorded about backward calls (created by the first `log_backward`)."""

    def __init__(self) -> None:
        self.order: list[GradFnLog] = []  # every GradFnLog, in discovery order
        self.logs: OrderedDict[int, GradFnLog] = OrderedDict()  # id -> the GradFnLog of the live grad_fn
        self.token = uuid.uuid4().hex
        self.by_position: dict[int, GradFnLog] = {}
        self.root_id: int | None = None
        self.num_passes = 0
        self.peak_memory_bytes = 0
        self.memory_backend = "unknown"
        # Set by the first backward call: `grad_fn_object` no longer hands out the forward grad_fns.
        self.released = False
        self.started: dict[int, float] = {}  # grad_fn id -> when its pre-hook ran (during a call)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["started"] = {}
        return state


_EMPTY = BackwardState()
_active = threading.local()  # `depth` > 0 while a recorded backward call runs in this thread


def state_of(log: ModelLog) -> BackwardState:
    """The log's backward record (a shared empty one if nothing was recorded yet)."""
    return log.__dict__.get("_backward") or _EMPTY


def _state_for_writing(log: ModelLog) -> BackwardState:
    st = log.__dict__.get("_backward")
    if st is None:
        st = log.__dict__["_backward"] = BackwardState()
    return st


# ------------------------------------------------------------------ per-entry fields
def grad_fn_id(log: ModelLog, pos: int) -> int | None:
    """`id()` of the grad_fn of an op's output (an output node: its producer's), recorded at capture;
    None for inputs and buffers, and in a log loaded from a bundle."""
    if log._loaded_from_bundle or not (log._is_op(pos) or log._is_output(pos)):
        return None
    return log._data.grad_fn_ids.get(log._record_index(pos))


def grad_fn_object(log: ModelLog, pos: int) -> Any:
    """The live forward grad_fn, reached through the saved activation; None once a backward ran."""
    if state_of(log).released:
        return None
    gid = grad_fn_id(log, pos)
    t = log._activation(pos)
    if gid is None or not isinstance(t, torch.Tensor) or t.grad_fn is None:
        return None
    gf = t.grad_fn
    if id(gf) == gid:
        return gf
    # A saved tensor copied before an in-place write: its grad_fn is the copy's, one step above.
    for nf, _ in gf.next_functions:
        if nf is not None and id(nf) == gid:
            return nf
    return None


def corresponding_grad_fn(log: ModelLog, pos: int) -> GradFnLog | None:
    return state_of(log).by_position.get(pos)


# ------------------------------------------------------------------ the walk
def walk(root: _BackwardFn) -> list[tuple[_BackwardFn, list[int]]]:
    """Every grad_fn reachable from `root`, breadth-first in discovery order, with its next ids
    (the `next_functions` that are not None, repeats kept)."""
    seen = {id(root)}
    order: list[_BackwardFn] = [root]
    out: list[tuple[_BackwardFn, list[int]]] = []
    i = 0
    while i < len(order):
        node = order[i]
        i += 1
        nexts: list[int] = []
        for nf, _ in node.next_functions:
            if nf is None:
                continue
            nexts.append(id(nf))
            if id(nf) not in seen:
                seen.add(id(nf))
                order.append(nf)
        out.append((node, nexts))
    return out


def _live_forward_ids(log: ModelLog) -> set[int]:
    """Ids of the grad_fns the log's saved activations keep alive (theirs and their ancestors').

    A recorded `id(grad_fn)` identifies the forward grad_fn only while it lives: once its graph is
    freed (activations not saved, or saved detached) a new grad_fn may take the same id, and
    matching it would pin a forward layer's numbers on an unrelated grad_fn.
    """
    stack = []
    for pos in log._positions():
        t = log._activation(pos)
        if isinstance(t, torch.Tensor) and t.grad_fn is not None:
            stack.append(t.grad_fn)
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.extend(nf for nf, _ in node.next_functions if nf is not None)
    return seen


def _forward_table(log: ModelLog) -> list[tuple[int, int, int, int]]:
    """`(grad_fn_id, position, layer_type_num, layer_total_num)` of the layers whose grad_fn is alive."""
    type_nums = log._col("layer_type_nums")
    total_nums = log._col("layer_total_nums")
    live = _live_forward_ids(log)
    table = []
    for pos in log._positions():
        gid = grad_fn_id(log, pos)
        if gid is not None and gid in live:
            table.append((gid, pos, type_nums[pos], total_nums[pos]))
    return table


def _is_custom(node: _BackwardFn) -> bool:
    """A grad_fn of a Python `torch.autograd.Function` (defined outside torch's C++ autograd)."""
    return isinstance(node, torch.autograd.function.BackwardCFunction)


def _seen(node: _BackwardFn, token: str) -> bool:
    try:
        return token in node.metadata.get(_MARK, ())
    except Exception:  # a grad_fn without metadata: trust its id
        return True


def _mark(node: _BackwardFn, token: str) -> None:
    try:
        node.metadata.setdefault(_MARK, set()).add(token)
    except Exception:
        pass


def _discover(log: ModelLog, st: BackwardState, found: list[tuple[_BackwardFn, list[int]]]) -> None:
    """Turn the grad_fns of a walk that the log has not seen into GradFnLogs (the core labels them)."""
    classes: dict[str, int] = {}
    nodes = []
    by_id = {}
    known = []
    for node, nexts in found:
        name = type(node).__name__
        nodes.append((id(node), classes.setdefault(name, len(classes)), nexts))
        by_id[id(node)] = node
        if id(node) in st.logs and _seen(node, st.token):
            known.append(id(node))
    rows = _core.backward_graph(list(classes), nodes, known, len(st.order), _forward_table(log))
    for gid, label, gtype, type_num, total_num, _intervening, position, nexts in rows:
        node = by_id[gid]
        g = GradFnLog(
            log,
            gid,
            type(node).__name__,
            type(node).__module__,
            _is_custom(node),
            label,
            gtype,
            type_num,
            total_num,
            position,
            nexts,
        )
        st.logs[gid] = g
        st.order.append(g)
        if position is not None:
            st.by_position[position] = g
    for node, _ in found:
        _mark(node, st.token)


def _keeps_tensors(log: ModelLog, g: GradFnLog) -> bool:
    """Whether a pass stores gradient tensors: matched grad_fns of layers `gradients_to_save` selects."""
    if g._position is None:
        return False
    store = getattr(log, "_grad_store", None)
    selected = None if store is None else store.selected
    return selected is None or log._node_ids[g._position] in selected


def _clones(grads: Any) -> tuple[torch.Tensor | None, ...]:
    with torch.no_grad():
        return tuple(g.detach().clone() if isinstance(g, torch.Tensor) else None for g in grads)


class _PreHook:
    """Notes when a grad_fn starts (holds the log weakly)."""

    __slots__ = ("log", "gid")

    def __init__(self, log: weakref.ReferenceType[ModelLog], gid: int) -> None:
        self.log = log
        self.gid = gid

    def __call__(self, grad_outputs: Any) -> None:
        log = self.log()
        if log is not None:
            state_of(log).started[self.gid] = time.time()


class _PassHook:
    """Stores one GradFnPassLog when a grad_fn finishes (holds the log weakly)."""

    __slots__ = ("log", "gid", "keep")

    def __init__(self, log: weakref.ReferenceType[ModelLog], gid: int, keep: bool) -> None:
        self.log = log
        self.gid = gid
        self.keep = keep

    def __call__(self, grad_inputs: Any, grad_outputs: Any) -> None:
        log = self.log()
        if log is None:
            return
        st = state_of(log)
        g = st.logs.get(self.gid)
        if g is None:
            return
        finished = time.time()
        n = len(g.passes) + 1
        ins, outs = (_clones(grad_inputs), _clones(grad_outputs)) if self.keep else (None, None)
        g.passes[n] = GradFnPassLog(n, ins, outs, st.started.pop(self.gid, finished), finished)


# ------------------------------------------------------------------ hook points for tensor-hook gradients
def _before_backward(log: ModelLog, loss: torch.Tensor) -> None:
    """Runs before each recorded backward call: a log made without `save_gradients` gets layer
    gradient hooks on its saved activations now (spec §14-15)."""
    gradients.hook_saved_activations(log)


def _after_backward(log: ModelLog) -> None:
    """Runs after each recorded backward call (hook point: finalizing tensor-hook gradients)."""
    store = log._grad_store
    if store is not None and store.sink is not None:  # gradients streamed to a bundle: commit it now
        store.sink.finalize(log)  # io/_grad_stream.py GradientStream.finalize


# ------------------------------------------------------------------ one recorded backward call
def _check_loss(loss: Any) -> None:
    if not isinstance(loss, torch.Tensor) or loss.grad_fn is None:
        raise ValueError(_NO_LOSS)


def run_recorded(log: ModelLog, loss: torch.Tensor, call: Callable[[], Any]) -> Any:
    """Walk the graph of `loss`, hook every grad_fn, run `call` (the backward), unhook."""
    _check_loss(loss)
    st = _state_for_writing(log)
    root = loss.grad_fn
    found = walk(root)
    _discover(log, st, found)
    if st.root_id is None:
        st.root_id = id(root)
    _before_backward(log, loss)
    ref = weakref.ref(log)
    handles = []
    try:
        for node, _ in found:
            g = st.logs[id(node)]
            handles.append(node.register_prehook(_PreHook(ref, id(node))))
            handles.append(node.register_hook(_PassHook(ref, id(node), _keeps_tensors(log, g))))
        device = loss.device
        cuda = device.type == "cuda"
        if cuda:
            start = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        _active.depth = getattr(_active, "depth", 0) + 1
        try:
            result = call()
        finally:
            _active.depth -= 1
        if cuda:
            st.peak_memory_bytes += max(0, torch.cuda.max_memory_allocated(device) - start)
        st.memory_backend = device.type
        st.num_passes += 1
    finally:
        for h in handles:
            h.remove()
        st.started.clear()
        st.released = True
    _after_backward(log)
    return result


def _stream_gradients(log: ModelLog, path: Any, keep: bool | None) -> None:
    from ..io._grad_stream import GradientStream  # facade

    gradients.hook_saved_activations(log)
    store = log._grad_store
    if store is not None and store.sink is not None:
        raise ValueError(
            "This log already streams its gradients to a bundle; call log_backward without save_gradients_to."
        )
    GradientStream(path, True if keep is None else bool(keep), with_activations=False).start(log, None)


class RecordingBackward:
    """`with model_log.recording_backward(): ... loss.backward() ...`: every `Tensor.backward` call
    in the block is recorded as if passed to `log_backward` (`torch.Tensor.backward` is patched for
    the block and restored when it exits, also on errors)."""

    def __init__(self, log: ModelLog) -> None:
        self._log = weakref.ref(log)
        self._saved: Any = None

    @property
    def model_log(self) -> ModelLog | None:
        """The log being recorded into (None once it was deleted)."""
        return self._log()

    def __enter__(self) -> RecordingBackward:
        original = torch.Tensor.backward
        ref = self._log

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            log = ref()
            if log is None or getattr(_active, "depth", 0):
                return original(tensor, *args, **kwargs)
            return run_recorded(log, tensor, lambda: original(tensor, *args, **kwargs))

        backward.__doc__ = original.__doc__
        backward.__wrapped__ = original  # type: ignore[attr-defined]
        self._saved = original
        torch.Tensor.backward = backward  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            torch.Tensor.backward = self._saved  # type: ignore[method-assign]
            self._saved = None


# ------------------------------------------------------------------ the ModelLog side
class BackwardMethods:
    """Mixed into `ModelLog`: the backward fields of spec §2.5 and `log_backward` / `recording_backward`."""

    @property
    def _backward_state(self) -> BackwardState:
        return state_of(self)  # type: ignore[arg-type]

    @property
    def has_backward_log(self) -> bool:
        return bool(self._backward_state.order)

    @property
    def grad_fn_logs(self) -> OrderedDict[int, GradFnLog]:
        """`id(grad_fn)` -> GradFnLog, in discovery order (an id a freed grad_fn left to a new one maps to
        the new one's GradFnLog; `grad_fns` lists both)."""
        st = self._backward_state
        return st.logs if st is not _EMPTY else OrderedDict()

    @property
    def grad_fn_order(self) -> list[int]:
        """The grad_fn ids in discovery order."""
        return [g.grad_fn_id for g in self._backward_state.order]

    @property
    def backward_root_grad_fn_id(self) -> int | None:
        """`id()` of the loss grad_fn of the first recorded backward call."""
        return self._backward_state.root_id

    @property
    def backward_num_passes(self) -> int:
        return self._backward_state.num_passes

    @property
    def backward_peak_memory_bytes(self) -> int:
        """Sum over the recorded calls of the CUDA allocator's peak above its level at the start (0 on CPU)."""
        return self._backward_state.peak_memory_bytes

    @property
    def backward_memory_backend(self) -> str:
        """Device type of the last recorded backward call (`"cuda"`, `"cpu"`, ...); `"unknown"` before one."""
        return self._backward_state.memory_backend

    @property
    def num_grad_fns(self) -> int:
        return len(self._backward_state.order)

    @property
    def num_intervening_grad_fns(self) -> int:
        return sum(g.is_intervening for g in self._backward_state.order)

    @property
    def grad_fns(self) -> GradFnAccessor:
        return GradFnAccessor(list(self._backward_state.order))

    def log_backward(
        self,
        loss: torch.Tensor,
        *,
        save_gradients_to: Any = None,
        keep_gradients_in_memory: bool | None = None,
        **backward_kwargs: Any,
    ) -> ModelLog:
        """Run `loss.backward(**backward_kwargs)` and record the backward graph (spec §14-15).

        Every grad_fn reachable from `loss.grad_fn` becomes a GradFnLog (`model_log.grad_fns`);
        each one the call runs through gets a GradFnPassLog. Calling it again (e.g. with
        `retain_graph=True` the first time) adds passes and any new grad_fns.

        Args:
            loss: A tensor with a `grad_fn` (usually computed from saved activations).
            save_gradients_to: A new bundle path: the layer gradients this call brings are written there
                as they arrive, and the bundle is committed when the call returns (docs/bundle-format.md).
            keep_gradients_in_memory: With `save_gradients_to`: keep the gradients in RAM too (default
                True); False leaves them to be read back from the bundle.
            **backward_kwargs: Passed to `Tensor.backward` (`gradient`, `retain_graph`, `inputs`, ...).

        Returns:
            This log.

        Raises:
            ValueError: `loss` is not a tensor with a grad_fn.
        """
        log: ModelLog = self  # type: ignore[assignment]
        _check_loss(loss)
        if save_gradients_to is not None:
            _stream_gradients(log, save_gradients_to, keep_gradients_in_memory)
        run_recorded(log, loss, lambda: loss.backward(**backward_kwargs))
        return log

    def recording_backward(self) -> RecordingBackward:
        """Context manager: record every `loss.backward()` called inside it (see `log_backward`)."""
        return RecordingBackward(self)  # type: ignore[arg-type]
