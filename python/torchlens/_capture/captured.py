"""The slow-path capture of call arguments (`save_function_args`, `save_rng_states`).

`copy_arg` copies one argument as it was before the call (a logged tensor becomes a `ParentRef`
holding its producing node and that copy); `prune_versions` then drops each copy that equals
its parent's saved activation, so that only the values changed in place before a child ran stay
(`children_tensor_versions`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.nn import Parameter

from .._data import GeneratorSnapshot, ParentRef
from .hot import TAG, raw_clone, raw_detach

_type = type
_getattr = getattr
_raw_clone = raw_clone
_raw_detach = raw_detach


def identity(t: Tensor) -> Tensor:
    """What an identity node applies: a module returned a tensor it did not compute (spec §7.4)."""
    return t


def prune_versions(saved: dict[int, Tensor], func_args: dict[int, Any]) -> None:
    """Drop each captured parent value that equals the parent's saved activation (keep the differing ones)."""
    from torch import equal

    seen: set[int] = set()
    for cap in func_args.values():
        if cap is None or id(cap) in seen:
            continue
        seen.add(id(cap))
        stack = [cap[1], cap[2]]
        while stack:
            v = stack.pop()
            tv = _type(v)
            if tv is ParentRef:
                s = saved.get(v.nid)
                val = v.value
                if s is not None and isinstance(val, Tensor):
                    try:
                        same = s.shape == val.shape and s.dtype == val.dtype and bool(equal(_raw_detach(s), val))
                    except Exception:
                        same = False
                    if same:
                        v.value = None
            elif tv is list or tv is tuple:
                stack.extend(v)
            elif tv is dict:
                stack.extend(v.values())


def rng_state() -> Any:
    import torch

    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return (cpu, cuda)


def copy_arg(a: Any, refs: list | None, depth: int = 0) -> Any:
    """Copy of one call argument as it was before the call: tensors cloned, logged tensors as ParentRef
    (with `refs` None, as for keyword arguments, which are never parents, only copies)."""
    if isinstance(a, Tensor):
        if isinstance(a, Parameter):
            return a
        tg = _getattr(a, TAG, None)
        c = _raw_detach(_raw_clone(a))
        if tg is not None and refs is not None:
            r = ParentRef(tg, c)
            refs.append((r, a))
            return r
        return c
    if _type(a).__name__ == "Generator" and hasattr(a, "get_state"):
        return GeneratorSnapshot(a)
    if depth < 6:
        ta = _type(a)
        if ta is tuple or ta is list:
            return ta([copy_arg(b, refs, depth + 1) for b in a])
        if ta is dict:
            return {k: copy_arg(v, refs, depth + 1) for k, v in a.items()}
    return a
