"""Plain-data snapshot of one capture: everything a ModelLog shows, with no live model objects.

A `ModelLog` reads only this and the core's `Finalized` columns, so a log rebuilt from a saved
bundle (the same data, re-finalized by the core) behaves exactly like a fresh one.

This is the bottom layer: the record layout (field indices, node kinds), the op flags and the
argument-token layout are defined here, and every other layer reads records through these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

# ---------------------------------------------------------------- records (one tuple of ints per node)
# Must match torchlens._core.RECORD_FIELDS / RECORD_VERSION (checked by tests/test_core_boundary.py).
RECORD_FIELDS = ("kind", "func", "layer_type", "arg_hash", "out_index", "module_stack", "params", "parents", "role")
RECORD_VERSION = 1
# Index of each field in a record, e.g. `records[nid][F_PARENTS]`.
F_KIND = 0
F_FUNC = 1  # string id of the function name
F_LAYER_TYPE = 2  # string id of the layer type
F_ARG_HASH = 3
F_OUT_INDEX = 4  # position in the op's returned tuple/list/dict; OUT_SINGLE for a lone tensor
F_MODULE_STACK = 5  # index into CaptureData.module_stacks
F_PARAMS = 6  # parameter ids
F_PARENTS = 7  # node ids
F_ROLE = 8  # string id of an input's/buffer's address; NO_STR for ops
NO_STR = 0xFFFFFFFF
OUT_SINGLE = -1

# Node kinds (record field F_KIND). KIND_OUTPUT never appears in a record: the core appends one
# synthetic output node per model output after the records, and ModelLog reports it as this kind.
KIND_INPUT = 0
KIND_BUFFER = 1
KIND_OP = 2
KIND_OUTPUT = 3

# ---------------------------------------------------------------- op flags (the in-place rule)
FLAG_INPLACE = 1
FLAG_RETURNS_NONE_SELF = 2  # returns None after changing args[0]; args[0] is taken as the output
FLAG_SELF_NOT_PARENT = 4  # x.new_zeros(...) only borrows dtype/device from x (spec §7.3)

_INPLACE_EXTRA = frozenset({"__setitem__", "__delitem__"})
_NONE_SELF = frozenset({"__setitem__", "__delitem__", "zero_"})


def op_flags(name: str) -> int:
    """The FLAG_* bits of a torch callable, from its name (spec §7.2 steps 7-8)."""
    flags = 0
    if is_inplace_name(name):
        flags |= FLAG_INPLACE
    if name in _NONE_SELF:
        flags |= FLAG_RETURNS_NONE_SELF
    if name.startswith("new_"):
        flags |= FLAG_SELF_NOT_PARENT
    return flags


# Functions whose later positional tensor arguments 2.15 does not record as parents (found by
# running TorchLens 2.15.0 as a black box, `make diff-peer`): name -> how many leading positional
# arguments can be parents. The rest (a copy's source, a scatter's index and source, a
# `masked_fill` value, `clamp`'s max, the template of `type_as` / `*_like`) are only arguments.
PARENT_LIMITS: dict[str, int] = {
    **dict.fromkeys(
        """copy_ fill_ set_ type_as expand_as view_as reshape_as searchsorted repeat_interleave bincount
        diagonal_scatter select_scatter slice_scatter as_strided_scatter diff index_add index_add_ scatter_add
        scatter_add_ scatter_reduce scatter_reduce_ index_reduce index_reduce_""".split(),
        1,
    ),
    **dict.fromkeys("masked_fill masked_fill_ masked_scatter masked_scatter_ clamp clamp_ clip clip_".split(), 2),
    **dict.fromkeys("zeros_like ones_like full_like empty_like rand_like randn_like randint_like".split(), 0),
}


# The few functions whose keyword tensor arguments 2.15 does record as parents (keyword arguments
# are otherwise no edges), after the positional ones: name -> keyword names.
KWARG_PARENTS: dict[str, tuple[str, ...]] = {
    "diff": ("prepend", "append"),
    "isin": ("test_elements",),
    "bucketize": ("boundaries",),
    "ldexp": ("other",),
    "trapezoid": ("x",),
    "cumulative_trapezoid": ("x",),
    "_grouped_mm": ("offs",),
}


def is_inplace_name(name: str) -> bool:
    """Whether the function named `name` changes its first argument in place."""
    return (name.endswith("_") and not name.endswith("__")) or name.startswith("__i") or name in _INPLACE_EXTRA


def returns_none_self(name: str) -> bool:
    """Whether the function returns None and its result is its (changed) first argument."""
    return name in _NONE_SELF


# ---------------------------------------------------------------- argument tokens
# Per node, `CaptureData.toks[nid]` is `(positional, kwargs)`: a tuple of tokens for the
# positional arguments and a tuple of `(name, token)` pairs for the keyword arguments. A token is
# a tensor argument's `torch.Size`, None for a parameter, the value itself for a scalar or
# hashable, a tuple of tokens for a tuple/list (a dict: a tuple of `(key, token)` pairs), or
# `str(value)` for anything else. Sources (inputs, buffers) have `NO_TOKENS`.
NO_TOKENS: tuple[tuple, tuple] = ((), ())


def split_tokens(entry: Any) -> tuple[list, dict]:
    """One node's argument tokens as (positional tokens, {kwarg name: token})."""
    if not entry:
        return [], {}
    pos, kw = entry
    return list(pos), dict(kw)


def legacy_tokens(flat: tuple) -> tuple[tuple, tuple]:
    """Split a pre-split token tuple (older bundles stored kwargs as a trailing tuple of pairs)."""
    pos = tuple(flat)
    if pos and type(pos[-1]) is tuple and pos[-1]:
        last = pos[-1]
        if all(type(x) is tuple and len(x) == 2 and type(x[0]) is str for x in last):
            return pos[:-1], last
    return pos, ()


# ---------------------------------------------------------------- raw labels
def raw_type_counts(records: Any) -> list[int]:
    """Per record, how many records of its layer type came up to and including it (raw label numbers)."""
    counts: dict[int, int] = {}
    out = []
    for r in records:
        t = r[F_LAYER_TYPE]
        n = counts[t] = counts.get(t, 0) + 1
        out.append(n)
    return out


def raw_label(type_name: str, kind: int, type_count: int, creation: int) -> str:
    """2.15's raw label (spec §5): `conv2d_3_47_raw` (type, count of that type, creation order) for
    an op; sources (inputs, buffers) and outputs carry no creation number (`input_1_raw`)."""
    if kind == KIND_OP:
        return f"{type_name}_{type_count}_{creation}_raw"
    return f"{type_name}_{type_count}_raw"


# ---------------------------------------------------------------- captured call arguments
class ParentRef:
    """A captured argument that was a logged tensor: the producing node and its value at call time."""

    __slots__ = ("nid", "value")

    def __init__(self, nid: int, value: Any) -> None:
        self.nid = nid
        self.value = value

    def __repr__(self) -> str:
        return f"ParentRef({self.nid})"


class GeneratorSnapshot:
    """A `torch.Generator` argument as it was before the call; `make()` gives a fresh equal generator."""

    __slots__ = ("device", "state")

    def __init__(self, g: Any) -> None:
        self.device = g.device
        self.state = g.get_state()

    def make(self) -> Any:
        g = torch.Generator(device=self.device)
        g.set_state(self.state)
        return g


def map_captured(obj: Any, ref: Any, leaf: Any = None, depth: int = 0) -> Any:
    """Captured call arguments rebuilt for a call: each `ParentRef` becomes `ref(r)`, each generator
    snapshot a fresh generator, every other leaf `leaf(x)` (itself when `leaf` is None).

    Depth is bounded like the capture that stored the arguments (six levels).
    """
    if isinstance(obj, ParentRef):
        return ref(obj)
    if isinstance(obj, GeneratorSnapshot):
        return obj.make()
    if depth < 6:
        if type(obj) is tuple or type(obj) is list:
            return type(obj)(map_captured(o, ref, leaf, depth + 1) for o in obj)
        if type(obj) is dict:
            return {k: map_captured(v, ref, leaf, depth + 1) for k, v in obj.items()}
    return obj if leaf is None else leaf(obj)


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
    # This rank's shard of a sharded (DTensor) parameter; `shape` is the global one. None: not recorded.
    local_shape: tuple[int, ...] | None = field(default=None, compare=False)

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
    stack_lasti: list[int] = field(default_factory=list)  # per stack entry: the call's instruction offset
    stack_parent: list[int] = field(default_factory=list)
    toks: list[tuple] = field(default_factory=list)  # (positional, kwargs) per node: see split_tokens
    func_times: Any = None
    func_args: dict[int, tuple] = field(default_factory=dict)
    func_rng: dict[int, Any] = field(default_factory=dict)
    caller_site: tuple | None = None
    module_objects: dict[str, Any] = field(default_factory=dict)
    # Per-op state read right after each call (see _capture/opstate.py); None when not recorded (a log
    # loaded from a bundle). `autograd_saved`: record -> (bytes, count) of the tensors autograd saved, for
    # ops that saved any. `autocast_states`: interned ((device, enabled, dtype), ...) tuples;
    # `autocast_ids`: record -> index into them, absent meaning 0 (the state when the capture began).
    autograd_saved: Any = None  # `_capture.opstate.SavedColumn` or a dict: read with `.get(record, default)`
    autocast_states: list[tuple] | None = None
    autocast_ids: dict[int, int] = field(default_factory=dict)
    grad_fn_ids: Any = field(default_factory=dict)  # record -> id(grad_fn), `.get` only (live logs only)
    # (record, value, code, instruction offset, line) per `Tensor.__bool__` on a 0-d bool (conditionals).
    bool_events: list[tuple] = field(default_factory=list)

    def core_inputs(self) -> tuple:
        return (
            self.strings,
            self.records,
            self.module_stacks,
            self.module_exits,
            self.module_passes,
            self.outputs,
        )
