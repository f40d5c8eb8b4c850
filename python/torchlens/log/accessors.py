"""Dict-like views over a log's layers, modules, parameters and buffers (spec §3.4, §4.3-4.5)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .export import (
    BUFFER_LOG_FIELD_ORDER,
    LAYER_ACCESSOR_COLUMNS,
    MODULE_ACCESSOR_COLUMNS,
    PARAM_LOG_FIELDS,
    ExportMixin,
    frame,
)

if TYPE_CHECKING:
    from .layer_log import LayerLog
    from .layer_pass_log import BufferLog
    from .model_log import ModelLog
    from .modules import ModuleLog
    from .params import ParamLog


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


class AddressAccessor(ExportMixin):
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


class ParamAccessor(AddressAccessor):
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
        return frame([p.row() for p in self._params], PARAM_LOG_FIELDS)

    def __repr__(self) -> str:
        rows = [
            f"  '{p.address}': ParamLog ({', '.join(map(str, p.shape))}) {p.dtype} "
            f"{'trainable' if p.trainable else 'frozen'}"
            for p in self._params
        ]
        return "{\n" + ",\n".join(rows) + "\n}" if rows else "{}"


class BufferAccessor(AddressAccessor):
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
        cols = MODULE_ACCESSOR_COLUMNS
        return frame([{c: getattr(m, c) for c in cols} for m in self._modules], cols)

    def __repr__(self) -> str:
        lines = [f"ModuleAccessor({len(self._modules)} modules):"]
        for m in self._modules:
            lines.append(
                f"  '{m.address}': {m.module_class_name} (depth={m.nesting_depth}, params={m.num_params}, "
                f"layers={m.num_layers}, passes={m.num_passes})"
            )
        return "\n".join(lines)


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
            first = next(iter(lay.passes.values()))
            row = {c: getattr(first, c) for c in LAYER_ACCESSOR_COLUMNS}
            row["layer_label"] = lay.layer_label
            row["num_passes"] = lay.num_passes
            rows.append(row)
        return frame(rows, LAYER_ACCESSOR_COLUMNS)

    def __repr__(self) -> str:
        lines = [f"LayerAccessor({len(self._logs)} layers):"]
        for k, lay in self._logs.items():
            first = next(iter(lay.passes.values()))
            lines.append(f"  '{k}': {first.func_name} (shape={list(first.tensor_shape)}, passes={lay.num_passes})")
        return "\n".join(lines)
