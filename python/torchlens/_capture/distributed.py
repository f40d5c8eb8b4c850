"""Wrapped and sharded models (issue 16): what torchlens logs of a model spread over ranks.

* `DistributedDataParallel` and `nn.DataParallel` are unwrapped to `.module` (spec §16): the log is
  the wrapped model's, with its addresses.
* FSDP2 (`torch.distributed.fsdp.fully_shard`) is logged on each rank as it runs there. Between
  forwards its parameters are sharded `DTensor`s; each FSDP module's forward pre-hook all-gathers them
  into plain parameters for its forward and the post-hook frees them. For one capture `enter` swaps
  those two hooks (and only those) for versions that run with capture off, so the all-gathers, copies
  and the hooks' own `view_as` are not logged as model operations; tensors the hooks hand back in
  place of logged ones (aliases) keep their node, the gathered parameters count as the registered
  parameters at the same address, and saved activations that view a gathered parameter are copied
  before the post-hook frees its storage. Class names are the model's (`Linear`, not `FSDPLinear`);
  parameter logs give the global shape (`shape`, `global_shape`) and this rank's shard
  (`local_shape`). `leave` puts the hooks back.
* Refused with a `RuntimeError` naming the case: the FSDP1 wrapper (`FullyShardedDataParallel`),
  DTensor tensor parallelism (any parameter or buffer that is a `DTensor` not sharded by
  `fully_shard`, including FSDP2 over tensor-parallel parameters), and FSDP2 hooks that cast a
  logged tensor (a `MixedPrecisionPolicy` casting forward inputs or outputs to another dtype).

Nothing here imports `torch.distributed`: a model can hold FSDP modules or DTensors only once the
user imported them, so the checks read `sys.modules` and cost nothing otherwise.
"""

from __future__ import annotations

import dataclasses
import sys
import weakref
from typing import Any

from torch import Tensor, nn

from . import hot, wrap

TAG = hot.TAG
_DEPTH = 6


class ShardedModelError(RuntimeError):
    """A wrapped or sharded model torchlens cannot log faithfully."""


def unwrap_model(model: Any) -> Any:
    """`.module` of DDP / DataParallel wrappers (nested ones too); refuse what cannot be logged."""
    while isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    if isinstance(model, nn.Module):
        check_supported(model)
    return model


def module_class(mod: nn.Module) -> type:
    """The model's own class of a module: FSDP2 swaps a module's class for `FSDP<Class>`."""
    cls = type(mod)
    bases = cls.__bases__
    if len(bases) == 2 and bases[0].__name__ == "FSDPModule" and bases[0].__module__.startswith("torch.distributed"):
        return bases[1]
    return cls


def local_shape(p: Tensor) -> tuple[int, ...]:
    """This rank's shape of a parameter: the local shard of a `DTensor`, else the shape itself."""
    lt = getattr(p, "_local_tensor", None)
    return tuple((lt if isinstance(lt, Tensor) else p).shape)


def _fsdp2_in_use() -> bool:
    """Whether any module anywhere is managed by a composable API (`fully_shard`): cheap gate."""
    cs = sys.modules.get("torch.distributed._composable_state")
    return cs is not None and len(getattr(cs, "_module_state_mapping", ())) > 0


def _fsdp2_modules(model: nn.Module) -> list[nn.Module]:
    """The FSDP2 modules of `model`, in `modules()` order."""
    if not _fsdp2_in_use():
        return []
    cls = getattr(sys.modules.get("torch.distributed.fsdp"), "FSDPModule", None)
    if cls is None:
        return []
    return [m for m in model.modules() if isinstance(m, cls)]


# Models found free of the FSDP1 wrapper and of DTensors, by the structure epoch of that check
# (`parallelize_module` and FSDP1 wrapping register parameters/modules, which bumps the epoch).
_clean: weakref.WeakKeyDictionary[nn.Module, int] = weakref.WeakKeyDictionary()


def _param_groups(state: Any) -> list[Any]:
    groups = getattr(state, "_fsdp_param_groups", None)
    if groups is None:  # torch releases with one group per state
        g = getattr(state, "_fsdp_param_group", None)
        groups = [] if g is None else [g]
    return list(groups)


def _fsdp_params(mod: nn.Module) -> list[Any]:
    return [fp for g in _param_groups(mod._get_fsdp_state()) for fp in g.fsdp_params]


def check_supported(model: nn.Module) -> None:
    """Raise `ShardedModelError` for the FSDP1 wrapper and for DTensor tensor parallelism."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    dtensor_mod = sys.modules.get("torch.distributed.tensor")
    if fsdp is None and dtensor_mod is None:
        return
    fsdp2 = _fsdp2_in_use()
    if not fsdp2 and wrap.is_wrapped() and _clean.get(model) == wrap.structure_epoch:
        return
    mods = list(model.modules())
    fsdp1 = getattr(fsdp, "FullyShardedDataParallel", None) if fsdp is not None else None
    if fsdp1 is not None and any(isinstance(m, fsdp1) for m in mods):
        raise ShardedModelError(
            "torchlens.log_forward_pass does not support FullyShardedDataParallel (the FSDP1 wrapper): it "
            "replaces the module's parameters by views of one flat parameter and adds '_fsdp_wrapped_module' "
            "levels, so parameters and module addresses cannot be logged faithfully. Shard the model with "
            "torch.distributed.fsdp.fully_shard (FSDP2), which torchlens logs rank by rank, or log an "
            "unsharded copy of the model."
        )
    dtensor = getattr(dtensor_mod, "DTensor", None) if dtensor_mod is not None else None
    if dtensor is None:
        _remember_clean(model, fsdp2)
        return
    sharded: set[int] = set()
    for m in _fsdp2_modules(model):
        for fp in _fsdp_params(m):
            if getattr(fp, "is_dtensor", False):
                raise ShardedModelError(
                    "torchlens.log_forward_pass does not support FSDP2 (fully_shard) over DTensor tensor-parallel "
                    f"parameters (2-D parallelism; parameter {fp._module_info.param_name!r} of "
                    f"{module_class(fp._module_info.module).__name__}): its ops run on DTensors, whose local "
                    "values and collectives torchlens does not log. Log the model with FSDP2 alone, or unsharded."
                )
            sharded.add(id(fp.sharded_param))
    found = any(
        t is not None and issubclass(type(t), dtensor) and id(t) not in sharded
        for m in mods
        for d in (m.__dict__["_parameters"], m.__dict__["_buffers"])
        for t in d.values()
    )
    if not found:
        _remember_clean(model, fsdp2)
        return
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if isinstance(t, dtensor) and id(t) not in sharded:
            raise ShardedModelError(
                "torchlens.log_forward_pass does not support DTensor tensor parallelism "
                f"(torch.distributed.tensor.parallel; {name!r} is a DTensor): ops on DTensors run through "
                "DTensor dispatch and collectives that torchlens does not log as the model's operations. Log "
                "the model without parallelize_module (for example unsharded, or sharded with fully_shard)."
            )


def _remember_clean(model: nn.Module, fsdp2: bool) -> None:
    if not fsdp2 and wrap.is_wrapped():
        try:
            _clean[model] = wrap.structure_epoch
        except TypeError:  # not weakly referenceable
            pass


def refuse_for_fastlog(model: nn.Module) -> None:
    """fastlog has no FSDP support: refuse FSDP2 modules anywhere in the model (not only at its root),
    the FSDP1 wrapper and DTensor tensor parallelism."""
    check_supported(model)
    if _fsdp2_modules(model):
        raise ShardedModelError(
            "torchlens.fastlog does not support FullyShardedDataParallel (FSDP): record the unwrapped module on "
            "each rank instead (torchlens.log_forward_pass logs fully_shard models)"
        )


class _Sharded:
    """One capture's FSDP2 state: the swapped hooks as (hook dict, key, original, replacement), the
    gathered parameters seen so far and how many captured argument lists were already checked."""

    def __init__(self, mods: list[nn.Module]) -> None:
        self.patched: list[tuple[dict, Any, Any, Any]] = []
        self.states = [m._get_fsdp_state() for m in mods]
        self.args_done = 0
        self.copies: dict[int, nn.Parameter] = {}


def enter(model: nn.Module) -> _Sharded | None:
    """Before a capture of `model` (capture still off): make its FSDP2 hooks capture-aware."""
    mods = _fsdp2_modules(model)
    if not mods:
        return None
    ctx = _Sharded(mods)
    try:
        for m in mods:
            # At rest every parameter is its shard: the root keeps its gathered parameters after a
            # forward, and the capture's parameter walk must see the registered shards.
            m.reshard()
            for hooks in (m._forward_pre_hooks, m._forward_hooks):
                for key, h in list(hooks.items()):
                    state = getattr(h, "__self__", None)
                    name = getattr(getattr(h, "__func__", None), "__name__", "")
                    if type(state).__name__ != "FSDPState":
                        continue
                    if name == "_pre_forward":
                        w = _pre_hook(h, state)
                    elif name == "_post_forward":
                        w = _post_hook(h, state, ctx)
                    else:
                        continue
                    hooks[key] = w
                    ctx.patched.append((hooks, key, h, w))
        # FSDP2 sets parameters and classes without torch's registration hooks: re-walk the model.
        wrap._bump_epoch()
    except BaseException:
        leave(ctx)
        raise
    return ctx


def leave(ctx: _Sharded | None) -> None:
    """Put back the hooks `enter` swapped."""
    if ctx is None:
        return
    for hooks, key, orig, w in reversed(ctx.patched):
        if hooks.get(key) is w:
            hooks[key] = orig
    ctx.patched.clear()


def _pre_hook(h: Any, state: Any) -> Any:
    def pre_forward(module: nn.Module, args: tuple, kwargs: dict) -> Any:
        s = hot.get_session()
        if s is None:
            return h(module, args, kwargs)
        before = _tensors((args, kwargs))
        hot.set_session(None)
        try:
            res = h(module, args, kwargs)
            if res is not None:
                _keep_nodes(s, before, _tensors(res), "casts a forward input")
            _map_params(s, state)
        finally:
            hot.set_session(s)
        return res

    return pre_forward


def _post_hook(h: Any, state: Any, ctx: _Sharded) -> Any:
    def post_forward(module: nn.Module, inputs: Any, output: Any) -> Any:
        s = hot.get_session()
        if s is None:
            return h(module, inputs, output)
        before = _tensors(output)
        hot.set_session(None)
        try:
            for fp in _all_fsdp_params(state):
                up = getattr(fp, "_unsharded_param", None)
                if up is not None:
                    s.protect(up)  # a saved view of a gathered parameter outlives its storage
            if s.func_args:
                _copy_gathered_args(s, ctx)
            res = h(module, inputs, output)
            if res is not None:
                _keep_nodes(s, before, _tensors(res), "casts a forward output")
        finally:
            hot.set_session(s)
        return res

    return post_forward


def _all_fsdp_params(state: Any) -> list[Any]:
    return [fp for g in _param_groups(state) for fp in g.fsdp_params]


def _map_params(s: Any, state: Any) -> None:
    """The gathered parameters of `state` count as the registered (sharded) ones at their address."""
    prepared = getattr(s, "prepared", None)
    plan = getattr(prepared, "plan", None)
    if plan is None:
        return
    ids = s.param_ids
    if ids is plan.param_ids:  # the plan's table is cached across sessions: extend a copy
        ids = s.param_ids = dict(ids)
    for fp in _all_fsdp_params(state):
        idx = plan.param_ids.get(id(fp.sharded_param))
        if idx is None:
            continue
        info = fp._module_info
        for t in (getattr(fp, "_unsharded_param", None), info.module._parameters.get(info.param_name)):
            if t is not None:
                ids[id(t)] = idx


def _tensors(obj: Any, depth: int = 0, out: list | None = None) -> list[Tensor]:
    """The tensors of a hook's arguments or result, in a fixed order (FSDP rebuilds the same shape)."""
    if out is None:
        out = []
    if isinstance(obj, Tensor):
        out.append(obj)
    elif depth < _DEPTH:
        if isinstance(obj, tuple | list):
            for o in obj:
                _tensors(o, depth + 1, out)
        elif isinstance(obj, dict):
            for o in obj.values():
                _tensors(o, depth + 1, out)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                _tensors(getattr(obj, f.name, None), depth + 1, out)
    return out


def _same_view(a: Tensor, b: Tensor) -> bool:
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.storage_offset() == b.storage_offset()
        and a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
    )


def _keep_nodes(s: Any, before: list[Tensor], after: list[Tensor], what: str) -> None:
    """A tensor an FSDP hook returned in place of a logged one keeps the logged one's node.

    FSDP2 hands back aliases (autograd's view for its post-backward function, `view_as` for its
    pre-backward hook): same values, so the same node. Anything else would need an operation of its own.
    """
    if len(before) != len(after):  # not FSDP2's own rebuild: keep the node of each alias found
        for new in after:
            if getattr(new, TAG, None) is None:
                old = next((o for o in before if getattr(o, TAG, None) is not None and _same_view(o, new)), None)
                if old is not None:
                    setattr(new, TAG, getattr(old, TAG))
                    s.tagged.append(weakref.ref(new))
        return
    for old, new in zip(before, after, strict=True):
        if new is old:
            continue
        tg = getattr(old, TAG, None)
        if tg is None or getattr(new, TAG, None) is not None:
            continue
        if not _same_view(old, new):
            raise ShardedModelError(
                f"torchlens cannot log this FSDP2 model: its forward hook {what} ({old.dtype} -> {new.dtype}, "
                "a MixedPrecisionPolicy with cast_forward_inputs or output_dtype), an operation FSDP runs "
                "outside the model's forward. Use MixedPrecisionPolicy(cast_forward_inputs=False, "
                "output_dtype=None) or pass inputs already in the parameter dtype."
            )
        setattr(new, TAG, tg)
        s.tagged.append(weakref.ref(new))


def _copy_gathered_args(s: Any, ctx: _Sharded) -> None:
    """Captured arguments (`save_function_args`, validation's replay) hold parameters by reference;
    a gathered one loses its storage when FSDP reshards, so it is replaced by a copy first (one per
    parameter and capture). Each argument list is checked once: every parameter it names is still
    gathered when the first post-forward hook after its op runs."""
    gathered: dict[int, Any] = {}
    for state in ctx.states:
        for fp in _all_fsdp_params(state):
            up = getattr(fp, "_unsharded_param", None)
            if up is not None:
                gathered[id(up)] = up
    items = list(s.func_args.items())
    new_caps: dict[int, Any] = {}
    for nid, cap in items[ctx.args_done :]:
        if cap is None:
            continue
        new = new_caps.get(id(cap))
        if new is None:
            new = new_caps[id(cap)] = (cap[0], _swap(cap[1], gathered, ctx), _swap(cap[2], gathered, ctx))
        s.func_args[nid] = new
    ctx.args_done = len(items)


def _swap(v: Any, gathered: dict[int, Any], ctx: _Sharded, depth: int = 0) -> Any:
    if isinstance(v, nn.Parameter):
        if id(v) not in gathered:
            return v
        c = ctx.copies.get(id(v))
        if c is None:
            c = ctx.copies[id(v)] = nn.Parameter(hot.raw_detach(hot.raw_clone(v)), requires_grad=v.requires_grad)
        return c
    if depth < _DEPTH:
        tv = type(v)
        if tv is tuple or tv is list:
            return tv([_swap(b, gathered, ctx, depth + 1) for b in v])
        if tv is dict:
            return {k: _swap(b, gathered, ctx, depth + 1) for k, b in v.items()}
    return v
