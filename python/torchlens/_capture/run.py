"""Running one forward pass under capture and undoing every change afterwards."""

from __future__ import annotations

import gc
import inspect
import random
import threading
import types
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._data import CaptureData, ModuleInfo, ParamInfo
from . import distributed, hot, wrap
from .modules import PreparedModel, model_device, object_attributes
from .session import Session
from .strings import STRINGS

_lock = threading.Lock()
_INPUT_DEPTH = 5


class ReentrancyError(RuntimeError):
    pass


class _RetryWithCopies(Exception):
    pass


@dataclass
class Capture:
    """What one forward pass produced, before the core runs."""

    session: Session
    prepared: PreparedModel
    output: Any
    input_roles: list[str] = field(default_factory=list)
    time_forward: float = 0.0


def normalize_inputs(model: nn.Module, input_args: Any, input_kwargs: dict | None) -> tuple[list, dict]:
    kwargs = dict(input_kwargs or {})
    if input_args is None:
        return [], kwargs
    if isinstance(input_args, tuple | list):
        try:
            sig = inspect.signature(model.forward)
            named = [
                p
                for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self"
            ]
            has_varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
        except (TypeError, ValueError):
            named, has_varargs = [], True
        if len(named) == 1 and not has_varargs and len(input_args) > 1:
            return [input_args], kwargs
        return list(input_args), kwargs
    return [input_args], kwargs


def _positional_names(model: nn.Module, n: int) -> list[str]:
    try:
        sig = inspect.signature(model.forward)
    except (TypeError, ValueError):
        return [f"args_{i}" for i in range(n)]
    names: list[str] = []
    varargs = "args"
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind == p.VAR_POSITIONAL:
            varargs = p.name
    out = names[:n]
    out += [f"{varargs}_{i}" for i in range(len(out), n)]
    return out


def _clone_inputs(obj: Any, device: torch.device, depth: int = 0) -> Any:
    if isinstance(obj, Tensor):
        with hot.paused():
            c = hot.raw_clone(obj)
            if c.device != device and not isinstance(obj, nn.Parameter):
                c = c.to(device)
        return c
    if depth >= _INPUT_DEPTH:
        return obj
    if type(obj) is tuple or type(obj) is list:
        return type(obj)(_clone_inputs(o, device, depth + 1) for o in obj)
    if isinstance(obj, dict):
        try:
            new = type(obj)()
        except TypeError:
            new = {}
        for k, v in obj.items():
            new[k] = _clone_inputs(v, device, depth + 1)
        return new
    return obj


def _walk_tensors(obj: Any, path: str, found: list[tuple[str, Tensor]], depth: int = 0) -> None:
    if isinstance(obj, Tensor):
        found.append((path, obj))
        return
    if depth >= _INPUT_DEPTH:
        return
    if isinstance(obj, tuple | list):
        for i, o in enumerate(obj):
            _walk_tensors(o, f"{path}.{i}", found, depth + 1)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _walk_tensors(v, f"{path}.{k}", found, depth + 1)


_OUTPUT_DEPTH = 4
_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, type, types.ModuleType)


def walk_outputs(obj: Any, found: list[tuple[str, Tensor]]) -> None:
    """The tensors of a returned value by output address, in 2.15's order (spec §5.4).

    Breadth first from `output`, at most four levels down: lists, tuples and sets by index, dicts
    (and dict subclasses such as transformers' `ModelOutput`) by key and then, like any other object
    (a dataclass, a namedtuple, a `DynamicCache`), by attribute: `dir()` order, dunders and callables
    skipped, each name stripped of `_` (`output.cache.layers.0.keys`). An address already taken is
    skipped; the same tensor at two addresses is two outputs.
    """
    seen: set[str] = set()
    queue: deque[tuple[Any, str, int]] = deque([(obj, "output", 0)])
    while queue:
        o, path, depth = queue.popleft()
        if isinstance(o, Tensor):
            if path not in seen and not isinstance(o, nn.Parameter):
                seen.add(path)
                found.append((path, o))
            continue
        if depth >= _OUTPUT_DEPTH or isinstance(o, _LEAVES) or callable(o):
            continue
        if type(o) is list or type(o) is tuple or isinstance(o, set | frozenset):
            queue.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(o))
            continue
        if isinstance(o, dict):
            queue.extend((v, f"{path}.{k}", depth + 1) for k, v in o.items())
        queue.extend((v, f"{path}.{name.strip('_')}", depth + 1) for name, v in object_attributes(o))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _run_capture_once(
    model: nn.Module,
    args: list,
    kwargs: dict,
    save: str | frozenset[int] | None,
    detach: bool,
    random_seed: int,
    copy_all: bool = False,
    extras: dict | None = None,
    sink: Any = None,
) -> Capture:
    """Run `model` once with capture on. Leaves torch, the model and the inputs as found."""
    if not _lock.acquire(blocking=False):
        raise ReentrancyError(
            "torchlens.log_forward_pass is not re-entrant: another forward pass is already being logged."
        )
    session = Session(save, detach, copy_all, **(extras or {}))
    session.sink = sink
    prepared = PreparedModel(model, session)
    # The capture allocates many small objects; a cyclic GC sweep over a large model mid-forward
    # costs more than the whole capture, and nothing created here forms cycles that must die early.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    sharded = None
    try:
        wrap.ensure_wrapped()
        sharded = distributed.enter(model)  # FSDP2: capture-aware unshard/reshard hooks
        device = model_device(model)
        args = _clone_inputs(args, device)
        kwargs = _clone_inputs(kwargs, device)
        prepared.prepare()
        names = _positional_names(model, len(args))
        roles: list[str] = []
        found: list[tuple[str, Tensor]] = []
        for name, a in zip(names, args, strict=True):
            _walk_tensors(a, f"input.{name}", found)
        for k, v in kwargs.items():
            _walk_tensors(v, f"input.{k}", found)
        for role, t in found:
            if type(t) is Tensor:
                session.log_input(t, role)
                roles.append(role)
        seed_everything(random_seed)
        import time

        session.rng_before_forward = torch.get_rng_state()

        t0 = time.perf_counter()
        hot.set_session(session)
        try:
            output = model(*args, **kwargs)
        finally:
            hot.set_session(None)
        t1 = time.perf_counter()
        if not session.versions_intact():
            # Something outside the intercepted calls wrote into a saved tensor: redo with copies.
            raise _RetryWithCopies
        outs: list[tuple[str, Tensor]] = []
        walk_outputs(output, outs)
        for role, t in outs:
            session.add_output(t, role)
        return Capture(session, prepared, output, roles, t1 - t0)
    finally:
        hot.set_session(None)
        distributed.leave(sharded)
        prepared.restore()
        session.strip_tags()
        session.module_index = {}
        session.prepared = None
        if gc_was_enabled:
            gc.enable()
        _lock.release()


def run_capture(
    model: nn.Module,
    args: list,
    kwargs: dict,
    save: str | frozenset[int] | None,
    detach: bool,
    random_seed: int,
    extras: dict | None = None,
    sink: Any = None,
) -> Capture:
    """Run `model` once with capture on. Leaves torch, the model and the inputs as found.

    `extras` are opt-in Session options: save_args, save_rng, postfunc, save_raw.
    """
    try:
        return _run_capture_once(model, args, kwargs, save, detach, random_seed, extras=extras, sink=sink)
    except _RetryWithCopies:
        return _run_capture_once(
            model, args, kwargs, save, detach, random_seed, copy_all=True, extras=extras, sink=sink
        )


def from_capture(cap: Capture) -> CaptureData:
    """The plain-data snapshot of a finished capture (no live model objects except weak references)."""
    s = cap.session
    prep = cap.prepared
    plan = prep.plan
    modules: list[ModuleInfo] = []
    if plan is not None:
        # Per-module constants are cached on the plan; only the pass counts change per session.
        statics = plan.__dict__.get("_module_statics")
        if statics is None:
            statics = [
                (plan.addresses[id(m)], distributed.module_class(m).__name__, plan.all_addresses[id(m)])
                for m in plan.modules
            ]
            plan._module_statics = statics
        for (addr, cls, aliases), n in zip(statics, prep.pass_counts, strict=True):
            if n:
                modules.append(ModuleInfo(addr, cls, n, list(aliases)))
    params = _param_infos(plan, s.params)
    return CaptureData(
        strings=list(STRINGS),
        records=s.records,
        meta_ids=s.meta_ids,
        metas=s.metas,
        module_stacks=s.module_stacks,
        module_exits=s.module_exits,
        module_passes=prep.module_passes(),
        outputs=s.outputs,
        modules=modules,
        params=params,
        site_ids=s.site_ids,
        sites=s.sites,
        stack_sites=s.stack_sites,
        stack_lasti=s.stack_lasti,
        stack_parent=s.stack_parent,
        toks=s.toks,
        func_times=s.op_times,
        func_args=s.func_args,
        func_rng=s.func_rng,
        module_objects=_module_objects(plan, prep),
        autograd_saved=s.opstate.saved,
        autocast_states=s.opstate.states,
        autocast_ids=s.opstate.ids,
        grad_fn_ids=s.opstate.grad_fn_ids,
        bool_events=s.bool_events,
    )


def _module_objects(plan: Any, prep: Any) -> dict[str, Any]:
    """Weak references to the modules that ran, by address (for docstrings and attributes)."""
    out: dict[str, Any] = {}
    if plan is None:
        return out
    for mod, n in zip(plan.modules, prep.pass_counts, strict=True):
        if n:
            out[plan.addresses[id(mod)]] = _module_snapshot(mod)
    out["self"] = _module_snapshot(prep.model)
    return out


def _module_snapshot(mod: Any) -> tuple:
    """(weak reference or None, training flag, class): what a ModuleLog reads about a live module."""
    try:
        ref = weakref.ref(mod)
    except TypeError:
        ref = None
    return (ref, bool(mod.training), distributed.module_class(mod))


def _param_infos(plan: Any, params: list[tuple[str, Any]]) -> list[ParamInfo]:
    """ParamInfo per parameter, reused across sessions while the plan and the trainable flags hold."""
    flags = tuple(bool(p.requires_grad) for _, p in params)
    cached = plan.__dict__.get("_param_infos") if plan is not None else None
    if cached is not None and cached[0] == flags:
        return cached[1]
    infos = [
        ParamInfo(
            addr,
            tuple(p.shape),
            p.dtype,
            p.numel(),
            p.numel() * p.element_size(),
            flag,
            weakref.ref(p),
            distributed.local_shape(p),
        )
        for (addr, p), flag in zip(params, flags, strict=True)
    ]
    if plan is not None:
        plan._param_infos = (flags, infos)
    return infos
