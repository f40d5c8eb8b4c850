"""`ModelLog.summary()` ASCII tables (spec §2.7)."""

from __future__ import annotations

from typing import Any

import torch

from ._format import compact_count, human_readable_size
from .log.params import used_params

LEVELS = {
    "overview": ["name", "shape", "params", "train"],
    "graph": ["name", "shape", "params", "parents"],
    "memory": ["name", "shape", "dtype", "tensor_mb", "running_mb"],
    "control_flow": ["site", "source", "taken", "bool_layer", "branch_ops", "notes"],
    "compute": ["name", "params", "flops", "macs", "time_ms", "dtype"],
}
HEADERS = {
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
    "site": "site",
    "source": "source",
    "taken": "taken",
    "bool_layer": "Bool Layer",
    "branch_ops": "Branch Ops",
    "notes": "notes",
}
TITLES = {
    "overview": "Model",
    "graph": "Graph Summary",
    "memory": "Memory Summary",
    "control_flow": "Control-Flow Summary",
    "compute": "Compute Summary",
}


def _shape(s: Any) -> str:
    return "[" + ",".join(str(d) for d in s) + "]" if s is not None else "-"


def _count(n: int | None) -> str:
    if n is None:
        return "-"
    return compact_count(n) if n >= 1000 else str(n)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [sep, "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |", sep]
    for r in rows:
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    out.append(sep)
    return out


def _module_rows(log: Any, fields: list[str]) -> list[list[str]]:
    rows: list[list[str]] = []
    mods = [m for m in log.modules if m.address_depth == 1]
    first_in = next((e for e in log if e.is_input_layer), None)
    if first_in is not None:
        rows.append(_row_for(fields, "input", first_in.tensor_shape, 0, "-", [], first_in, None))
    for m in mods:
        outs = m.passes[m.num_passes].output_layers if m.num_passes else []
        last = log[outs[-1]] if outs else (log._entry(m._positions[-1]) if m._positions else None)
        parents: list[str] = []
        if m.passes:
            parents = m.passes[1].input_layers
        train = "-" if m.num_params == 0 else ("yes" if m.requires_grad else "no")
        rows.append(
            _row_for(
                fields,
                f"{m.address} ({m.module_class_name})",
                last.tensor_shape if last else None,
                m.num_params,
                train,
                parents,
                last,
                m,
            )
        )
    outs = [e for e in log if e.is_output_layer]
    if outs:
        rows.append(_row_for(fields, "output", outs[-1].tensor_shape, None, "-", [], outs[-1], None))
    return rows


def _row_for(
    fields: list[str],
    name: str,
    shape: Any,
    params: int | None,
    train: str,
    parents: list[str],
    entry: Any,
    module: Any,
) -> list[str]:
    out = []
    for f in fields:
        if f == "name":
            out.append(name)
        elif f == "shape":
            out.append(_shape(shape))
        elif f == "params":
            out.append(_count(params))
        elif f == "train":
            out.append(train)
        elif f == "parents":
            out.append(", ".join(parents) or "-")
        elif f == "class":
            out.append(module.module_class_name if module is not None else "-")
        elif f == "dtype":
            out.append(str(entry.tensor_dtype).replace("torch.", "") if entry is not None else "-")
        elif f == "flops":
            v = module.flops_forward if module is not None else None
            out.append(_count(v))
        elif f == "macs":
            v = module.macs_forward if module is not None else None
            out.append(_count(v))
        elif f == "time_ms":
            if module is not None:
                ts = [log_e.func_time or 0.0 for log_e in module]
                out.append(f"{1e3 * sum(ts):.3f}")
            else:
                out.append("-")
        else:
            out.append("-")
    return out


def summary(
    log: Any, level: str, fields: list[str] | None, mode: str, show_ops: bool, max_rows: int, print_to: Any
) -> str:
    level = {"cost": "compute"}.get(level, level)
    if level not in LEVELS:
        raise ValueError(f"Unknown summary level {level!r}; choose one of {sorted(LEVELS) + ['cost']}.")
    cols = list(fields) if fields else LEVELS[level]
    bad = [f for f in cols if f not in HEADERS]
    if bad:
        raise ValueError(f"Unsupported summary fields: {bad}")
    lines = [f"{TITLES[level]}: {log.model_name}"]
    if level in ("overview", "graph", "compute"):
        rows = _module_rows(log, cols)
    elif level == "memory":
        rows = []
        running = 0
        entries = list(log) if mode != "rolled" else [lay.passes[1] for lay in log.layers]
        for e in entries:
            running += e.tensor_memory
            vals = {
                "name": e.layer_label,
                "shape": _shape(e.tensor_shape),
                "dtype": str(e.tensor_dtype).replace("torch.", ""),
                "tensor_mb": f"{e.tensor_memory / 2**20:.3f}",
                "running_mb": f"{running / 2**20:.3f}",
            }
            rows.append([vals.get(c, "-") for c in cols])
    else:
        rows = []
    if len(rows) > max_rows:
        rows = rows[:max_rows] + [["..."] + [""] * (len(cols) - 1)]
    lines += _table([HEADERS[c] for c in cols], rows)
    if level == "overview":
        used = used_params(log)
        lines.append(
            f"Params: {sum(p.numel for p in used):,} unique; trainable: {sum(p.numel for p in used if p.requires_grad):,}"
        )
        lines.append(f"Ops: {log.num_operations} total")
        lines.append(f"Saved activations: {human_readable_size(log.saved_activation_memory)}")
        lines.append(
            f"Forward FLOPs: {compact_count(log.total_flops_forward)}  MACs: {compact_count(log.total_macs_forward)}"
        )
    if show_ops:
        lines.append("Operations:")
        entries = list(log) if mode != "rolled" else [lay.passes[1] for lay in log.layers]
        op_rows = [
            [e.layer_label, e.func_name, _shape(e.tensor_shape), str(e.tensor_dtype).replace("torch.", "")]
            for e in entries[:max_rows]
        ]
        lines += _table(["Layer", "Function", "Output Shape", "Dtype"], op_rows)
    text = "\n".join(lines)
    if print_to is not None:
        print(text, file=print_to if print_to is not True else None)
    return text


_ = torch
