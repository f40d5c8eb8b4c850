"""Tensor-hook gradients (spec §14-15, mechanism 1): what a later `.backward()` sends to each layer.

During the capture every logged tensor that requires grad gets a `GradHook` (installed by the
session, `_capture/session.py`). The hook holds only a weak reference to the log's
`GradientStore`, so a log never keeps the autograd graph or the model alive, and a graph that
outlives its log calls hooks that do nothing. The store keeps, per node id, the detached clone of
the incoming gradient (and the `gradient_postfunc` result), in arrival order.
"""

from __future__ import annotations

import pickle
import weakref
from typing import TYPE_CHECKING, Any

import torch

from .._capture.hot import raw_clone as _clone
from .._capture.hot import raw_detach as _detach
from .._errors import TorchLensPostfuncError

if TYPE_CHECKING:
    from .model_log import ModelLog


class GradHook:
    """The tensor hook of one logged tensor: forwards its gradient to the store, returns nothing."""

    __slots__ = ("store", "nid")

    def __init__(self, store: weakref.ReferenceType[GradientStore], nid: int) -> None:
        self.store = store
        self.nid = nid

    def __call__(self, grad: torch.Tensor) -> None:
        store = self.store()
        if store is not None:
            store.receive(self.nid, grad)


class GradientStore:
    """Gradients of one log, by node id. Created before the capture, attached to the log after it.

    `selected` is the set of node ids whose gradient is kept (None: all); `outputs_of` maps a
    producer's node id to its output nodes, which receive the producer's gradient (spec §14-15).
    """

    def __init__(self, postfunc: Any = None, save_raw: bool = True) -> None:
        self.postfunc = postfunc
        self.save_raw = save_raw
        self.grads: dict[int, torch.Tensor] = {}
        self.transformed: dict[int, Any] = {}
        self.order: list[int] = []
        self.seen: set[int] = set()
        self.selected: frozenset[int] | None = None
        self.outputs_of: dict[int, list[int]] = {}
        # Streams each kept gradient to a bundle (`save_gradients_to`, io/_grad_stream.py): called
        # as `sink(nid, raw or None, transformed or None)`; `sink.finalize(log)` commits the bundle.
        self.sink: Any = None
        self._log: weakref.ReferenceType[ModelLog] | None = None
        self._self_ref = weakref.ref(self)

    def register(self, t: torch.Tensor, nid: int) -> None:
        """Install the hook on a tensor that requires grad (called by the capture session)."""
        t.register_hook(GradHook(self._self_ref, nid))

    def attach(self, log: ModelLog, selected: frozenset[int] | None) -> None:
        self._log = weakref.ref(log)
        self.selected = selected
        n = log._n_records
        outs: dict[int, list[int]] = {}
        for i, (producer, _role, _h) in enumerate(log._data.outputs):
            outs.setdefault(producer, []).append(n + i)
        self.outputs_of = outs

    def __getstate__(self) -> dict[str, Any]:
        """Pickling (a pickled log): the data only; hooks of a pickled copy have nothing to reach."""
        state = dict(self.__dict__)
        state["_log"] = None
        state["_self_ref"] = None
        state["sink"] = None
        state["grads"] = {k: _detach(v) for k, v in self.grads.items()}
        try:
            pickle.dumps(self.postfunc)
        except Exception:
            state["postfunc"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._self_ref = weakref.ref(self)

    def receive(self, nid: int, grad: torch.Tensor) -> None:
        log = self._log() if self._log is not None else None
        if log is None:
            return
        sel = self.selected
        for target in (nid, *self.outputs_of.get(nid, ())):
            if sel is None or target in sel:
                # Detached first, so the copy records nothing even under create_graph; the unwrapped
                # torch methods skip the (idle) capture wrappers. An output node gets its own copy.
                self._store(log, target, _clone(_detach(grad)))

    def _store(self, log: ModelLog, nid: int, g: torch.Tensor) -> None:
        if self.postfunc is not None:
            try:
                self.transformed[nid] = self.postfunc(g)
            except Exception as e:
                label = log._col("labels")[log._pos_of_nid()[nid]] if nid in log._pos_of_nid() else str(nid)
                raise TorchLensPostfuncError(
                    f"gradient_postfunc raised for layer {label} (shape={tuple(g.shape)}, dtype={g.dtype})."
                ) from e
        if self.save_raw or self.postfunc is None:
            self.grads[nid] = g
        if nid not in self.grads and nid not in self.transformed:
            return
        if self.sink is not None:
            self.sink(nid, self.grads.get(nid), self.transformed.get(nid) if self.postfunc is not None else None)
        if nid not in self.seen:
            self.seen.add(nid)
            self.order.append(nid)
        log.has_gradients = True

    def clear(self) -> None:
        self.grads.clear()
        self.transformed.clear()
        self.order.clear()
        self.seen.clear()


def hook_saved_activations(log: ModelLog) -> None:
    """Before `log_backward` on a log made without `save_gradients`: hook the saved activations
    that are still in the autograd graph, so the recorded backward fills layer gradients too."""
    if log._grad_store is not None:
        return
    store = GradientStore()
    hooked = False
    for nid, t in log._saved.items():
        if isinstance(t, torch.Tensor) and t.requires_grad and nid < log._n_records:
            store.register(t, nid)
            hooked = True
    if hooked:
        store.attach(log, None)
        log._grad_store = store


# ------------------------------------------------------------------ per-entry reads
def gradient(log: ModelLog, pos: int) -> torch.Tensor | None:
    nid = log._node_ids[pos]
    store = log._grad_store
    g = None if store is None else store.grads.get(nid)
    if g is None and nid in log._lazy_grads:  # a lazily loaded bundle: read on first access
        return materialize(log, pos, "cpu")
    return g


def materialize(log: ModelLog, pos: int, map_location: Any) -> torch.Tensor | None:
    nid = log._node_ids[pos]
    ref = log._lazy_grads.get(nid)
    if ref is not None:
        g = ref.materialize(map_location=map_location)
        if log._grad_store is None:
            log._grad_store = GradientStore()
        log._grad_store.grads[nid] = g
        del log._lazy_grads[nid]
        return g
    store = log._grad_store
    g = None if store is None else store.grads.get(nid)
    return None if g is None else g.to(map_location)


def is_selected(log: ModelLog, pos: int) -> bool:
    """Whether gradient capture covers this entry (its gradient is kept when one arrives)."""
    store = log._grad_store
    if store is None or not log.save_gradients:
        return False
    return store.selected is None or log._node_ids[pos] in store.selected


def transformed_gradient(log: ModelLog, pos: int) -> Any:
    store = log._grad_store
    return None if store is None else store.transformed.get(log._node_ids[pos])


def has_gradient(log: ModelLog, pos: int) -> bool:
    store = log._grad_store
    nid = log._node_ids[pos]
    if nid in log._lazy_grads:
        return True
    return store is not None and (nid in store.grads or nid in store.transformed)


def labels_with_gradients(log: ModelLog) -> list[str]:
    """Labels of the entries holding a gradient, in arrival order (reverse topological)."""
    store = log._grad_store
    if store is None:
        return []
    pon = log._pos_of_nid()
    labels = log._col("labels")
    kept = None if log._kept is None else set(log._kept)
    out = []
    for nid in store.order:
        pos = pon.get(nid)
        if pos is not None and (kept is None or pos in kept):
            out.append(labels[pos])
    return out
