"""Plain-data snapshot of one capture: everything a ModelLog shows, with no live model objects.

A `ModelLog` reads only this and the core's `Finalized` columns, so a log rebuilt from a saved
bundle (the same data, re-finalized by the core) behaves exactly like a fresh one.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ._capture.run import Capture


@dataclass
class ModuleInfo:
    """One module that ran during the pass."""

    address: str
    class_name: str
    num_passes: int
    all_addresses: list[str]


@dataclass
class ParamInfo:
    """One parameter the model owns (metadata only; `param` is a weak reference when live)."""

    address: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    numel: int
    nbytes: int
    requires_grad: bool
    param: Any = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.address.rsplit(".", 1)[-1]

    @property
    def module_address(self) -> str:
        return self.address.rsplit(".", 1)[0] if "." in self.address else "self"


@dataclass
class CaptureData:
    """The capture batch plus per-node tensor metadata."""

    strings: list[str]
    records: list[tuple]
    meta_ids: list[int]
    metas: list[tuple[tuple[int, ...], torch.dtype, str]]
    module_stacks: list[list[tuple[int, int]]]
    module_exits: list[tuple[int, int, int]]
    module_passes: list[tuple[int, int]]
    outputs: list[tuple[int, int, int]]
    modules: list[ModuleInfo]
    params: list[ParamInfo]
    # Per-node extras kept parallel to `records` (see _capture/session.py); all optional.
    site_ids: Any = None
    sites: list[tuple] = field(default_factory=lambda: [()])
    stack_sites: list[int] = field(default_factory=list)
    stack_parent: list[int] = field(default_factory=list)
    toks: list[tuple] = field(default_factory=list)
    func_times: Any = None
    func_args: dict[int, tuple] = field(default_factory=dict)
    func_rng: dict[int, Any] = field(default_factory=dict)
    caller_site: tuple | None = None
    module_objects: dict[str, Any] = field(default_factory=dict)

    def core_inputs(self) -> tuple:
        return (
            self.strings,
            self.records,
            self.module_stacks,
            self.module_exits,
            self.module_passes,
            self.outputs,
        )


def from_capture(cap: Capture) -> CaptureData:
    from ._capture.strings import STRINGS

    s = cap.session
    prep = cap.prepared
    plan = prep.plan
    modules: list[ModuleInfo] = []
    if plan is not None:
        # Per-module constants are cached on the plan; only the pass counts change per session.
        statics = plan.__dict__.get("_module_statics")
        if statics is None:
            statics = [(plan.addresses[id(m)], type(m).__name__, plan.all_addresses[id(m)]) for m in plan.modules]
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
        stack_parent=s.stack_parent,
        toks=s.toks,
        func_times=s.op_times,
        func_args=s.func_args,
        func_rng=s.func_rng,
        module_objects=_module_objects(plan, prep),
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
    return (ref, bool(mod.training), type(mod))


def _param_infos(plan: Any, params: list[tuple[str, Any]]) -> list[ParamInfo]:
    """ParamInfo per parameter, reused across sessions while the plan and the trainable flags hold."""
    flags = tuple(bool(p.requires_grad) for _, p in params)
    cached = plan.__dict__.get("_param_infos") if plan is not None else None
    if cached is not None and cached[0] == flags:
        return cached[1]
    infos = [
        ParamInfo(addr, tuple(p.shape), p.dtype, p.numel(), p.numel() * p.element_size(), flag, weakref.ref(p))
        for (addr, p), flag in zip(params, flags, strict=True)
    ]
    if plan is not None:
        plan._param_infos = (flags, infos)
    return infos
