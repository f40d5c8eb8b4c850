"""Lazy log objects beyond layers: call-stack frames, modules, parameters, buffers, accessors.

Everything here is a view over a `ModelLog`'s plain data (`_data`) and the core's columns; the
objects are created on first access and cache only small derived tables on the ModelLog.
"""

from __future__ import annotations

import inspect
import linecache
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ._export import ExportMixin, frame
from ._format import human_readable_size
from .layer_log import LayerPassLog

if TYPE_CHECKING:
    from ._data import ParamInfo
    from .layer_log import LayerLog
    from .model_log import ModelLog

_QUANTIZED = {getattr(torch, n) for n in ("qint8", "quint8", "qint32", "quint4x2", "quint2x4") if hasattr(torch, n)}

# --------------------------------------------------------------------------- call stacks


class FuncCallLocation:
    """One frame of an operation's call stack (spec §3.5). Source text is loaded on first access."""

    def __init__(self, code: Any, line_number: int, num_context_lines: int = 7, source_loading_enabled: bool = True):
        self._code = code
        self.file: str = code.co_filename
        self.line_number: int = int(line_number)
        self.func_name: str = code.co_name
        self.code_firstlineno: int = code.co_firstlineno
        self.code_qualname: str = getattr(code, "co_qualname", code.co_name)
        self.col_offset: int | None = None
        self.source_loading_enabled = bool(source_loading_enabled)
        self.num_context_lines = int(num_context_lines)
        self._loaded = False
        self._context: list[str] | None = None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.source_loading_enabled:
            return
        n = self.num_context_lines
        lines = []
        for ln in range(max(1, self.line_number - n), self.line_number + n + 1):
            text = linecache.getline(self.file, ln)
            if not text and ln > self.line_number:
                break
            lines.append(text.rstrip("\n"))
        self._context = lines or None
        self._first_ctx_line = max(1, self.line_number - n)

    @property
    def code_context(self) -> list[str] | None:
        self._load()
        return self._context

    @property
    def source_context(self) -> str:
        ctx = self.code_context
        return "None" if ctx is None else "\n".join(ctx)

    @property
    def call_line(self) -> str:
        ctx = self.code_context
        if ctx is None:
            return ""
        i = self.line_number - self._first_ctx_line
        return ctx[i].strip() if 0 <= i < len(ctx) else ""

    @property
    def code_context_labeled(self) -> str:
        ctx = self.code_context
        if ctx is None:
            return ""
        out = []
        for i, text in enumerate(ctx):
            mark = "--->  " if self._first_ctx_line + i == self.line_number else " " * 8
            out.append(mark + text)
        return "\n".join(out)

    @property
    def func_signature(self) -> str | None:
        if not self.source_loading_enabled:
            return None
        line = linecache.getline(self.file, self.code_firstlineno).strip()
        return line or None

    @property
    def func_docstring(self) -> str | None:
        if not self.source_loading_enabled:
            return None
        consts = self._code.co_consts
        return inspect.cleandoc(consts[0]) if consts and isinstance(consts[0], str) else None

    def __getitem__(self, i: int) -> str:
        ctx = self.code_context
        if ctx is None:
            raise IndexError("source context is not available for this frame")
        return ctx[i]

    def __len__(self) -> int:
        ctx = self.code_context
        return 0 if ctx is None else len(ctx)

    def __repr__(self) -> str:
        lines = [
            "FuncCallLocation:",
            f"  file: {self.file}",
            f"  line: {self.line_number}",
            f"  function: {self.func_name}",
        ]
        if self.code_context is None:
            lines.append("  code: source unavailable")
        else:
            lines.append("  code:")
            lines.append(self.code_context_labeled)
        return "\n".join(lines)


def call_stack(log: ModelLog, pos: int) -> list[FuncCallLocation]:
    """Frames outer→inner: module call sites, the op's own frames, then the user's call (spec §3.5)."""
    d = log._data
    if d.site_ids is None or log._is_output(pos):
        return []
    nid = log._record_index(pos)
    frames: list[tuple] = []
    stacks: list[int] = []
    sid = log._records[nid][5]
    parent = d.stack_parent
    while sid and sid < len(parent):
        stacks.append(sid)
        sid = parent[sid]
    for s in reversed(stacks):
        if s < len(d.stack_sites):
            frames.extend(reversed(d.sites[d.stack_sites[s]]))
    if nid < len(d.site_ids):
        frames.extend(reversed(d.sites[d.site_ids[nid]]))
    if d.caller_site is not None:
        frames.append(d.caller_site)
    n = getattr(log, "num_context_lines", 7)
    src = getattr(log, "save_source_context", False)
    return [FuncCallLocation(co, ln, n, src) for co, ln in frames]


# --------------------------------------------------------------------------- parameters


class ParamLog(ExportMixin):
    """One parameter of the model (spec §4.4)."""

    FIELDS = (
        "address name shape dtype num_params memory memory_str trainable is_quantized has_optimizer "
        "module_address module_type barcode num_passes used_by_layers linked_params"
    ).split()

    def __init__(self, log: ModelLog, index: int) -> None:
        self._log = log
        self._index = index
        info: ParamInfo = log._data.params[index]
        self._info = info
        self.address = info.address
        self.name = info.name
        self.shape = tuple(info.shape)
        self.dtype = info.dtype
        self.num_params = info.numel
        self.memory = info.nbytes
        self.trainable = info.requires_grad
        self.is_quantized = info.dtype in _QUANTIZED
        self.has_optimizer = None
        self.module_address = info.module_address
        self.barcode = f"param_{index}"
        self._param_ref = info.param
        self._grad_cache: tuple | None = None

    @property
    def memory_str(self) -> str:
        return human_readable_size(self.memory)

    @property
    def module_type(self) -> str | None:
        if self.module_address == "self":
            return self._log.model_name
        return self._log._module_types().get(self.module_address)

    @property
    def used_by_layers(self) -> list[str]:
        return self._log._param_users().get(self._index, [])

    @property
    def num_passes(self) -> int:
        return max(1, len(self.used_by_layers))

    @property
    def linked_params(self) -> list[str]:
        return sorted(self._log._param_links().get(self._index, set()))

    def _live(self) -> Any:
        r = self._param_ref
        return r() if callable(r) else r

    def _grad_info(self) -> tuple | None:
        if self._grad_cache is not None:
            return self._grad_cache
        p = self._live()
        g = None if p is None else p.grad
        if g is None:
            return None
        self._grad_cache = (tuple(g.shape), g.dtype, g.numel() * g.element_size())
        return self._grad_cache

    @property
    def has_grad(self) -> bool:
        return self._grad_info() is not None

    @property
    def grad_shape(self) -> tuple | None:
        g = self._grad_info()
        return None if g is None else g[0]

    @property
    def grad_dtype(self) -> Any:
        g = self._grad_info()
        return None if g is None else g[1]

    @property
    def grad_memory(self) -> int | None:
        g = self._grad_info()
        return None if g is None else g[2]

    @property
    def grad_memory_str(self) -> str | None:
        g = self.grad_memory
        return None if g is None else human_readable_size(g)

    def release_param_ref(self) -> None:
        self._grad_info()
        self._param_ref = None

    def __len__(self) -> int:
        return self.num_params

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def to_pandas(self) -> Any:
        return frame([self.row()], self.FIELDS)

    def __repr__(self) -> str:
        lines = [
            f"ParamLog: {self.address}",
            f"  shape: {self.shape}",
            f"  dtype: {self.dtype}",
            f"  size: {self.num_params} params ({self.memory_str})",
            "  trainable" if self.trainable else "  frozen",
            f"  has_grad: {self.has_grad}",
            f"  module: {self.module_address} ({self.module_type})",
        ]
        if self.used_by_layers:
            lines.append("  used by: " + ", ".join(self.used_by_layers))
        if self.linked_params:
            lines.append("  linked: " + ", ".join(self.linked_params))
        if self.num_passes > 1:
            lines.append(f"  num_passes: {self.num_passes}")
        return "\n".join(lines)


def _short_lookup(items: list[Any], key: Any, kind: str, addr_of: Any) -> Any:
    if isinstance(key, int) and not isinstance(key, bool):
        return items[key]
    for it in items:
        if addr_of(it) == key:
            return it
    short = [it for it in items if addr_of(it).rsplit(".", 1)[-1] == key]
    if len(short) == 1:
        return short[0]
    if len(short) > 1:
        raise KeyError(f"Ambiguous short name '{key}' — use full address")
    valid = [addr_of(it) for it in items][:20]
    raise KeyError(f"{kind} '{key}' not found. Valid addresses: {valid}...")


class _AddressAccessor(ExportMixin):
    """Items by int, full address or unambiguous short name (the last address segment)."""

    _kind = "Item"

    def __init__(self, items: list[Any]) -> None:
        self._items = items

    @staticmethod
    def _address(item: Any) -> str:
        raise NotImplementedError

    def __getitem__(self, key: Any) -> Any:
        return _short_lookup(self._items, key, self._kind, self._address)

    def __contains__(self, key: Any) -> bool:
        try:
            self[key]
        except (KeyError, IndexError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


class ParamAccessor(_AddressAccessor):
    """Parameters by int, full address or unambiguous short name (spec §4.4)."""

    _kind = "Parameter"

    def __init__(self, params: list[ParamLog]) -> None:
        super().__init__(params)
        self._params = params

    @staticmethod
    def _address(item: Any) -> str:
        return item.address

    def keys(self) -> list[str]:
        return [p.address for p in self._params]

    def values(self) -> list[ParamLog]:
        return list(self._params)

    def items(self) -> list[tuple[str, ParamLog]]:
        return [(p.address, p) for p in self._params]

    def to_pandas(self) -> Any:
        return frame([p.row() for p in self._params], ParamLog.FIELDS)

    def __repr__(self) -> str:
        rows = [
            f"  '{p.address}': ParamLog ({', '.join(map(str, p.shape))}) {p.dtype} "
            f"{'trainable' if p.trainable else 'frozen'}"
            for p in self._params
        ]
        return "{\n" + ",\n".join(rows) + "\n}" if rows else "{}"


# --------------------------------------------------------------------------- buffers

BUFFER_LOG_FIELD_ORDER = (
    "buffer_address name module_address buffer_pass layer_label pass_num tensor_shape tensor_dtype tensor_memory "
    "tensor_memory_str has_saved_activations has_gradient grad_shape grad_dtype grad_memory grad_memory_str "
    "buffer_parent containing_module containing_modules"
).split()


class BufferLog(LayerPassLog):
    """A buffer source node: a LayerPassLog with buffer-specific properties (spec §4.5)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return (self.buffer_address or "").rsplit(".", 1)[-1]

    @property
    def module_address(self) -> str:
        a = self.buffer_address or ""
        return a.rsplit(".", 1)[0] if "." in a else "self"

    def buffer_row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in BUFFER_LOG_FIELD_ORDER}

    def __repr__(self) -> str:
        lines = [
            f"BufferLog: {self.buffer_address}",
            f"  shape: {list(self.tensor_shape)}",
            f"  dtype: {self.tensor_dtype}",
            f"  size: {self.tensor_memory_str}",
            f"  module: {self.module_address}",
            f"  pass: {self.buffer_pass}",
            f"  has_saved_activations: {self.has_saved_activations}",
        ]
        if self.has_gradient:
            lines.append("  has_gradient: True")
        lines.append(f"  layer_label: {self.layer_label}")
        return "\n".join(lines)


class BufferAccessor(_AddressAccessor):
    """Buffer nodes by int, full address or unambiguous short name."""

    _kind = "Buffer"

    def __init__(self, buffers: list[BufferLog]) -> None:
        super().__init__(buffers)
        self._buffers = buffers

    @staticmethod
    def _address(item: Any) -> str:
        return item.buffer_address

    def to_pandas(self) -> Any:
        return frame([b.buffer_row() for b in self._buffers], BUFFER_LOG_FIELD_ORDER)

    def __repr__(self) -> str:
        return f"BufferAccessor({len(self._buffers)} buffers):" + "".join(
            f"\n  '{b.buffer_address}': {list(b.tensor_shape)} {b.tensor_dtype}" for b in self._buffers
        )


# --------------------------------------------------------------------------- modules

MODULE_PASS_LOG_FIELD_ORDER = (
    "module_address all_module_addresses is_shared_module pass_num pass_label layers num_layers input_layers "
    "output_layers forward_args_summary forward_kwargs_summary call_parent call_children"
).split()


class ModulePassLog(ExportMixin):
    """One invocation of a module (spec §4.2)."""

    def __init__(self, log: ModelLog, module: ModuleLog, pass_num: int) -> None:
        self._log = log
        self._module = module
        self.module_address = module.address
        self.all_module_addresses = module.all_addresses
        self.is_shared_module = len(module.all_addresses) > 1
        self.pass_num = pass_num
        self.pass_label = f"{module.address}:{pass_num}"
        self.forward_args_summary = None
        self.forward_kwargs_summary = None

    @property
    def _positions(self) -> list[int]:
        if self.module_address == "self":
            return list(range(len(self._log)))
        return self._log._module_pass_positions().get(self.pass_label, [])

    @property
    def layers(self) -> list[str]:
        labels = self._log._col("labels")
        return [labels[p] for p in self._positions]

    @property
    def num_layers(self) -> int:
        return len(self._positions)

    @property
    def input_layers(self) -> list[str]:
        labels = self._log._col("labels")
        parents = self._log._col("parents")
        inside = set(self._positions)
        return [labels[p] for p in self._positions if not parents[p] or any(q not in inside for q in parents[p])]

    @property
    def output_layers(self) -> list[str]:
        if self.module_address == "self":
            return self._log.output_layers
        labels = self._log._col("labels")
        return [labels[p] for p in self._log._module_pass_outputs().get(self.pass_label, [])]

    @property
    def call_parent(self) -> str | None:
        return self._log._module_call_tree()[0].get(self.pass_label)

    @property
    def call_children(self) -> list[str]:
        return self._log._module_call_tree()[1].get(self.pass_label, [])

    def row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in MODULE_PASS_LOG_FIELD_ORDER}

    def to_pandas(self) -> Any:
        return frame([self.row()], MODULE_PASS_LOG_FIELD_ORDER)

    def __repr__(self) -> str:
        lines = [f"ModulePassLog: {self.pass_label}", f"  layers: {self.num_layers}"]
        if self.input_layers:
            lines.append("  input_layers: " + ", ".join(self.input_layers))
        if self.output_layers:
            lines.append("  output_layers: " + ", ".join(self.output_layers))
        return "\n".join(lines)


_MODULE_PER_PASS = frozenset({"layers", "input_layers", "output_layers", "forward_args", "forward_kwargs"})


class ModuleLog(ExportMixin):
    """One module that ran (plus the root `"self"`), with its passes (spec §4.1)."""

    def __init__(self, log: ModelLog, address: str, class_name: str, num_passes: int, all_addresses: list[str]):
        self._log = log
        self.address = address
        self.all_addresses = list(all_addresses) or [address]
        self.name = address.rsplit(".", 1)[-1]
        self.module_class_name = class_name
        self.num_passes = num_passes
        self.address_parent = None if address == "self" else (address.rsplit(".", 1)[0] if "." in address else "self")
        self.address_depth = 0 if address == "self" else address.count(".") + 1
        self._passes: dict[int, ModulePassLog] | None = None

    # live-module fields --------------------------------------------------------
    def _module(self) -> Any:
        snap = self._log._data.module_objects.get(self.address)
        return None if snap is None or snap[0] is None else snap[0]()

    def _cls(self) -> Any:
        snap = self._log._data.module_objects.get(self.address)
        return None if snap is None else snap[2]

    def _src(self) -> bool:
        return bool(getattr(self._log, "save_source_context", False))

    @property
    def class_docstring(self) -> str | None:
        c = self._cls()
        return None if c is None else c.__doc__

    @property
    def init_docstring(self) -> str | None:
        c = self._cls()
        return None if c is None else c.__init__.__doc__

    @property
    def forward_docstring(self) -> str | None:
        c = self._cls()
        return None if c is None else getattr(c.forward, "__doc__", None)

    def _sig(self, fn: Any) -> str | None:
        if not self._src():
            return None
        try:
            return str(inspect.signature(fn))
        except (TypeError, ValueError):
            return None

    @property
    def init_signature(self) -> str | None:
        c = self._cls()
        return None if c is None else self._sig(c.__init__)

    @property
    def forward_signature(self) -> str | None:
        c = self._cls()
        return None if c is None else self._sig(c.forward)

    @property
    def source_file(self) -> str | None:
        c = self._cls()
        if c is None or not self._src():
            return None
        try:
            return inspect.getsourcefile(c)
        except (TypeError, OSError):
            return None

    @property
    def source_line(self) -> int | None:
        c = self._cls()
        if c is None or not self._src():
            return None
        try:
            return inspect.getsourcelines(c)[1]
        except (TypeError, OSError):
            return None

    @property
    def is_training(self) -> bool | None:
        snap = self._log._data.module_objects.get(self.address)
        return None if snap is None else snap[1]

    @property
    def has_forward_hooks(self) -> bool:
        m = self._module()
        return bool(m is not None and (m._forward_hooks or m._forward_pre_hooks))

    @property
    def has_backward_hooks(self) -> bool:
        m = self._module()
        return bool(m is not None and (m._backward_hooks or getattr(m, "_backward_pre_hooks", None)))

    @property
    def extra_attributes(self) -> dict[str, Any]:
        m = self._module()
        if m is None:
            return {}
        return {k: v for k, v in vars(m).items() if not k.startswith("_") and not callable(v)}

    @property
    def methods(self) -> list[str]:
        c = self._cls()
        if c is None:
            return []
        out: list[str] = []
        for cls in c.__mro__:
            if cls.__module__.startswith("torch.nn") or cls is object:
                break
            out += [k for k, v in vars(cls).items() if not k.startswith("_") and callable(v) and k not in out]
        return out

    # structure --------------------------------------------------------------
    @property
    def address_children(self) -> list[str]:
        m = self._module()
        if m is not None:
            prefix = "" if self.address == "self" else self.address + "."
            return [prefix + n for n, _ in m.named_children()]
        prefix = "" if self.address == "self" else self.address + "."
        return [a for a in self._log._module_addresses_all() if a.startswith(prefix) and "." not in a[len(prefix) :]]

    @property
    def call_parent(self) -> str | None:
        ps = {p.split(":")[0] if p else None for p in (ps.call_parent for ps in self.passes.values())}
        ps.discard(None)
        if self.address == "self":
            return None
        return sorted(ps)[0] if ps else "self"

    @property
    def call_children(self) -> list[str]:
        out: list[str] = []
        for ps in self.passes.values():
            for c in ps.call_children:
                a = c.rsplit(":", 1)[0]
                if a not in out:
                    out.append(a)
        return out

    @property
    def nesting_depth(self) -> int:
        return self._log._module_nesting_depths().get(self.address, 0)

    @property
    def passes(self) -> dict[int, ModulePassLog]:
        if self._passes is None:
            self._passes = {k: ModulePassLog(self._log, self, k) for k in range(1, self.num_passes + 1)}
        return self._passes

    @property
    def pass_labels(self) -> list[str]:
        return [f"{self.address}:{k}" for k in range(1, self.num_passes + 1)]

    @property
    def _positions(self) -> list[int]:
        if self.address == "self":
            return list(range(len(self._log)))
        return self._log._module_positions().get(self.address, [])

    @property
    def all_layers(self) -> list[str]:
        lab = self._log._col("labels_no_pass")
        out: list[str] = []
        seen: set[str] = set()
        for p in self._positions:
            if lab[p] not in seen:
                seen.add(lab[p])
                out.append(lab[p])
        return out

    @property
    def num_layers(self) -> int:
        return len(self.all_layers)

    @property
    def params(self) -> ParamAccessor:
        prefix = "" if self.address == "self" else self.address + "."
        return ParamAccessor([p for p in self._log.params if p.address.startswith(prefix)])

    @property
    def num_params(self) -> int:
        return sum(p.num_params for p in self.params)

    @property
    def num_params_trainable(self) -> int:
        return sum(p.num_params for p in self.params if p.trainable)

    @property
    def num_params_frozen(self) -> int:
        return self.num_params - self.num_params_trainable

    @property
    def params_memory(self) -> int:
        return sum(p.memory for p in self.params)

    @property
    def params_memory_str(self) -> str:
        return human_readable_size(self.params_memory)

    @property
    def requires_grad(self) -> bool:
        return any(p.trainable for p in self.params)

    @property
    def buffers(self) -> BufferAccessor:
        prefix = "" if self.address == "self" else self.address + "."
        return BufferAccessor([b for b in self._log.buffers if (b.buffer_address or "").startswith(prefix)])

    @property
    def buffer_layers(self) -> list[str]:
        return [b.layer_label for b in self.buffers]

    @property
    def is_shared(self) -> bool:
        return len(self.all_addresses) > 1

    def _layer_sum(self, name: str) -> int | None:
        vals = [getattr(self._log._entry(p), name) for p in self._positions]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    @property
    def flops_forward(self) -> int | None:
        return self._layer_sum("flops_forward")

    @property
    def flops_backward(self) -> int | None:
        return self._layer_sum("flops_backward")

    @property
    def flops(self) -> int | None:
        f, b = self.flops_forward, self.flops_backward
        return None if f is None else f + (b or 0)

    @property
    def macs_forward(self) -> int | None:
        f = self.flops_forward
        return None if f is None else f // 2

    @property
    def macs_backward(self) -> int | None:
        f = self.flops_backward
        return None if f is None else f // 2

    @property
    def macs(self) -> int | None:
        f = self.flops
        return None if f is None else f // 2

    @property
    def gradient(self) -> Any:
        grads = [self._log._entry(p).gradient for p in self._positions]
        grads = [g for g in grads if g is not None]
        if not grads:
            return None
        if all(g.shape == grads[0].shape for g in grads):
            return torch.stack(grads)
        return grads

    def __getattr__(self, name: str) -> Any:
        if name in _MODULE_PER_PASS:
            if self.num_passes == 1:
                if name in ("forward_args", "forward_kwargs"):
                    return None
                return getattr(self.passes[1], name)
            raise AttributeError(
                f"Module '{self.address}' has {self.num_passes} passes. Access '{name}' on a specific pass: "
                f"log.modules['{self.address}'].passes[1].{name}"
            )
        raise AttributeError(name)

    # container behaviour ------------------------------------------------------
    def __len__(self) -> int:
        return self.num_layers

    def __iter__(self) -> Iterator[LayerPassLog]:
        for p in self._positions:
            yield self._log._entry(p)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int) and not isinstance(key, bool):
            return self._log._entry(self._positions[key])
        labels = self._log._col("labels")
        for p in self._positions:
            if labels[p] == key:
                return self._log._entry(p)
        hits = [p for p in self._positions if str(key) in labels[p]]
        if len(hits) == 1:
            return self._log._entry(hits[0])
        if hits:
            raise KeyError(f"Ambiguous key '{key}' within module {self.address}: {[labels[p] for p in hits][:10]}")
        raise KeyError(f"'{key}' is not a layer of module {self.address}")

    def show_graph(self, **kw: Any) -> str:
        return self._log.render_graph(module=self.address, **kw)

    def to_pandas(self) -> Any:
        cols = ["layer_label", "layer_type", "tensor_shape", "tensor_dtype", "pass_num", "func_name"]
        rows = []
        for e in self:
            rows.append({c: getattr(e, c) for c in cols})
        return frame(rows, cols)

    def __repr__(self) -> str:
        lines = [
            f"ModuleLog: {self.address} ({self.module_class_name})",
            f"  nesting_depth: {self.nesting_depth}, address_depth: {self.address_depth}",
            f"  num_params: {self.num_params}",
            f"  num_layers: {self.num_layers}",
            f"  num_passes: {self.num_passes}",
        ]
        if self.is_shared:
            lines.append("  aliases: " + ", ".join(self.all_addresses))
        if self.call_children:
            lines.append("  children: " + ", ".join(self.call_children))
        return "\n".join(lines)


class ModuleAccessor(ExportMixin):
    """`model_log.modules`: ModuleLogs by int, address, alias or pass label (spec §4.3)."""

    def __init__(self, log: ModelLog, modules: list[ModuleLog]) -> None:
        self._log = log
        self._modules = modules
        self._by_addr: dict[str, ModuleLog] = {}
        for m in modules:
            self._by_addr.setdefault(m.address, m)
        for m in modules:
            for a in m.all_addresses:
                self._by_addr.setdefault(a, m)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, IndexError):
            return default

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int) and not isinstance(key, bool):
            return self._modules[key]
        if key == "":
            key = "self"
        m = self._by_addr.get(key)
        if m is not None:
            return m
        if isinstance(key, str) and ":" in key:
            addr, _, k = key.rpartition(":")
            m = self._by_addr.get(addr)
            if m is not None and k.isdigit() and 1 <= int(k) <= m.num_passes:
                return m.passes[int(k)]
        valid = [m.address for m in self._modules][:20]
        raise KeyError(f"Module '{key}' not found. Valid addresses: {valid}...")

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[ModuleLog]:
        return iter(self._modules)

    def keys(self) -> list[str]:
        return [m.address for m in self._modules]

    def summary(self) -> str:
        head = f"{'Address':<40} {'Class':<24} {'Depth':>5} {'Params':>12} {'Layers':>7} {'Passes':>7}"
        rows = [head, "-" * len(head)]
        for m in self._modules:
            rows.append(
                f"{m.address:<40} {m.module_class_name:<24} {m.nesting_depth:>5} {m.num_params:>12} "
                f"{m.num_layers:>7} {m.num_passes:>7}"
            )
        return "\n".join(rows)

    def to_pandas(self) -> Any:
        cols = [
            "address",
            "module_class_name",
            "nesting_depth",
            "address_depth",
            "num_params",
            "num_layers",
            "num_passes",
        ]
        return frame([{c: getattr(m, c) for c in cols} for m in self._modules], cols)

    def __repr__(self) -> str:
        lines = [f"ModuleAccessor({len(self._modules)} modules):"]
        for m in self._modules:
            lines.append(
                f"  '{m.address}': {m.module_class_name} (depth={m.nesting_depth}, params={m.num_params}, "
                f"layers={m.num_layers}, passes={m.num_passes})"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------- layers accessor

LAYER_ACCESSOR_COLUMNS = [
    "layer_label",
    "layer_type",
    "func_name",
    "tensor_shape",
    "tensor_dtype",
    "tensor_memory_str",
    "num_passes",
    "num_params_total",
    "containing_module",
    "is_input_layer",
    "is_output_layer",
    "is_buffer_layer",
]


class LayerAccessor(ExportMixin):
    """`model_log.layers`: LayerLogs in execution order (spec §3.4)."""

    def __init__(self, log: ModelLog) -> None:
        self._log = log

    @property
    def _logs(self) -> dict[str, LayerLog]:
        return self._log.layer_logs

    def __getitem__(self, key: Any) -> Any:
        logs = self._logs
        if isinstance(key, int) and not isinstance(key, bool):
            return list(logs.values())[key]
        if key in logs:
            return logs[key]
        if isinstance(key, str) and ":" in key:
            base, _, k = key.rpartition(":")
            if base in logs and k.isdigit() and int(k) in logs[base].passes:
                return logs[base].passes[int(k)]
        raise KeyError(f"Layer '{key}' not found. Valid labels: {list(logs)[:20]}...")

    def __contains__(self, key: Any) -> bool:
        try:
            self[key]
        except (KeyError, IndexError):
            return False
        return True

    def __len__(self) -> int:
        return len(self._logs)

    def __iter__(self) -> Iterator[LayerLog]:
        return iter(list(self._logs.values()))

    def keys(self) -> list[str]:
        return list(self._logs)

    def values(self) -> list[LayerLog]:
        return list(self._logs.values())

    def items(self) -> list[tuple[str, LayerLog]]:
        return list(self._logs.items())

    def to_pandas(self) -> Any:
        rows = []
        for lay in self._logs.values():
            first = lay.passes[1]
            row = {c: getattr(first, c) for c in LAYER_ACCESSOR_COLUMNS}
            row["layer_label"] = lay.layer_label
            row["num_passes"] = lay.num_passes
            rows.append(row)
        return frame(rows, LAYER_ACCESSOR_COLUMNS)

    def __repr__(self) -> str:
        lines = [f"LayerAccessor({len(self._logs)} layers):"]
        for k, lay in self._logs.items():
            first = lay.passes[1]
            lines.append(f"  '{k}': {first.func_name} (shape={list(first.tensor_shape)}, passes={lay.num_passes})")
        return "\n".join(lines)
