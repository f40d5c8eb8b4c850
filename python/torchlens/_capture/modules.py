"""Preparing a model for one session: module forward wrappers, parameter ids and buffer tags."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import hot
from .session import Session
from .strings import intern

_TENSOR_DEPTH = 4


def _replace_outputs(out: Any, fix: Any, depth: int = 0) -> Any:
    """Apply `fix` to every tensor in a module's return value; rebuild containers only if needed."""
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
        return out
    return out


def _input_tags(args: tuple, kwargs: dict) -> set[int]:
    """Node ids of the labelled tensors a module received (a module returning one unchanged gets an identity node)."""
    tags: set[int] = set()

    def walk(a: Any, depth: int) -> None:
        if isinstance(a, Tensor):
            tg = getattr(a, hot.TAG, None)
            if tg is not None:
                tags.add(tg)
        elif depth < _TENSOR_DEPTH and isinstance(a, tuple | list):
            for b in a:
                walk(b, depth + 1)
        elif depth < _TENSOR_DEPTH and isinstance(a, dict):
            for b in a.values():
                walk(b, depth + 1)

    walk(args, 0)
    walk(kwargs, 0)
    return tags


class PreparedModel:
    """Everything done to a model for one session, so that `restore()` can undo it exactly."""

    def __init__(self, model: nn.Module, session: Session) -> None:
        self.model = model
        self.session = session
        self.addresses: dict[int, str] = {}
        self.all_addresses: dict[int, list[str]] = {}
        self.modules: list[nn.Module] = []
        self.module_types: list[str] = []
        self.pass_counts: list[int] = []
        self._patched: list[tuple[nn.Module, bool, Any]] = []

    def prepare(self) -> None:
        for addr, mod in self.model.named_modules(remove_duplicate=False):
            if mod is self.model or addr == "":
                continue
            key = id(mod)
            self.all_addresses.setdefault(key, []).append(addr)
            self.addresses[key] = addr
        seen: set[int] = set()
        for _, mod in self.model.named_modules(remove_duplicate=False):
            if id(mod) in seen:
                continue
            seen.add(id(mod))
            if mod is self.model:
                continue
            self._wrap_module(mod, self.addresses[id(mod)])
        for addr, p in self.model.named_parameters(remove_duplicate=True):
            if id(p) not in self.session.param_ids:
                self.session.param_ids[id(p)] = len(self.session.params)
                self.session.params.append((addr, p))
        for maddr, mod in [("", self.model), *((self.addresses[id(m)], m) for m in self.modules)]:
            prefix = f"{maddr}." if maddr else ""
            for name, buf in mod._buffers.items():
                if buf is not None and isinstance(buf, Tensor) and not isinstance(buf, nn.Parameter):
                    self.session.register_buffer_tensor(buf, prefix + name)
            for name, val in vars(mod).items():
                if type(val) is Tensor:
                    self.session.register_buffer_tensor(val, prefix + name)
                elif isinstance(val, list | tuple) and not name.startswith("_"):
                    for i, v in enumerate(val):
                        if type(v) is Tensor:
                            self.session.register_buffer_tensor(v, f"{prefix}{name}.{i}")

    def _wrap_module(self, mod: nn.Module, addr: str) -> None:
        index = len(self.modules)
        self.modules.append(mod)
        self.module_types.append(type(mod).__name__)
        self.pass_counts.append(0)
        had_own = "forward" in mod.__dict__
        orig_forward = mod.forward
        addr_id = intern(addr)
        is_identity = isinstance(mod, nn.Identity)
        session = self.session
        counts = self.pass_counts

        def forward(*args: Any, **kwargs: Any) -> Any:
            if hot._session is not session:
                return orig_forward(*args, **kwargs)
            k = counts[index] + 1
            counts[index] = k
            inputs = None if is_identity else _input_tags(args, kwargs)
            prev = session.enter_module(addr_id, k)
            try:
                out = orig_forward(*args, **kwargs)

                def fix(t: Tensor) -> Tensor:
                    tg = getattr(t, hot.TAG, None)
                    if tg is None:
                        return t
                    if is_identity or (inputs is not None and tg in inputs) or tg < 0:
                        t = session.log_identity(t)
                        tg = getattr(t, hot.TAG)
                    session.module_exits.append((tg, addr_id, k))
                    return t

                out = _replace_outputs(out, fix)
            finally:
                session.stack_id = prev
            return out

        mod.forward = forward  # type: ignore[method-assign]
        self._patched.append((mod, had_own, orig_forward))

    def module_passes(self) -> list[tuple[int, int]]:
        return [(intern(self.addresses[id(m)]), n) for m, n in zip(self.modules, self.pass_counts, strict=True) if n]

    def restore(self) -> None:
        for mod, had_own, orig in reversed(self._patched):
            if had_own:
                mod.forward = orig  # type: ignore[method-assign]
            else:
                try:
                    del mod.forward
                except AttributeError:
                    pass
        self._patched.clear()


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")
