"""JSON-safe dump of everything conditional-branch attribution records, through the public API only.

`dump(log)` is what tests/test_conditionals.py compares against tests/data/conditionals_2_15.json.
That file was produced by running this script under TorchLens 2.15.0 (the black-box peer venv,
with `import torchlens` resolving to it, torch as in that venv):

    cd /tmp && PYTHONPATH=/work/main/tests /tmp/torchlens-peer-venv/bin/python \
        /work/main/tests/cond_dump.py /work/main/tests/data/conditionals_2_15.json

`main()` logs every `models.conditionals.CASES` model under whichever torchlens is importable and
writes {case: dump}. Spans are line/column positions in tests/models/conditionals.py; source
files are stored as basenames (paths differ between machines).

Canonical form: set-like lists (edge lists, children lists, `internally_terminated_bool_layers`,
DOT edges) are sorted, because 2.15's orders come from its graph traversals (often reverse
discovery order); sequences whose order means something stay as recorded: `layer_labels`,
`conditional_branch_stack` (outer to inner), `bool_layers` (execution order), pass lists. Dict
keys that are not strings become strings: ints as `"0"`, tuples as `"(0,then)"`. Per-layer
fields appear only where they differ from their default (False / None / 0 / empty).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

PASS_FIELDS: dict[str, Any] = {
    "is_terminal_bool_layer": False,
    "bool_is_branch": False,
    "bool_context_kind": None,
    "bool_wrapper_kind": None,
    "bool_conditional_id": None,
    "is_scalar_bool": False,
    "scalar_bool_value": None,
    "in_cond_branch": False,
    "conditional_branch_stack": [],
    "conditional_branch_depth": 0,
    "cond_branch_start_children": [],
    "cond_branch_then_children": [],
    "cond_branch_elif_children": {},
    "cond_branch_else_children": [],
    "cond_branch_children_by_cond": {},
}
# LayerLog aggregates (§3.3); stacks default to one empty stack, see `_layer_log_fields`.
LAYER_FIELDS: dict[str, Any] = {
    "is_terminal_bool_layer": False,
    "is_scalar_bool": False,
    "scalar_bool_value": None,
    "in_cond_branch": False,
    "cond_branch_start_children": [],
    "cond_branch_then_children": [],
    "cond_branch_elif_children": {},
    "cond_branch_else_children": [],
    "cond_branch_children_by_cond": {},
}
EVENT_FIELDS = (
    "id",
    "kind",
    "function_qualname",
    "function_span",
    "if_stmt_span",
    "test_span",
    "branch_ranges",
    "branch_test_spans",
    "nesting_depth",
    "parent_conditional_id",
    "parent_branch_kind",
    "bool_layers",
)
# Sorted: set-like. Unsorted: as recorded.
SORTED_LOG_LISTS = (
    "conditional_branch_edges",
    "conditional_then_edges",
    "conditional_elif_edges",
    "conditional_else_edges",
    "internally_terminated_bool_layers",
)
ARM_WORDS = re.compile(r"\b(IF|THEN|ELSE|ELIF)\b")
EDGE_ATTRS = ("label", "headlabel", "taillabel", "xlabel")


def _key(k: Any) -> str:
    if isinstance(k, tuple):
        return "(" + ",".join(_key(e) for e in k) + ")"
    return str(k)


def jsonable(v: Any) -> Any:
    """Tuples to lists, non-string dict keys to strings."""
    if isinstance(v, dict):
        return {_key(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _is_default(v: Any, default: Any) -> bool:
    if default is None:
        return v is None
    if isinstance(default, bool):
        return v is False
    if isinstance(default, int):
        return v == 0 and not isinstance(v, bool)
    return isinstance(v, (list, tuple, dict)) and len(v) == 0


def _sorted(v: Any) -> list:
    """A set-like list in canonical order (its items keep their own order)."""
    return sorted(jsonable(v), key=json.dumps)


def _children_sort(v: Any) -> Any:
    # cond_branch_*_children: lists of labels, or {elif index: [labels]}, or {cond: {arm: [labels]}}
    if isinstance(v, dict):
        return {_key(k): _children_sort(x) for k, x in v.items()}
    return _sorted(v)


def _fields(obj: Any, spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, default in spec.items():
        try:
            v = getattr(obj, name)
        except AttributeError:
            continue
        if _is_default(v, default):
            continue
        out[name] = _children_sort(v) if name.startswith("cond_branch_") else jsonable(v)
    return out


def _layer_log_fields(layer: Any) -> dict[str, Any]:
    out = _fields(layer, LAYER_FIELDS)
    stacks = getattr(layer, "conditional_branch_stacks", [[]])
    if jsonable(stacks) != [[]]:
        out["conditional_branch_stacks"] = jsonable(stacks)
        out["conditional_branch_stack_passes"] = jsonable(getattr(layer, "conditional_branch_stack_passes", {}))
    return out


def _event(ev: Any) -> dict[str, Any]:
    d = {name: jsonable(getattr(ev, name)) for name in EVENT_FIELDS}
    d["source_file"] = os.path.basename(str(getattr(ev, "source_file", "")))
    return d


def _dot_value(s: str, i: int) -> tuple[str, int]:
    """Parse one DOT attribute value starting at s[i]; return (value, index after it)."""
    if s[i] == '"':
        j = i + 1
        while s[j] != '"':
            j += 2 if s[j] == "\\" else 1
        return s[i + 1 : j], j + 1
    if s[i] == "<":
        depth, j = 0, i
        while True:
            depth += {"<": 1, ">": -1}.get(s[j], 0)
            j += 1
            if depth == 0:
                return s[i + 1 : j - 1], j
    m = re.compile(r"[^\s\],;]+").match(s, i)
    assert m is not None
    return m.group(0), m.end()


def _dot_attrs(s: str) -> dict[str, str]:
    attrs: dict[str, str] = {}
    i = 0
    key = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")
    while True:
        m = key.match(s, i)
        if m is None:
            return attrs
        value, i = _dot_value(s, m.end())
        attrs[m.group(1)] = value
        while i < len(s) and s[i] in " ,;\t":
            i += 1


EDGE_LINE = re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[^\s\-]+)\s*->\s*("(?:[^"\\]|\\.)*"|[^\s\[]+)\s*\[(.*)\]\s*;?\s*$')


def dot_arm_labels(source: str) -> list[list[str]]:
    """[tail, head, attr, value] for each edge label attribute that names IF/THEN/ELSE/ELIF."""
    out = []
    for line in source.splitlines():
        m = EDGE_LINE.match(line)
        if m is None:
            continue
        tail, head = (x.strip('"') for x in m.group(1, 2))
        for attr, value in _dot_attrs(m.group(3)).items():
            if attr in EDGE_ATTRS and ARM_WORDS.search(value):
                out.append([tail, head, attr, value])
    return sorted(out)


def render_dot(log: Any, mode: str) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        src = log.render_graph(
            vis_mode=mode, vis_save_only=True, vis_outpath=str(Path(tmp) / "g"), vis_fileformat="dot"
        )
    return str(src)


def dump(log: Any) -> dict[str, Any]:
    passes = {}
    for entry in log.layer_list:
        fields = _fields(entry, PASS_FIELDS)
        if fields:
            passes[entry.layer_label] = fields
    layers = {}
    for label, layer in log.layer_logs.items():
        fields = _layer_log_fields(layer)
        if fields:
            layers[label] = fields
    out: dict[str, Any] = {
        "layer_labels": list(log.layer_labels),
        "has_conditional_branching": bool(log.has_conditional_branching),
        "summary_lines": [line for line in str(log).splitlines() if "conditional" in line],
        "passes": passes,
        "layers": layers,
        "events": [_event(ev) for ev in log.conditional_events],
        "conditional_arm_edges": {_key(k): _sorted(v) for k, v in log.conditional_arm_edges.items()},
        "conditional_edge_passes": jsonable(log.conditional_edge_passes),
        "dot_unrolled": dot_arm_labels(render_dot(log, "unrolled")),
        "dot_rolled": dot_arm_labels(render_dot(log, "rolled")),
    }
    for name in SORTED_LOG_LISTS:
        out[name] = _sorted(getattr(log, name))
    return out


def log_case(name: str) -> tuple[Any, Any, Any]:
    """(log, model output, model) for one case; the model runs once unlogged, then logged."""
    import torchlens as tl

    from models.conditionals import CASES

    make_model, make_inputs = CASES[name]
    model = make_model()
    args, kwargs = make_inputs()
    with torch.no_grad():
        expected = model(*args, **kwargs)
    args, kwargs = make_inputs()
    return tl.log_forward_pass(model, args, kwargs), expected, model


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import torchlens as tl

    from models.conditionals import CASES

    print(f"torchlens {getattr(tl, '__version__', '?')} from {tl.__file__}", file=sys.stderr)
    result = {}
    for name in CASES:
        log, _, _ = log_case(name)
        result[name] = dump(log)
    Path(argv[0]).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
