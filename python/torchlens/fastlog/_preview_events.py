"""The fastlog events of a logged pass, rebuilt from a `ModelLog` (for `preview_fastlog`, `to_model_log`).

A `ModelLog` holds every tensor the pass created in creation order (orphans included, as records
without a node). fastlog sees the same tensors as events, minus the identity nodes
`log_forward_pass` adds for modules that return an input unchanged (fastlog has no such events, so
its creation numbers and per-type counts are recomputed here without them), plus module enter/exit
events, which are rebuilt from each entry's module stack. The events are tuples in the layout the
recorder builds (`_types.E_*`), so a predicate reads them through the same `RecordContext`.

What cannot be rebuilt exactly (documented in docs/fastlog.md): `module_id` is the module's index in
`model_log.modules` (the live `id()` is not logged), `time_since_pass_start` sums the logged op
times, an input's `input_output_address` is the log's `io_role` (`input.x`, fastlog: `input.0`),
`tensor_requires_grad` of an op is whether it has a grad_fn, orphans keep the module stack of the
event before them, and `parent_labels` lists each parent once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch

from ._session import Decider
from ._types import _RESOLVED, CaptureSpec, PredicateError, RecordContext, _TensorMeta

KEPT, REJECTED, ERROR, UNREACHABLE = "kept", "rejected", "predicate_error", "unreachable"
_SOURCES = ("input", "buffer")


@dataclass
class PreviewEvent:
    """One rebuilt event: its tuple and, for a tensor event with a node, the node's entry."""

    ev: tuple
    entry: Any = None  # LayerPassLog, None for module events and orphans

    @property
    def kind(self) -> str:
        return self.ev[0]

    @property
    def raw_label(self) -> str:
        ev = self.ev
        if ev[0] in ("module_enter", "module_exit"):
            return f"{ev[14] or 'root'}:{ev[0][7:]}:{ev[4]}"
        return f"{ev[3]}_{ev[4]}_{ev[5]}_raw"


@dataclass
class PreviewDecisions:
    """What fastlog would do with each node and module pass of a logged graph."""

    nodes: dict[str, str] = field(default_factory=dict)  # layer_label (with :pass) -> status
    modules: dict[str, str] = field(default_factory=dict)  # "address:pass" -> status
    contexts: dict[str, RecordContext] = field(default_factory=dict)  # layer_label / "address:pass" -> ctx
    errors: dict[str, str] = field(default_factory=dict)  # label -> last line of the predicate's error
    raw_labels: dict[str, str] = field(default_factory=dict)  # layer_label -> fastlog raw label

    def kept_nodes(self) -> list[str]:
        return [k for k, s in self.nodes.items() if s == KEPT]


def _frames(log: Any, cms: list[str], mod_index: dict[str, int]) -> tuple:
    root = ("", log.model_name, 0, 1)
    out = [root]
    for m in cms:
        addr, k = m.rsplit(":", 1)
        out.append((addr, log.modules[addr].module_class_name, mod_index.get(addr, -1), int(k)))
    return tuple(out)


def _device(log: Any) -> torch.device:
    for entry in log.layer_list:
        act = entry.activation
        if isinstance(act, torch.Tensor):
            return act.device
    return torch.device("cpu")


def _meta(entry: Any, device: torch.device) -> _TensorMeta:
    act = entry.activation
    dev = act.device if isinstance(act, torch.Tensor) else device
    if entry.is_input_layer or entry.is_buffer_layer:
        rg = bool(act.requires_grad) if isinstance(act, torch.Tensor) else False
    else:
        rg = entry.grad_fn_name not in (None, "none", "NoneType")
    return _TensorMeta(tuple(entry.tensor_shape or ()), entry.tensor_dtype, dev, rg)


def rebuild_events(log: Any) -> list[PreviewEvent]:
    """Every event a fastlog pass of the logged model and input would see, in order."""
    log._require_all_layers()
    by_creation = {}
    for entry in log.layer_list:
        if not entry.is_output_layer:
            by_creation[int(entry.creation_order)] = entry
    mod_index = {addr: i for i, addr in enumerate(m.address for m in log.modules)}
    device = _device(log)
    events: list[PreviewEvent] = []
    counts: dict[str, int] = {}
    raw_of: dict[str, str] = {}  # layer_label -> raw label
    creation = 0
    t = 0.0
    ei = oi = 0
    root = ("", log.model_name, 0, 1)
    stack: tuple = ()
    started = False

    def module_event(kind: str, frames: tuple) -> None:
        nonlocal ei
        ei += 1
        addr, _, _, k = frames[-1]
        ev = (kind, ei, None, None, k, None, None, frames, None, None, None, t, None, None, addr, None)
        events.append(PreviewEvent(ev))

    def move_to(target: tuple) -> None:
        nonlocal stack
        common = 0
        while common < min(len(stack), len(target)) and stack[common] == target[common]:
            common += 1
        for i in range(len(stack), common, -1):
            module_event("module_exit", stack[:i])
        for i in range(common + 1, len(target) + 1):
            module_event("module_enter", target[:i])
        stack = target

    n_records = log._n_records
    next_stack: list[Any] = [None] * (n_records + 1)  # orphans take the module stack of the next node
    for nid in range(n_records - 1, -1, -1):
        entry = by_creation.get(nid + 1)
        next_stack[nid] = entry.containing_modules if entry is not None else next_stack[nid + 1]
    for nid in range(n_records):
        entry = by_creation.get(nid + 1)
        lt = entry.layer_type if entry is not None else log._layer_type_of_record(nid)
        kind = lt if lt in _SOURCES else "op"
        if kind != "input" and not started:
            move_to((root,))
            started = True
        if kind != "input":
            cms = next_stack[nid]
            move_to(_frames(log, cms, mod_index) if cms is not None else stack)
        if entry is not None and lt == "identity" and entry.func_name == "identity":
            continue  # added by log_forward_pass for a module returning its input; no fastlog event
        creation += 1
        n = counts[lt] = counts.get(lt, 0) + 1
        if entry is not None and entry.func_time:
            t += float(entry.func_time)
        ei += 1
        if kind == "op":
            oi += 1
        frames = () if kind == "input" else stack
        if entry is None:
            ev = (kind, ei, oi if kind == "op" else None, lt, n, creation, None, frames, None, None,
                  True if kind == "op" else None, t, () if kind == "op" else None, _RESOLVED, None, None)  # fmt: skip
            events.append(PreviewEvent(ev))
            continue
        parents = tuple(raw_of.get(p, p) for p in entry.parent_layers)
        if kind == "op":
            out_index = entry.iterable_output_index if entry.is_part_of_iterable_output else None
            ev = (
                "op", ei, oi, lt, n, creation, entry.func_name, frames, _meta(entry, device), out_index, True, t,
                parents, _RESOLVED, None, None,
            )  # fmt: skip
        else:
            addr = entry.io_role if kind == "input" else entry.buffer_address
            ev = (kind, ei, None, lt, n, creation, None, frames, _meta(entry, device), None, None, t,
                  None, _RESOLVED, addr, None)  # fmt: skip
        pe = PreviewEvent(ev, entry)
        raw_of[entry.layer_label] = pe.raw_label
        events.append(pe)
    if not started:
        move_to((root,))
    move_to(())
    return events


def _kept(spec: CaptureSpec) -> bool:
    return spec.save_activation or spec.save_metadata


def decide_events(
    log: Any,
    keep_op: Any = None,
    keep_module: Any = None,
    *,
    default_op: Any = False,
    default_module: Any = False,
    history_size: int = 8,
    include_source_events: bool = False,
) -> PreviewDecisions:
    """Run the predicates over the rebuilt events as a fastlog pass would (accumulating errors)."""
    if not isinstance(history_size, int) or isinstance(history_size, bool) or not 0 <= history_size <= 1024:
        raise ValueError("history_size must be an int in [0, 1024]")
    decider = Decider(keep_op, keep_module, default_op, default_module, False, 1 << 30)
    hist: deque = deque(maxlen=history_size) if history_size > 0 else deque(maxlen=0)
    env = (1, None, include_source_events, None)
    out = PreviewDecisions()
    for pe in rebuild_events(log):
        ev = pe.ev
        kind = ev[0]
        ctx = RecordContext._fast(ev, tuple(hist), env)
        if kind in ("module_enter", "module_exit"):
            pred, default, true_spec = keep_module, decider.default_module, decider.true_module
        elif kind == "op" or include_source_events:
            pred, default, true_spec = keep_op, decider.default_op, decider.true_op
        else:
            pred = None
        status = UNREACHABLE
        err = None
        if kind in _SOURCES and not include_source_events:
            status = UNREACHABLE
        elif pred is None:
            status = KEPT if _kept(default) else REJECTED
        else:
            before = decider.total_failures
            try:
                spec = decider.decide(pred, ctx, default, true_spec)
            except PredicateError as e:
                status, err = ERROR, str(e)
            else:
                if decider.total_failures != before:
                    status, err = ERROR, decider.last_error
                else:
                    status = KEPT if _kept(spec) else REJECTED
        hist.append(ev)
        if kind in ("module_enter", "module_exit"):
            if ev[14] == "":
                continue
            key = f"{ev[14]}:{ev[4]}"
            prev = out.modules.get(key)
            out.modules[key] = _merge(prev, status)
            if err is not None:
                out.errors.setdefault(key, err)
            out.contexts.setdefault(key, ctx.frozen(False))
            continue
        if pe.entry is None:
            continue
        label = pe.entry.layer_label
        out.nodes[label] = status
        out.raw_labels[label] = pe.raw_label
        out.contexts[label] = ctx.frozen(False)
        if err is not None:
            out.errors[label] = err
    for entry in log.layer_list:
        out.nodes.setdefault(entry.layer_label, UNREACHABLE)
    return out


_RANK = {ERROR: 3, KEPT: 2, REJECTED: 1, UNREACHABLE: 0}


def _merge(a: str | None, b: str) -> str:
    """The status shown for several decisions (a module's enter and exit, a rolled layer's passes)."""
    if a is None:
        return b
    return a if _RANK[a] >= _RANK[b] else b


def merge_all(statuses: list[str]) -> str:
    out: str | None = None
    for s in statuses:
        out = _merge(out, s)
    return out or UNREACHABLE
