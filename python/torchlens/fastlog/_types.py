"""Public value types of `torchlens.fastlog`: contexts, capture specs, records, errors (spec §10)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

from .._errors import RecordingConfigError, TrainingModeConfigError  # noqa: F401  (public here since 2.15)


class RecorderStateError(RuntimeError):
    """A `Recorder` used outside its `with` block, re-entered, or read too early."""


class RecoveryError(RuntimeError):
    """Nothing recoverable at a fastlog path."""


class BundleNotFinalizedError(RuntimeError):
    """`load()` on a partial fastlog directory."""


class RecordContextFieldError(AttributeError):
    """Access to a field a `RecordContext` does not have."""


class PredicateError(RuntimeError):
    """A predicate raised, or returned something other than bool / CaptureSpec / None."""

    def __init__(
        self,
        message: str,
        *,
        ctx: Any = None,
        result: Any = None,
        failures: tuple = (),
        total_count: int = 0,
        overflow: int = 0,
    ) -> None:
        super().__init__(message)
        self.ctx = ctx
        self.result = result
        self.failures = tuple(failures)
        self.total_count = total_count
        self.overflow = overflow


class PredicateFailure(NamedTuple):
    event_index: int
    kind: str
    label: str
    traceback: str


class ModuleStackFrame(NamedTuple):
    module_address: str
    module_type: str
    module_id: int
    pass_index: int


@dataclass(frozen=True)
class CaptureSpec:
    """What to keep for one event (spec §10.5)."""

    save_activation: bool = True
    save_metadata: bool = True
    keep_grad: bool = False
    device: Any = None
    dtype: Any = None

    def to_json(self) -> dict[str, Any]:
        return {
            "save_activation": self.save_activation,
            "save_metadata": self.save_metadata,
            "keep_grad": self.keep_grad,
            "device": None if self.device is None else str(self.device),
            "dtype": None if self.dtype is None else str(self.dtype),
        }


KEEP = CaptureSpec()
DROP = CaptureSpec(save_activation=False, save_metadata=False)


# --------------------------------------------------------------------------- RecordContext
# An event is a plain tuple built on the hot path; `RecordContext` is a lazy, frozen view of it.
# Layout of the event tuple:
E_KIND, E_EVENT, E_OP, E_TYPE, E_TYPENUM, E_CREATION, E_FUNC, E_FRAMES, E_TENSOR, E_OUTIDX = range(10)
E_BOTTOM, E_TIME, E_ARGS, E_KWARGS, E_ADDR, E_LABEL = range(10, 16)

FIELDS = (
    "kind",
    "label",
    "raw_label",
    "pass_index",
    "event_index",
    "op_index",
    "layer_type",
    "layer_type_num",
    "creation_order",
    "func_name",
    "module_address",
    "module_type",
    "module_pass_index",
    "module_stack",
    "recent_events",
    "recent_ops",
    "parent_labels",
    "input_output_address",
    "tensor_shape",
    "tensor_dtype",
    "tensor_device",
    "tensor_requires_grad",
    "output_index",
    "is_bottom_level_func",
    "time_since_pass_start",
    "sample_id",
)
_FIELD_SET = frozenset(FIELDS)
_TENSOR_KINDS = frozenset({"op", "input", "buffer"})


_tuple_new = tuple.__new__


class _TensorMeta(NamedTuple):
    shape: tuple[int, ...]
    dtype: Any
    device: Any
    requires_grad: bool


def _event_label(ev: tuple) -> str:
    lab = ev[E_LABEL]
    if lab is not None:
        return lab
    kind = ev[0]
    if kind == "module_enter" or kind == "module_exit":
        return f"{ev[E_ADDR] or 'root'}:{kind[7:]}:{ev[E_TYPENUM]}"
    return f"{ev[E_TYPE]}_{ev[E_TYPENUM]}_{ev[E_CREATION]}_raw"


class RecordContext(tuple):
    """Frozen view of one fastlog event (spec §10.4). Fields are computed on first access.

    A context handed to a predicate is valid during that call (its `recent_events` read the live
    history); `frozen()` returns a copy that can be kept. Stored records hold frozen contexts.
    """

    __slots__ = ()

    def __new__(
        cls, ev: tuple, hist: Any, pass_index: int, sample_id: Any, include_sources: bool, tagger: Any
    ) -> RecordContext:
        return tuple.__new__(cls, (ev, hist, (pass_index, sample_id, include_sources, tagger)))

    @classmethod
    def _fast(cls, ev: tuple, hist: Any, env: tuple) -> RecordContext:
        return tuple.__new__(cls, (ev, hist, env))

    @property
    def _ev(self) -> tuple:
        return tuple.__getitem__(self, 0)

    @property
    def _hist(self) -> Any:
        return tuple.__getitem__(self, 1)

    @property
    def _env(self) -> tuple:
        return tuple.__getitem__(self, 2)

    @property
    def _pass(self) -> int:
        return tuple.__getitem__(self, 2)[0]

    @property
    def _sample(self) -> Any:
        return tuple.__getitem__(self, 2)[1]

    @property
    def _history_sources(self) -> bool:
        return tuple.__getitem__(self, 2)[2]

    @property
    def _tagger(self) -> Any:
        return tuple.__getitem__(self, 2)[3]

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__

    def __getitem__(self, key: Any) -> Any:
        raise TypeError("RecordContext is not subscriptable; use its fields")

    def __len__(self) -> int:
        raise TypeError("RecordContext has no len(); use its fields")

    def __iter__(self) -> Any:
        raise TypeError("RecordContext is not iterable; use its fields")

    def __getattr__(self, name: str) -> Any:  # only reached for unknown names
        raise RecordContextFieldError(f"RecordContext has no field {name!r}")

    def __repr__(self) -> str:
        return (
            f"RecordContext(kind={self.kind!r}, label={self.label!r}, event_index={self.event_index}, "
            f"module_address={self.module_address!r})"
        )

    def __reduce__(self) -> Any:
        return (_from_json, (self.to_json(),))

    # -- fields
    @property
    def kind(self) -> str:
        return self._ev[0]

    @property
    def label(self) -> str:
        return _event_label(self._ev)

    @property
    def raw_label(self) -> str:
        ev = self._ev
        if ev[0] in _TENSOR_KINDS and ev[E_TYPE] is not None and ev[E_CREATION] is not None:
            return f"{ev[E_TYPE]}_{ev[E_TYPENUM]}_{ev[E_CREATION]}_raw"
        return _event_label(ev)

    def with_label(self, label: str) -> RecordContext:
        """A copy whose `label` is `label` (used to attach final `log_forward_pass` labels)."""
        ev = list(self._ev)
        ev[E_LABEL] = label
        return RecordContext._fast(tuple(ev), self._hist, self._env)

    @property
    def pass_index(self) -> int:
        return self._pass

    @property
    def event_index(self) -> int:
        return self._ev[1]

    @property
    def op_index(self) -> int | None:
        return self._ev[2]

    @property
    def layer_type(self) -> str | None:
        return self._ev[3]

    @property
    def layer_type_num(self) -> int | None:
        return None if self._ev[3] is None else self._ev[4]

    @property
    def creation_order(self) -> int | None:
        return self._ev[5]

    @property
    def func_name(self) -> str | None:
        return self._ev[6]

    @property
    def module_stack(self) -> tuple[ModuleStackFrame, ...]:
        return tuple([ModuleStackFrame._make(f) for f in self._ev[7]])

    @property
    def module_address(self) -> str | None:
        fr = self._ev[7]
        return fr[-1][0] if fr else None

    @property
    def module_type(self) -> str | None:
        fr = self._ev[7]
        return fr[-1][1] if fr else None

    @property
    def module_pass_index(self) -> int | None:
        fr = self._ev[7]
        return fr[-1][3] if fr else None

    @property
    def recent_events(self) -> tuple[RecordContext, ...]:
        env = self._env
        return tuple([RecordContext._fast(e, (), env) for e in self._hist])

    @property
    def recent_ops(self) -> tuple[RecordContext, ...]:
        kinds = {"op", "input", "buffer"} if self._history_sources else {"op"}
        return tuple(c for c in self.recent_events if c.kind in kinds)

    @property
    def parent_labels(self) -> tuple[str, ...]:
        ev = self._ev
        args = ev[12]
        if args is None:
            return ()
        if type(args) is tuple and (not args or type(args[0]) is str) and ev[13] is _RESOLVED:
            return args
        tg = self._tagger
        return tg.parent_labels(args, ev[13]) if tg is not None else ()

    @property
    def input_output_address(self) -> str | None:
        return self._ev[14]

    def _meta(self) -> _TensorMeta | None:
        t = self._ev[8]
        if t is None:
            return None
        if type(t) is _TensorMeta:
            return t
        return _tuple_new(_TensorMeta, (tuple(t.shape), t.dtype, t.device, t.requires_grad))

    @property
    def tensor_shape(self) -> tuple[int, ...] | None:
        m = self._meta()
        return None if m is None else m.shape

    @property
    def tensor_dtype(self) -> Any:
        m = self._meta()
        return None if m is None else m.dtype

    @property
    def tensor_device(self) -> Any:
        m = self._meta()
        return None if m is None else m.device

    @property
    def tensor_requires_grad(self) -> bool | None:
        m = self._meta()
        return None if m is None else m.requires_grad

    @property
    def output_index(self) -> int | None:
        return self._ev[9]

    @property
    def is_bottom_level_func(self) -> bool | None:
        return self._ev[10]

    @property
    def time_since_pass_start(self) -> float:
        return self._ev[11]

    @property
    def sample_id(self) -> Any:
        return self._sample

    # -- persistence
    def frozen(self, with_history: bool = True) -> RecordContext:
        """A copy that holds no tensors or argument objects (safe to keep after the pass)."""
        ev = self._ev
        if ev[13] is _RESOLVED and not (with_history and self._hist):
            return self if self._env[3] is None else RecordContext._fast(ev, (), (*self._env[:3], None))
        new = (
            *ev[:8],
            self._meta(),
            ev[9],
            ev[10],
            ev[11],
            self.parent_labels if ev[12] is not None else None,
            _RESOLVED,
            ev[14],
            _event_label(ev),
        )
        hist: tuple = ()
        if with_history and self._hist:
            hist = tuple(c.frozen(False)._ev for c in self.recent_events)
        env = self._env
        return RecordContext._fast(new, hist, (env[0], env[1], env[2], None))

    def to_json(self) -> dict[str, Any]:
        """JSON-able dict of every field except the recent history (dtype/device as strings)."""
        m = self._meta()
        return {
            "kind": self.kind,
            "label": self.label,
            "raw_label": self.raw_label,
            "pass_index": self._pass,
            "event_index": self.event_index,
            "op_index": self.op_index,
            "layer_type": self.layer_type,
            "layer_type_num": self.layer_type_num,
            "creation_order": self.creation_order,
            "func_name": self.func_name,
            "module_address": self.module_address,
            "module_type": self.module_type,
            "module_pass_index": self.module_pass_index,
            "module_stack": [list(f) for f in self.module_stack],
            "parent_labels": list(self.parent_labels),
            "input_output_address": self.input_output_address,
            "tensor_shape": None if m is None else list(m.shape),
            "tensor_dtype": None if m is None else str(m.dtype),
            "tensor_device": None if m is None else str(m.device),
            "tensor_requires_grad": None if m is None else m.requires_grad,
            "output_index": self.output_index,
            "is_bottom_level_func": self.is_bottom_level_func,
            "time_since_pass_start": self.time_since_pass_start,
            "sample_id": _jsonable(self._sample),
        }


def _simple_getter(i: int) -> Any:
    tg = tuple.__getitem__

    def get(self: RecordContext) -> Any:
        return tg(self, 0)[i]

    return get


for _name, _i in (
    ("kind", 0),
    ("event_index", 1),
    ("op_index", 2),
    ("layer_type", 3),
    ("creation_order", 5),
    ("func_name", 6),
    ("output_index", 9),
    ("is_bottom_level_func", 10),
    ("time_since_pass_start", 11),
    ("input_output_address", 14),
):
    setattr(RecordContext, _name, property(_simple_getter(_i), doc=f"RecordContext.{_name}"))


class _Resolved:
    def __repr__(self) -> str:
        return "RESOLVED"


_RESOLVED: Any = _Resolved()


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return repr(v)


_DTYPES = {str(getattr(torch, n)): getattr(torch, n) for n in dir(torch) if isinstance(getattr(torch, n), torch.dtype)}


def _from_json(d: dict[str, Any]) -> RecordContext:
    """Rebuild a (history-free) context from `RecordContext.to_json()` output. Never evaluates code."""
    if not isinstance(d, dict):
        raise ValueError("context entry is not an object")
    frames = tuple((str(f[0]), str(f[1]), int(f[2]), int(f[3])) for f in (d.get("module_stack") or []))
    shape = d.get("tensor_shape")
    meta = None
    if shape is not None:
        dt = d.get("tensor_dtype")
        dev = d.get("tensor_device")
        meta = _TensorMeta(
            tuple(int(x) for x in shape),
            _DTYPES.get(str(dt), dt),
            torch.device(dev) if isinstance(dev, str) else None,
            bool(d.get("tensor_requires_grad")),
        )
    parents = d.get("parent_labels")
    ev = (
        str(d.get("kind")),
        d.get("event_index"),
        d.get("op_index"),
        d.get("layer_type"),
        d.get("layer_type_num"),
        d.get("creation_order"),
        d.get("func_name"),
        frames,
        meta,
        d.get("output_index"),
        d.get("is_bottom_level_func"),
        d.get("time_since_pass_start"),
        tuple(str(p) for p in parents) if parents is not None else None,
        _RESOLVED,
        d.get("input_output_address"),
        str(d.get("label")),
    )
    return RecordContext(ev, (), d.get("pass_index"), d.get("sample_id"), False, None)


@dataclass(frozen=True)
class ActivationRecord:
    """One retained event (spec §10.7)."""

    ctx: RecordContext
    spec: CaptureSpec
    ram_payload: Any = None
    disk_payload: Any = None
    transformed_ram_payload: Any = None
    transformed_disk_payload: Any = None
    metadata: Any = None
    recorded_at: float = 0.0

    @property
    def label(self) -> str:
        return self.ctx.label

    @property
    def activation(self) -> Any:
        """The retained tensor: RAM copy if any, else the disk payload loaded by `load(..., load_payloads=True)`."""
        if self.ram_payload is not None:
            return self.ram_payload
        return self.disk_payload


_object_new = object.__new__


def new_record(
    ctx: RecordContext,
    spec: CaptureSpec,
    ram_payload: Any,
    disk_payload: Any,
    transformed_ram_payload: Any,
    transformed_disk_payload: Any,
    metadata: Any,
    recorded_at: float,
) -> ActivationRecord:
    """`ActivationRecord(...)` without the frozen-dataclass `__init__` (one per kept event on the hot path)."""
    r = _object_new(ActivationRecord)
    r.__dict__.update(
        ctx=ctx,
        spec=spec,
        ram_payload=ram_payload,
        disk_payload=disk_payload,
        transformed_ram_payload=transformed_ram_payload,
        transformed_disk_payload=transformed_disk_payload,
        metadata=metadata,
        recorded_at=recorded_at,
    )
    return r
