"""Preparing a model for one session: module forward wrappers, parameter ids and buffer tags."""

from __future__ import annotations

import functools
import weakref
from typing import Any

import torch
from torch import Tensor, nn

from . import distributed, hot, wrap
from .alias import stale
from .session import Session, _classify, _code_class, _getframe
from .strings import intern

# A module's returned tensors are searched three levels down (2.15's "nested search depth 4" counts
# the value itself): an ImageList's tensors exit, a ModelOutput's cache keys (four levels) do not.
_TENSOR_DEPTH = 3
TAG = hot.TAG
_ALWAYS = 1 << 62  # nn.Identity: every output gets an identity node
_MISSING = object()  # a patched attribute that was not in the instance dict before


def _caller_site(session: Session) -> int:
    """Call site of a module pass: the frame that called the module (or its `forward`) directly."""
    # 0 _caller_site, 1 call_module, 2 the forward wrapper, 3 the caller or torch's call machinery.
    f = _getframe(3)
    co = f.f_code
    c = _code_class.get(id(co))
    if c is None:
        c = _classify(co)
    while c == 2 and f.f_back is not None:  # `Module.__call__` frames (torch's and our patch)
        f = f.f_back
        co = f.f_code
        c = _code_class.get(id(co))
        if c is None:
            c = _classify(co)
    if c:
        session.stack_lasti.append(-1)
        return 0
    lasti = f.f_lasti
    session.stack_lasti.append(lasti)  # the call's column, for arms sharing a line (ternaries)
    key = (id(co), lasti)  # by instruction: the line is read once per site (see Session._log)
    index = session._site_index
    sid = index.get(key)
    if sid is None:
        sid = index[key] = len(session.sites)
        session.sites.append(((co, f.f_lineno),))
    return sid


_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, type)


def object_attributes(o: Any) -> list[tuple[str, Any]]:
    """The attributes 2.15 searches for tensors in a returned object (a `ModelOutput`, a cache, an
    `ImageList`): `dir()` order, dunders and callables (methods) skipped, unreadable ones too."""
    if isinstance(o, _LEAVES) or callable(o):
        return []
    try:
        names = dir(o)
    except Exception:
        return []
    out = []
    for name in names:
        if name.startswith("__") and name.endswith("__"):
            continue
        try:
            v = getattr(o, name)
        except Exception:
            continue
        if not callable(v) or isinstance(v, Tensor):
            out.append((name, v))
    return out


def _replace_outputs(out: Any, fix: Any, depth: int = 0) -> Any:
    """Apply `fix` to every tensor in a module's return value; rebuild containers only if needed.

    Tensors held by other objects (and dict subclasses' attributes) are visited as 2.15 does, but
    stay in place: `fix` only replaces a tensor whose node went stale, which a plain container can
    take back."""
    if type(out) is Tensor:
        return fix(out)
    if depth >= _TENSOR_DEPTH:
        return out
    if type(out) is tuple or type(out) is list:
        new = [_replace_outputs(o, fix, depth + 1) for o in out]
        if all(a is b for a, b in zip(new, out, strict=True)):
            return out
        return type(out)(new)
    if isinstance(out, dict):
        for k, v in list(out.items()):
            nv = _replace_outputs(v, fix, depth + 1)
            if nv is not v:
                out[k] = nv
        if type(out) is dict:
            return out
    for _, v in object_attributes(out):
        _replace_outputs(v, fix, depth + 1)
    return out


class ModelPlan:
    """What one walk over a model's module tree finds; cached until the model's structure changes.

    Torch's global registration hooks (installed with the wrappers) bump `wrap.structure_epoch`
    whenever any module registers a submodule, parameter or buffer, which invalidates the cache.
    Buffer and tensor-attribute *values* are re-read from their slots on every session.
    """

    def __init__(self, model: nn.Module) -> None:
        self.addresses: dict[int, str] = {}
        self.all_addresses: dict[int, list[str]] = {}
        self.modules: list[nn.Module] = []
        self.module_index: dict[int, int] = {}
        self.module_types: list[str] = []
        self.addr_ids: list[int] = []
        self.identity: list[bool] = []
        self.params: list[tuple[str, nn.Parameter]] = []
        self.param_ids: dict[int, int] = {}
        # (container, key, address): a buffer or tensor attribute lives at container[key].
        self.tensor_slots: list[tuple[Any, Any, str]] = []
        # (module __dict__, attribute): a torch function stored on a module instance.
        self.func_slots: list[tuple[dict, str]] = []
        self._walk(model)

    def _walk(self, model: nn.Module) -> None:
        addresses = self.addresses
        all_addresses = self.all_addresses
        param_ids = self.param_ids
        params = self.params
        slots = self.tensor_slots
        order: list[nn.Module] = []
        stack: list[tuple[str, nn.Module]] = [("", model)]
        visited: set[int] = set()
        while stack:
            addr, mod = stack.pop()
            key = id(mod)
            if mod is not model:
                all_addresses.setdefault(key, []).append(addr)
                addresses[key] = addr  # a module registered under several names keeps the last one
            if key in visited:
                continue
            visited.add(key)
            order.append(mod)
            prefix = f"{addr}." if addr else ""
            d = mod.__dict__
            for name, p in d["_parameters"].items():
                if p is not None and id(p) not in param_ids:
                    param_ids[id(p)] = len(params)
                    params.append((prefix + name, p))
            bufs = d["_buffers"]
            for name in bufs:
                slots.append((bufs, name, prefix + name))
            # Built-in torch.nn layers keep their tensors in _parameters/_buffers; only user classes
            # can hold plain tensor attributes or stored torch functions, so only theirs are scanned.
            if not type(mod).__module__.startswith("torch.nn.modules"):
                for name, val in d.items():
                    if type(val) is Tensor:
                        slots.append((d, name, prefix + name))
                    elif type(val) is list and val and name[0] != "_" and type(val[0]) is Tensor:
                        for i, v in enumerate(val):
                            if type(v) is Tensor:
                                slots.append((val, i, f"{prefix}{name}.{i}"))
                    elif callable(val) and not isinstance(val, nn.Module | type) and name[0] != "_":
                        self.func_slots.append((d, name))
            children = d["_modules"]
            if children:
                for name, child in reversed(children.items()):
                    if child is not None:
                        stack.append((prefix + name, child))
        for mod in order:
            if mod is model:
                continue
            self.module_index[id(mod)] = len(self.modules)
            self.modules.append(mod)
            self.module_types.append(distributed.module_class(mod).__name__)
            self.addr_ids.append(intern(addresses[id(mod)]))
            self.identity.append(isinstance(mod, nn.Identity))


_plans: weakref.WeakKeyDictionary[nn.Module, tuple[int, ModelPlan]] = weakref.WeakKeyDictionary()


def plan_for(model: nn.Module) -> ModelPlan:
    cached = _plans.get(model)
    epoch = wrap.structure_epoch
    if cached is not None and cached[0] == epoch:
        return cached[1]
    plan = ModelPlan(model)
    _plans[model] = (epoch, plan)
    return plan


class PreparedModel:
    """One session's view of a model: its plan plus per-session pass counters and patches."""

    def __init__(self, model: nn.Module, session: Session) -> None:
        self.model = model
        self.session = session
        self.plan: ModelPlan | None = None
        self.pass_counts: list[int] = []
        self._patched_attrs: list[tuple[dict, str, Any, Any]] = []

    @property
    def addresses(self) -> dict[int, str]:
        return self.plan.addresses if self.plan else {}

    @property
    def all_addresses(self) -> dict[int, list[str]]:
        return self.plan.all_addresses if self.plan else {}

    @property
    def modules(self) -> list[nn.Module]:
        return self.plan.modules if self.plan else []

    @property
    def module_types(self) -> list[str]:
        return self.plan.module_types if self.plan else []

    def prepare(self) -> None:
        plan = self.plan = plan_for(self.model)
        session = self.session
        # Modules whose `forward` cannot be wrapped (scripted ones) are seen through `__call__`.
        session.module_index = {}
        session.param_ids = plan.param_ids
        session.params = plan.params
        session.prepared = self
        self.addr_ids = plan.addr_ids
        self.identity = plan.identity
        self.pass_counts = [0] * len(plan.modules)
        for container, key, address in plan.tensor_slots:
            try:
                val = container[key]
            except (KeyError, IndexError):
                continue
            if isinstance(val, Tensor) and not isinstance(val, nn.Parameter):
                session.register_buffer_tensor(val, address)
        wrapped_ids = wrap._wrapped_ids if wrap.is_wrapped() else {}
        for d, name in plan.func_slots:
            val = d.get(name)
            wrapper = wrapped_ids.get(id(val))
            if wrapper is not None:
                # `self.act = torch.tanh` captured the original before wrapping (spec §7.1).
                d[name] = wrapper
                self._patched_attrs.append((d, name, val, wrapper))
        for index, mod in enumerate(plan.modules):
            if not self._wrap_forward(index, mod):
                session.module_index[id(mod)] = index

    def _wrap_forward(self, index: int, mod: nn.Module) -> bool:
        # A module pass spans its `forward`, as in 2.15: hooks run outside it, and a direct
        # `layer.forward(...)` call (SqueezeBERT's encoder, checkpointing helpers) is a pass too.
        # The instance attribute shadows the class's `forward` for this session only.
        if isinstance(mod, torch.jit.ScriptModule):
            return False
        d = mod.__dict__
        prior = d.get("forward", _MISSING)
        bound = mod.forward
        session = self.session
        call_module = self.call_module

        @functools.wraps(bound)
        def forward(*args: Any, **kwargs: Any) -> Any:
            if hot._session is not session:
                return bound(*args, **kwargs)
            return call_module(index, bound, mod, args, kwargs)

        d["forward"] = forward
        self._patched_attrs.append((d, "forward", prior, forward))
        return True

    def call_module(self, index: int, call: Any, mod: nn.Module, args: tuple, kwargs: dict) -> Any:
        # `call` runs the module's forward (bound); `mod` is the module itself.
        # Runs once per module call: enter_module and the call-site lookup are inlined here.
        session = self.session
        k = self.pass_counts[index] + 1
        self.pass_counts[index] = k
        addr_id = self.addr_ids[index]
        # Any output node older than this is a pass-through (an input or an earlier tensor returned
        # unchanged) and gets an identity node so the module has an output of its own (spec §7.4);
        # as in 2.15 that node is a dead end: the caller keeps the tensor, which keeps its node.
        # So does an output whose node went stale: an in-place write through another alias changed
        # it after its node was made (`alias.py`), so no node holds the value the caller receives.
        first_new = _ALWAYS if self.identity[index] else len(session.records)
        prev = session.stack_id
        stacks = session.module_stacks
        # Every module pass is entered once, so each call opens a new stack entry.
        sid = len(stacks)
        stacks.append([*stacks[prev], (addr_id, k)])
        session.stack_parent.append(prev)
        session.stack_sites.append(_caller_site(session))
        session.stack_id = sid
        try:
            out = call(*args, **kwargs)
            if type(out) is Tensor:
                tg = getattr(out, TAG, None)
                if tg is not None:
                    if session.writes and stale(session.writes, out, tg):
                        out = session.log_identity(out)
                        tg = getattr(out, TAG)
                    elif tg < first_new:
                        # 2.15: the identity node is a side branch; the caller keeps the tensor.
                        tg = getattr(session.log_identity(out), TAG)
                    session.module_exits.append((tg, addr_id, k))
            else:
                seen: set[int] = set()  # a tensor held twice (a key and an attribute) exits once

                def fix(t: Tensor) -> Tensor:
                    if id(t) in seen:
                        return t
                    seen.add(id(t))
                    return self._exit_tensor(t, addr_id, k, first_new)

                out = _replace_outputs(out, fix)
        finally:
            session.stack_id = prev
        return out

    def _exit_tensor(self, t: Tensor, addr_id: int, k: int, first_new: int) -> Tensor:
        tg = getattr(t, TAG, None)
        if tg is None:
            return t
        writes = self.session.writes
        if writes and stale(writes, t, tg):
            t = self.session.log_identity(t)
            tg = getattr(t, TAG)
        elif tg < first_new:
            tg = getattr(self.session.log_identity(t), TAG)
        self.session.module_exits.append((tg, addr_id, k))
        return t

    def module_passes(self) -> list[tuple[int, int]]:
        return [(a, n) for a, n in zip(self.addr_ids, self.pass_counts, strict=True) if n]

    def restore(self) -> None:
        """Put back forwards and torch functions held as module attributes (buffer tags: the session)."""
        for d, name, val, wrapper in reversed(self._patched_attrs):
            if d.get(name) is wrapper:
                if val is _MISSING:
                    del d[name]
                else:
                    d[name] = val
        self._patched_attrs.clear()


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
