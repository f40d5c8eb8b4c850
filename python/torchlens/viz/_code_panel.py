"""The code panel (spec §12.5): the model's source, captured when the pass was logged, drawn as a
side cluster of the graph.

At log time `capture_source(model)` keeps a snapshot of the text of the file defining the model's class
(one `stat` per call; the text is read once per file version) and the first lines of its `forward` and
`__init__`, so the panel shows the code that ran even if the file or the class changes later. The
class, `forward` and `__init__` are cut out of the snapshot only when a graph asks for them.
"""

from __future__ import annotations

import ast
import html
import inspect
import linecache
import os
import textwrap
from dataclasses import dataclass
from typing import Any

_FILES: dict[tuple[str, int, int], str] = {}  # (path, mtime_ns, size) -> text
_PANELS = ("forward", "class", "init+forward")


@dataclass(frozen=True)
class SourceSnapshot:
    """The model class's defining file as it was when the pass was logged."""

    class_name: str
    path: str
    text: str
    forward_line: int | None
    init_line: int | None


def capture_source(model: Any) -> SourceSnapshot | None:
    """Snapshot of the file defining `type(model)` (None when there is no readable source).

    A class defined in a notebook cell or a console has no file; its `forward`'s code names the
    cell's pseudo-file, whose text `linecache` holds, and that text is kept instead."""
    cls = type(model)
    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        path = None
    text = _read(path) if path else None
    if text is None:
        code = getattr(getattr(cls, "forward", None), "__code__", None)
        path = None if code is None else code.co_filename
        text = "".join(linecache.getlines(path)) or None if path else None
    if not path or text is None:
        return None
    return SourceSnapshot(
        cls.__name__, path, text, _first_line(cls, "forward", path), _first_line(cls, "__init__", path)
    )


def _read(path: str) -> str | None:
    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size)
        text = _FILES.get(key)
        if text is None:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            _FILES[key] = text
        return text
    except (OSError, UnicodeDecodeError):
        return None


def _first_line(cls: type, name: str, path: str) -> int | None:
    """First line of `cls.name` when it is defined in the snapshotted file."""
    fn = next((base.__dict__[name] for base in cls.__mro__ if name in base.__dict__), None)
    code = getattr(fn, "__code__", None)
    if code is None or code.co_filename != path and os.path.abspath(code.co_filename) != os.path.abspath(path):
        return None
    return code.co_firstlineno


def panel_text(log: Any, code_panel: Any) -> str:
    """The text the panel shows for `code_panel` (True, "forward", "class", "init+forward" or `f(model) -> str`)."""
    if callable(code_panel):
        ref = getattr(log, "_source_model_ref", None)
        model = ref() if ref is not None else None
        if model is None:
            raise ValueError("code_panel as a callable needs the logged model, which no longer exists.")
        return str(code_panel(model))
    kind = "forward" if code_panel is True else code_panel
    if kind not in _PANELS:
        raise ValueError(f"code_panel must be a bool, one of {list(_PANELS)} or a callable, not {code_panel!r}.")
    snap: SourceSnapshot | None = getattr(log, "_source_snapshot", None)
    if snap is None:
        return f"(source of {log.model_name} was not available when it was logged)"
    tree = ast.parse(snap.text)
    lines = snap.text.splitlines()
    if kind == "class":
        node = _class_node(tree, snap)
        return _cut(lines, node) if node is not None else _missing(snap, "class")
    forward = _cut(lines, _def_at(tree, snap.forward_line)) if snap.forward_line else None
    if kind == "forward":
        return forward or _missing(snap, "forward")
    init = _cut(lines, _def_at(tree, snap.init_line)) if snap.init_line else None
    return "\n\n".join(t for t in (init or _missing(snap, "__init__"), forward or _missing(snap, "forward")))


def _missing(snap: SourceSnapshot, what: str) -> str:
    return f"({what} of {snap.class_name} not found in {os.path.basename(snap.path)})"


def _start(node: Any) -> int:
    return min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])


def _def_at(tree: ast.AST, line: int | None) -> Any:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _start(node) == line:
            return node
    return None


def _class_node(tree: ast.AST, snap: SourceSnapshot) -> Any:
    """The class named like the model's; with several, the one holding its `forward`."""
    found = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == snap.class_name]
    line = snap.forward_line or snap.init_line
    for n in found:
        if line is not None and _start(n) <= line <= (n.end_lineno or 0):
            return n
    return found[0] if found else None


def _cut(lines: list[str], node: Any) -> str | None:
    if node is None:
        return None
    return textwrap.dedent("\n".join(lines[_start(node) - 1 : node.end_lineno]))


def add_code_panel(source: str, text: str) -> str:
    """`source` (a DOT digraph) with a side cluster showing `text`, one left-aligned Courier row per line."""
    rows = ["<TR><TD ALIGN='LEFT'><B>Source code</B></TD></TR>"]
    for line in text.splitlines() or [""]:
        cell = html.escape(line.expandtabs(4), quote=False) or "&#160;"
        rows.append(f"<TR><TD ALIGN='LEFT'><FONT FACE='Courier'>{cell}</FONT></TD></TR>")
    label = "<<TABLE BORDER='0' CELLBORDER='0' CELLSPACING='0' CELLPADDING='2'>" + "".join(rows) + "</TABLE>>"
    panel = [
        '  "__tl_graph_panel_anchor" [label="" shape=point style=invis width=0]',
        '  subgraph "cluster_torchlens_code_panel" {',
        '    graph [label="" color="#A8A8A8" fillcolor="#FAFAFA" margin=12 style="filled,rounded"]',
        f'    "__tl_code_panel_node" [label={label} shape=plaintext fontname=Courier margin=0]',
        "  }",
        '  "__tl_graph_panel_anchor" -> "__tl_code_panel_node" [style=invis weight=10]',
    ]
    head, _, _ = source.rstrip().rpartition("}")
    return head.rstrip("\n") + "\n" + "\n".join(panel) + "\n}"
