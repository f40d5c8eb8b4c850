"""`ModelLog.summary()` text tables (spec §2.7), laid out as TorchLens 2.15 prints them.

Levels: `overview`, `graph` and `compute` have one row per top-level module (overview adds
`input` and `output` rows); `memory` has one row per layer; `control_flow` lists conditional
branches. `show_ops=True` appends an "Operations:" table with one row per layer pass
(`mode="unrolled"`), per layer (`"rolled"`), or, with `"auto"`, per pass only when the model
is recurrent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ._format import compact_count

if TYPE_CHECKING:
    from .log.layer_log import LayerLog
    from .log.layer_pass_log import LayerPassLog
    from .log.model_log import ModelLog
    from .log.modules import ModuleLog

LEVELS: dict[str, list[str]] = {
    "overview": ["name", "shape", "params", "train"],
    "graph": ["name", "shape", "params", "parents"],
    "memory": ["name", "shape", "dtype", "tensor_mb", "running_mb"],
    "control_flow": ["site", "source", "taken", "bool_layer", "branch_ops", "notes"],
    "compute": ["name", "params", "flops", "macs", "time_ms", "dtype"],
}
HEADERS: dict[str, str] = {
    "name": "Layer",
    "shape": "Output Shape",
    "params": "Params",
    "train": "Train",
    "class": "Class",
    "parents": "Connected To",
    "dtype": "Dtype",
    "tensor_mb": "Tensor MB",
    "running_mb": "Cum Tensor MB",
    "flops": "Fwd FLOPs",
    "macs": "MACs",
    "time_ms": "Time (ms)",
    "site": "Site",
    "source": "Source",
    "taken": "Taken",
    "bool_layer": "Bool Layer",
    "branch_ops": "Branch Ops",
    "notes": "Notes",
}
TITLES: dict[str, str] = {
    "overview": "Model",
    "graph": "Graph Summary",
    "memory": "Memory Summary",
    "control_flow": "Control-Flow Summary",
    "compute": "Compute Summary",
}
# Columns of the "Operations:" table of the module-level summaries.
OP_FIELDS = ["name", "shape", "params", "parents"]
_MB = float(2**20)
_NO_CONTROL_FLOW = "No conditional branches or recurrent loop groups were detected in this forward pass."


def summary(
    log: ModelLog,
    level: str = "overview",
    *,
    fields: Sequence[str] | None = None,
    mode: str = "auto",
    show_ops: bool = False,
    preset: str | None = None,
    columns: Sequence[str] | None = None,
    include_ops: bool | None = None,
    max_rows: int | None = 200,
    print_to: Any = None,
) -> str:
    """The summary text of `log` (see `ModelLog.summary`); printed to `print_to` when given."""
    level, cols, show_ops = _resolve(level, preset, fields, columns, show_ops, include_ops)
    if mode not in ("auto", "rolled", "unrolled"):
        raise ValueError(f"Unsupported summary mode: {mode!r}; choose 'auto', 'rolled' or 'unrolled'.")
    rolled = mode == "rolled" or (mode == "auto" and not log.is_recurrent)
    lines = [f"{TITLES[level]}: {log.model_name}"]
    if level in ("overview", "graph", "compute"):
        rows = _module_rows(log, level, cols)
    elif level == "memory":
        rows = _op_rows(log, cols, rolled)
    else:
        rows = []
    lines += _table_block(cols, rows, max_rows)
    lines += _footer(log, level, rows)
    if show_ops and level != "control_flow":
        op_cols = cols if level in ("memory", "compute") else OP_FIELDS
        ops = _op_rows(log, op_cols, rolled)
        lines += ["", "Operations:", *_table_block(op_cols, ops, max_rows)]
        lines.append(f"Operation rows shown: {len(ops)} ({'rolled' if rolled else 'unrolled'})")
    text = "\n".join(lines)
    if print_to is not None and print_to is not False:
        print(text, file=None if print_to is True else print_to)
    return text


def _resolve(
    level: str,
    preset: str | None,
    fields: Sequence[str] | None,
    columns: Sequence[str] | None,
    show_ops: bool,
    include_ops: bool | None,
) -> tuple[str, list[str], bool]:
    """(level, column keys, show_ops) from the arguments and their 2.15 aliases."""
    if preset is not None:
        # `level` defaults to "overview": a preset replaces it unless another level was asked for.
        if level not in ("overview", preset):
            raise ValueError("Pass either `level` or `preset`, not both with different values.")
        level = preset
    if fields is not None and columns is not None and list(fields) != list(columns):
        raise ValueError("Pass either `fields` or `columns`, not both with different values.")
    if include_ops is not None:
        if show_ops and not include_ops:
            raise ValueError("Pass either `show_ops` or `include_ops`, not both with different values.")
        show_ops = bool(include_ops)
    level = {"cost": "compute"}.get(level, level)
    if level not in LEVELS:
        raise ValueError(f"Unsupported summary level: {level!r}.")
    chosen = fields if fields is not None else columns
    cols = list(chosen) if chosen is not None else list(LEVELS[level])
    bad = [f for f in cols if f not in HEADERS]
    if bad:
        raise ValueError(f"Unsupported summary fields: {bad}.")
    return level, cols, bool(show_ops)


# ---------------------------------------------------------------------------------- drawing
def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |", sep]
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    out.append(sep)
    return out


def _table_block(cols: list[str], rows: list[list[str]], max_rows: int | None) -> list[str]:
    if not rows:
        return ["(no rows)"]
    if max_rows is None or len(rows) <= max_rows:
        return _table([HEADERS[c] for c in cols], rows)
    out = _table([HEADERS[c] for c in cols], rows[: max(max_rows, 0)])
    out.append(f"... showing first {max_rows} of {len(rows)} rows; try a narrower level or show_ops=False")
    return out


def _footer(log: ModelLog, level: str, rows: list[list[str]]) -> list[str]:
    if level == "overview":
        return [
            f"Params: {log.total_params:,} unique; trainable: {log.total_params_trainable:,}",
            f"Ops: {log.num_operations} total",
            f"Saved activations: {log.saved_activation_memory_str}",
            f"Forward FLOPs: {compact_count(log.total_flops_forward)}  MACs: {compact_count(log.total_macs_forward)}",
        ]
    if level == "graph":
        return [f"Modules shown: {len(rows)}", f"Ops tracked: {log.num_operations}"]
    if level == "memory":
        return [
            f"Tracked tensor volume: {log.total_activation_memory_str}",
            f"Saved activations: {log.saved_activation_memory_str}",
            "Live forward-memory peak: not tracked in ModelLog",
        ]
    if level == "compute":
        return [
            f"Params: {log.total_params:,} unique",
            f"Forward FLOPs: {compact_count(log.total_flops_forward)}",
            f"MACs: {compact_count(log.total_macs_forward)}",
            f"Forward time: {1e3 * log.time_forward_pass:.2f} ms",
        ]
    return [_NO_CONTROL_FLOW] if not rows else [f"Conditionals: {len(rows)}"]


# ---------------------------------------------------------------------------------- cells
def _shape(s: Any) -> str:
    return "[" + ",".join(str(d) for d in s) + "]" if s is not None else "-"


def _count(n: int | None) -> str:
    return "-" if n is None else compact_count(n)


def _dtype(e: Any) -> str:
    return "-" if e is None else str(e.tensor_dtype).removeprefix("torch.")


def _ms(seconds: float | None) -> str:
    return f"{1e3 * (seconds or 0.0):.2f}"


def _train(m: ModuleLog) -> str:
    if m.num_params == 0:
        return "-"
    return "yes" if m.num_params_trainable else "no"


def _module_rows(log: ModelLog, level: str, cols: list[str]) -> list[list[str]]:
    """One row per top-level module in order of first execution (overview: plus input and output)."""
    rows: list[list[str]] = []
    if level == "overview":
        ins = [e for e in log if e.is_input_layer]
        shape = _shape(ins[0].tensor_shape) if len(ins) == 1 else (f"{len(ins)} tensors" if ins else "-")
        rows.append([{"name": "input", "shape": shape, "params": "0"}.get(c, "-") for c in cols])
    mods = [m for m in log.modules if m.address_depth == 1 and m._positions]
    mods.sort(key=lambda m: m._positions[0])
    for m in mods:
        out = _module_output(log, m)
        cell: dict[str, Callable[[], str]] = {
            "name": lambda m=m: m.address if level == "compute" else f"{m.address} ({m.module_class_name})",
            "shape": lambda out=out: _shape(None if out is None else out.tensor_shape),
            "params": lambda m=m: _count(m.num_params),
            "train": lambda m=m: _train(m),
            "parents": lambda: "input",  # what 2.15 prints for every module row
            "class": lambda m=m: m.module_class_name,
        }
        if level == "compute":
            cell["flops"] = lambda m=m: _count(m.flops_forward)
            cell["macs"] = lambda m=m: _count(m.macs_forward)
            cell["time_ms"] = lambda m=m: _ms(sum(log._entry(p).func_time or 0.0 for p in m._positions))
            cell["dtype"] = lambda out=out: _dtype(out)
        rows.append([cell[c]() if c in cell else "-" for c in cols])
    if level == "overview":
        outs = [e for e in log if e.is_output_layer]
        shape = _shape(outs[0].tensor_shape) if len(outs) == 1 else (f"{len(outs)} tensors" if outs else "-")
        rows.append([{"name": "output", "shape": shape}.get(c, "-") for c in cols])
    return rows


def _module_output(log: ModelLog, m: ModuleLog) -> LayerPassLog | None:
    """The entry a module returned on its last pass (its last entry when it returned none)."""
    outs = m.passes[m.num_passes].output_layers if m.num_passes else []
    pos = log._fin.lookup(outs[-1]) if outs else None
    if pos is None:
        pos = m._positions[-1]
    return log._entry(pos)


def _op_rows(log: ModelLog, cols: list[str], rolled: bool) -> list[list[str]]:
    """One row per layer (`rolled`, `label xN`) or per layer pass (the first pass without `:1`)."""
    rows: list[list[str]] = []
    running = 0
    if rolled:
        items: list[tuple[str, Any, list[LayerPassLog]]] = []
        for lay in log.layers:
            passes = list(lay.passes.values())
            n = lay.num_passes
            items.append((lay.layer_label + (f" x{n}" if n > 1 else ""), lay, passes))
    else:
        items = [(e.layer_label_no_pass if e.pass_num == 1 else e.layer_label_w_pass, e, [e]) for e in log]
    for label, item, passes in items:
        first = passes[0]
        running += first.tensor_memory
        rows.append([_op_cell(c, label, item, first, passes, running) for c in cols])
    return rows


def _op_cell(c: str, label: str, item: Any, first: LayerPassLog, passes: list[LayerPassLog], running: int) -> str:
    if c == "name":
        return label
    if c == "shape":
        return _shape(first.tensor_shape)
    if c == "params":
        return _count(first.num_params_total)
    if c == "parents":
        parents = _parents(item)
        return "-" if not parents else parents[0] + (f" +{len(parents) - 1}" if len(parents) > 1 else "")
    if c == "dtype":
        return _dtype(first)
    if c == "tensor_mb":
        return f"{first.tensor_memory / _MB:.2f}"
    if c == "running_mb":
        return f"{running / _MB:.2f}"
    if c in ("flops", "macs"):  # a layer's FLOPs are those of one pass, as for modules
        return _count(item.flops_forward if c == "flops" else item.macs_forward)
    if c == "time_ms":  # time is spent on every pass
        return _ms(sum(p.func_time or 0.0 for p in passes))
    if c == "class":
        return first.layer_type
    return "-"


def _parents(item: LayerPassLog | LayerLog) -> list[str]:
    return list(item.parent_layers)
