"""Modules that ran during the pass: `ModuleLog`, `ModulePassLog` and the module tables (spec §4.1-4.2)."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .._format import human_readable_size
from .accessors import BufferAccessor, ParamAccessor
from .export import MODULE_LOG_COLUMNS, MODULE_PASS_LOG_FIELD_ORDER, ExportMixin, frame
from .func_call import macs

if TYPE_CHECKING:
    from .layer_pass_log import LayerPassLog
    from .model_log import ModelLog


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
            return list(range(self._log._n_pos))
        return pass_positions(self._log).get(self.pass_label, [])

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
        return [labels[p] for p in pass_outputs(self._log).get(self.pass_label, [])]

    @property
    def call_parent(self) -> str | None:
        return call_tree(self._log)[0].get(self.pass_label)

    @property
    def call_children(self) -> list[str]:
        return call_tree(self._log)[1].get(self.pass_label, [])

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
        return [a for a in self._log.module_addresses if a.startswith(prefix) and "." not in a[len(prefix) :]]

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
        return nesting_depths(self._log).get(self.address, 0)

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
            return list(range(self._log._n_pos))
        return positions(self._log).get(self.address, [])

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

    def _layer_sum(self, name: str) -> int:
        """Sum over the module's layers of their first pass's value, None skipped (as 2.15 counts)."""
        first: dict[str, int] = {}
        lab = self._log._col("labels_no_pass")
        for p in self._positions:
            first.setdefault(lab[p], p)
        return sum(v for p in first.values() if (v := getattr(self._log._entry(p), name)) is not None)

    @property
    def flops_forward(self) -> int:
        return self._layer_sum("flops_forward")

    @property
    def flops_backward(self) -> int:
        return self._layer_sum("flops_backward")

    @property
    def flops(self) -> int:
        return self.flops_forward + self.flops_backward

    @property
    def macs_forward(self) -> int | None:
        return macs(self.flops_forward)

    @property
    def macs_backward(self) -> int | None:
        return macs(self.flops_backward)

    @property
    def macs(self) -> int | None:
        return macs(self.flops)

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
        """Render the graph focused on this module (`render_graph`'s keyword arguments); returns the DOT."""
        return self._log.render_graph(module=self, **kw)

    def to_pandas(self) -> Any:
        return frame([{c: getattr(e, c) for c in MODULE_LOG_COLUMNS} for e in self], MODULE_LOG_COLUMNS)

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


# --------------------------------------------------------------------------- tables
# Each table is built once per log on first use and kept in the log's column cache.


def stack_labels(log: ModelLog) -> list[list[str]]:
    """Module-stack id -> the pass labels (`addr:k`) on that stack, outermost first."""

    def build() -> list[list[str]]:
        strings = log._data.strings
        return [[f"{strings[a]}:{k}" for a, k in st] for st in log._data.module_stacks]

    return log._cached("modules.stack_labels", build)


def pass_positions(log: ModelLog) -> dict[str, list[int]]:
    """Module pass label -> positions of the entries computed inside that pass."""

    def build() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        sl = stack_labels(log)
        for pos in range(log._n_pos):
            if log._is_output(pos):
                continue
            for lab in sl[log._stack_id(pos)]:
                out.setdefault(lab, []).append(pos)
        return out

    return log._cached("modules.pass_positions", build)


def positions(log: ModelLog) -> dict[str, list[int]]:
    """Module address -> positions computed inside any of its passes."""

    def build() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for lab, ps in pass_positions(log).items():
            out.setdefault(lab.rsplit(":", 1)[0], []).extend(ps)
        return {k: sorted(set(v)) for k, v in out.items()}

    return log._cached("modules.positions", build)


def pass_outputs(log: ModelLog) -> dict[str, list[int]]:
    """Module pass label -> positions of the tensors that pass returned."""

    def build() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        strings = log._data.strings
        pon = log._pos_of_nid()
        for node, a, k in log._data.module_exits:
            if node in pon:
                out.setdefault(f"{strings[a]}:{k}", []).append(pon[node])
        return out

    return log._cached("modules.pass_outputs", build)


def call_tree(log: ModelLog) -> tuple[dict[str, str], dict[str, list[str]]]:
    """(pass label -> calling pass label, pass label -> called pass labels); the root is `self:1`."""

    def build() -> tuple[dict[str, str], dict[str, list[str]]]:
        parent: dict[str, str] = {}
        children: dict[str, list[str]] = {}
        for st in stack_labels(log):
            for i, lab in enumerate(st):
                par = st[i - 1] if i else "self:1"
                parent.setdefault(lab, par)
                kids = children.setdefault(par, [])
                if lab not in kids:
                    kids.append(lab)
        return parent, children

    return log._cached("modules.call_tree", build)


def nesting_depths(log: ModelLog) -> dict[str, int]:
    """Module address -> its shallowest call depth (the root `self` is 0)."""

    def build() -> dict[str, int]:
        out: dict[str, int] = {"self": 0}
        for st in stack_labels(log):
            for i, lab in enumerate(st):
                a = lab.rsplit(":", 1)[0]
                out[a] = min(out.get(a, i + 1), i + 1)
        return out

    return log._cached("modules.nesting_depths", build)


def module_logs(log: ModelLog) -> list[ModuleLog]:
    """The root `self` followed by every module that holds a logged op, in first-call order (as 2.15:
    a module whose ops were all orphans, such as an anchor generator, gets no ModuleLog)."""
    used = {lab.rsplit(":", 1)[0] for lab in pass_positions(log)}
    first: dict[str, int] = {}
    for st in stack_labels(log):
        if st:
            first.setdefault(st[-1].rsplit(":", 1)[0], len(first))
    ran = sorted((m for m in log._data.modules if m.address in used), key=lambda m: first.get(m.address, len(first)))
    mods = [ModuleLog(log, "self", log.model_name, 1, ["self"])]
    mods += [ModuleLog(log, m.address, m.class_name, m.num_passes, m.all_addresses) for m in ran]
    return mods


def hierarchy_lines(log: ModelLog) -> list[str]:
    """The "Module Hierarchy" block of the ModelLog printout, one tab-indented line per row."""
    strings = log._data.strings
    stacks = log._data.module_stacks
    passes = log._module_num_passes()
    children: dict[tuple, list[tuple[int, int]]] = {}
    for st in stacks[1:]:
        parent = tuple(st[-2]) if len(st) > 1 else ()
        children.setdefault(parent, []).append(tuple(st[-1]))

    def name(node: tuple[int, int]) -> str:
        addr = strings[node[0]]
        return f"{addr}:{node[1]}" if passes.get(addr, 1) > 1 else addr

    lines: list[str] = []

    def walk(node: tuple, level: int) -> None:
        kids = children.get(node, [])
        if not kids:
            return
        indent = "\t\t" + "    " * level
        if level == 0 or any(children.get(c) for c in kids):
            for c in kids:
                lines.append(indent + name(c))
                walk(c, level + 1)
        else:
            names = [name(c) for c in kids]
            chunks = [names[i : i + 8] for i in range(0, len(names), 8)]
            for i, ch in enumerate(chunks):
                lines.append(indent + ", ".join(ch) + (", " if i < len(chunks) - 1 else ""))

    walk((), 0)
    return lines
