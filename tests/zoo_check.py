"""The three checks every differential-zoo model must pass (used by tests/test_zoo_subset.py and
by `make zoo` through benches/zoo.py):

1. `tl.validate_forward_pass(model, args, kwargs)` is True;
2. every module pass's logged outputs are `torch.equal` to what a spy wrapping its `forward` saw for that
   pass in a plain (unlogged) run of the same model on the same inputs (and a pass whose hook saw
   tensors has at least one logged output);
3. every output layer is `torch.equal` to the value at its address in what the model returned.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import torchlens as tl

from models import registry


@dataclass
class ZooResult:
    name: str
    family: str
    ops: int = 0
    layers: int = 0
    entries: int = 0
    max_passes: int = 0
    validated: bool = False
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.validated and not self.problems


_LEAVES = (str, bytes, int, float, complex, bool, type(None), torch.dtype, torch.device, type)


def _attributes(o: Any) -> list[tuple[str, Any]]:
    """An object's data attributes in `dir()` order (no dunders, no methods)."""
    if isinstance(o, _LEAVES) or callable(o):
        return []
    out = []
    for name in dir(o):
        if name.startswith("__") and name.endswith("__"):
            continue
        try:
            v = getattr(o, name)
        except Exception:
            continue
        if not callable(v) or isinstance(v, torch.Tensor):
            out.append((name, v))
    return out


def flatten_output(obj: Any) -> dict[str, torch.Tensor]:
    """Tensors of a returned value by output address (spec §5.4 and 2.15's walk): breadth first, four
    levels, lists/tuples/sets by index, dicts by key and then any object by attribute (`dir()` order,
    names stripped of `_`), first tensor per address."""
    out: dict[str, torch.Tensor] = {}
    queue: deque[tuple[Any, str, int]] = deque([(obj, "output", 0)])
    while queue:
        o, path, depth = queue.popleft()
        if isinstance(o, torch.Tensor):
            if type(o) is torch.Tensor:
                out.setdefault(path, o)
            continue
        if depth >= 4 or isinstance(o, _LEAVES) or callable(o):
            continue
        if type(o) in (list, tuple) or isinstance(o, set | frozenset):
            queue.extend((v, f"{path}.{i}", depth + 1) for i, v in enumerate(o))
            continue
        if isinstance(o, Mapping):
            queue.extend((v, f"{path}.{k}", depth + 1) for k, v in o.items())
        queue.extend((v, f"{path}.{n.strip('_')}", depth + 1) for n, v in _attributes(o))
    return out


def _tensors(obj: Any) -> list[torch.Tensor]:
    """Plain tensors a module returned, however held (containers and object attributes), once each."""
    found = flatten_output(obj)
    seen: set[int] = set()
    return [t for t in found.values() if not (id(t) in seen or seen.add(id(t)))]


def hook_reference(model: nn.Module, args: tuple, kwargs: dict) -> tuple[Any, dict[int, list[list[torch.Tensor]]]]:
    """Runs the model once unlogged; returns its output and, per module (by id), the output
    tensors of every call in call order (numbered by entry, as module passes are).

    A pass spans the module's `forward` (2.15's rule: `layer.forward(x)` called directly is a pass,
    forward hooks run outside it), so the reference wraps each instance's `forward` rather than
    registering forward hooks, which a direct call would skip."""
    calls: dict[int, list[list[torch.Tensor]]] = {}
    patched: list[nn.Module] = []

    def spy(mod: nn.Module) -> Any:
        inner = mod.forward

        def forward(*a: Any, **kw: Any) -> Any:
            slot = calls.setdefault(id(mod), [])
            slot.append([])
            k = len(slot) - 1
            out = inner(*a, **kw)
            slot[k] = [t.detach().clone() for t in _tensors(out)]
            return out

        return forward

    try:
        for mod in model.modules():
            if "forward" not in mod.__dict__ and not isinstance(mod, torch.jit.ScriptModule):
                mod.__dict__["forward"] = spy(mod)
                patched.append(mod)
        torch.manual_seed(0)
        out = model(*args, **kwargs)
    finally:
        for mod in patched:
            del mod.__dict__["forward"]
    return out, calls


def _find_equal(t: torch.Tensor, pool: list[torch.Tensor]) -> bool:
    return any(p.shape == t.shape and p.dtype == t.dtype and torch.equal(p, t) for p in pool)


def compare_modules(model: nn.Module, log: tl.ModelLog, calls: dict[int, list[list[torch.Tensor]]]) -> list[str]:
    problems: list[str] = []
    exits: dict[str, list[tuple[str, torch.Tensor]]] = {}
    for label in log.layer_labels:
        entry = log[label]
        if entry.is_output_layer:  # an output node repeats its producer's module passes (2.15)
            continue
        for mp in entry.module_passes_exited:
            exits.setdefault(mp, []).append((label, entry.activation))
    for mlog in log.modules:
        if mlog.address == "self":
            continue
        mod = model.get_submodule(mlog.address)
        ref = calls.get(id(mod), [])
        if len(ref) != mlog.num_passes:
            problems.append(f"module {mlog.address}: {mlog.num_passes} passes logged, hooks saw {len(ref)} calls")
            continue
        for k, want in enumerate(ref, start=1):
            got = exits.get(f"{mlog.address}:{k}", [])
            for label, act in got:
                if act is None or not _find_equal(act, want):
                    problems.append(f"{label} (exits {mlog.address}:{k}) differs from the hooked output")
            # The other way round: the hook saw tensors but no logged layer left the pass. (A returned
            # tensor whose ops 2.15 drops as orphans, such as T5's position bias, can lack its layer.)
            if want and not got:
                problems.append(f"{mlog.address}:{k}: the hook saw {len(want)} tensors, no layer exits it")
    return problems


def compare_outputs(log: tl.ModelLog, returned: Any) -> list[str]:
    flat = flatten_output(returned)
    problems = []
    for label in log.output_layers:
        entry = log[label]
        want = flat.get(entry.io_role)
        if want is None:
            problems.append(f"{label}: address {entry.io_role} not in the returned value")
        elif not (entry.activation.shape == want.shape and torch.equal(entry.activation, want)):
            problems.append(f"{label} differs from the returned {entry.io_role}")
    if len(log.output_layers) != len(flat):
        problems.append(f"{len(log.output_layers)} output layers for {len(flat)} returned tensors")
    return problems


def check(name: str, validate: bool = True) -> ZooResult:
    """Runs the three checks on one zoo entry."""
    entry = registry.registry()[name]
    res = ZooResult(name, entry.family)
    start = time.perf_counter()
    tl.wrap_torch()
    model, args, kwargs = registry.build(name)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    returned, calls = hook_reference(model, args, kwargs)
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
    args, kwargs = registry.inputs(name)
    log = tl.log_forward_pass(model, list(args), input_kwargs=kwargs or None, layers_to_save="all", random_seed=0)
    res.ops = log.num_operations
    res.layers = len(log.layer_logs)
    res.entries = len(log.layer_labels)
    res.max_passes = max(log.layer_num_passes.values(), default=0)
    res.problems += compare_modules(model, log, calls)
    res.problems += compare_outputs(log, returned)
    del log
    if validate:
        with torch.no_grad():
            for n, b in model.named_buffers():
                b.copy_(buffers[n])
        args, kwargs = registry.inputs(name)
        res.validated = tl.validate_forward_pass(model, list(args), kwargs or None, random_seed=0)
    res.seconds = time.perf_counter() - start
    return res
