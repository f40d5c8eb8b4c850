"""Call stacks of logged operations (spec §3.5): frames with source text loaded on first access."""

from __future__ import annotations

import inspect
import linecache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model_log import ModelLog


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


def raw_frames(log: ModelLog, pos: int, lasti: bool = False) -> list[tuple]:
    """`(code, line)` frames outer→inner: the calls of the enclosing module passes, then the op's own.
    With `lasti`, `(code, line, instruction offset or -1)`: module calls know their instruction."""
    d = log._data
    if d.site_ids is None or log._is_output(pos):
        return []
    nid = log._record_index(pos)
    frames: list[tuple] = []
    stacks: list[int] = []
    sid = log._stack_id(pos)
    parent = d.stack_parent
    while sid and sid < len(parent):
        stacks.append(sid)
        sid = parent[sid]
    for s in reversed(stacks):
        if s < len(d.stack_sites):
            site = d.sites[d.stack_sites[s]]
            if lasti:
                at = d.stack_lasti[s] if s < len(d.stack_lasti) else -1
                frames.extend((co, ln, at if len(site) == 1 else -1) for co, ln in reversed(site))
            else:
                frames.extend(reversed(site))
    if nid < len(d.site_ids):
        site = d.sites[d.site_ids[nid]]
        if lasti:
            frames.extend((co, ln, -1) for co, ln in reversed(site))
        else:
            frames.extend(reversed(site))
    return frames


def call_stack(log: ModelLog, pos: int) -> list[FuncCallLocation]:
    """Frames outer→inner: module call sites, the op's own frames, then the user's call (spec §3.5)."""
    d = log._data
    if d.site_ids is None or log._is_output(pos):
        return []
    frames = raw_frames(log, pos)
    if d.caller_site is not None:
        frames.append(d.caller_site)
    n = getattr(log, "num_context_lines", 7)
    src = getattr(log, "save_source_context", False)
    return [FuncCallLocation(co, ln, n, src) for co, ln in frames]
