"""Where a consumed bool sits in the user's source: an AST index per source file (spec §7.5).

Each file is parsed once (cached by path and modification time). The index knows every
`if/elif/else` chain and ternary (`Chain`), and every construct whose test consumes a bool
(`if`, `elif`, ternary, `assert`, `while`, comprehension filters, `match` guards, `bool(...)`).
`locate` maps a bool consumption (code object, instruction offset) to a `BoolSite`.
"""

from __future__ import annotations

import ast
import linecache
import os
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int, int, int]  # (line, col, end line, end col), columns 0-based


def _span(node: ast.AST) -> Span:
    return (node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0)  # type: ignore[attr-defined]


def _body_span(body: list[ast.stmt]) -> Span:
    first, last = body[0], body[-1]
    return (first.lineno, first.col_offset, last.end_lineno or last.lineno, last.end_col_offset or 0)


@dataclass
class Chain:
    """One `if/elif/else` chain (`kind="if_chain"`) or ternary (`kind="ifexp"`)."""

    key: tuple[str, int, int]  # (file, line, column) of the chain's first node
    kind: str
    source_file: str
    function_qualname: str
    function_span: tuple[int, int]
    if_stmt_span: tuple[int, int]
    test_span: Span
    branch_ranges: dict[str, Span]
    branch_test_spans: dict[str, Span]
    parent: tuple[tuple[str, int, int], str] | None = None  # enclosing chain's key and branch


@dataclass(frozen=True)
class BoolSite:
    context_kind: str | None  # if_test, elif_test, ifexp, assert, while, comprehension_filter, match_guard, bool_cast
    wrapper_kind: str | None  # "bool_cast" for `bool(...)` inside another test
    chain: Chain | None  # for if/elif/ternary tests
    branch: str | None  # the branch the test opens: "then" or "elif_k"
    span: Span | None = None  # the test (or `bool(...)` call) that consumed the bool


@dataclass
class _Test:
    span: Span
    kind: str
    chain: Chain | None = None
    branch: str | None = None


@dataclass
class FileIndex:
    chains: list[Chain] = field(default_factory=list)
    tests: list[_Test] = field(default_factory=list)
    # Whole statements standing for their test: CPython places some jumps (after a method call in
    # the test, `if t.any():`) at the statement's span rather than the test's.
    statements: list[_Test] = field(default_factory=list)


class _Indexer(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.index = FileIndex()
        self.names: list[str] = []
        self.func: tuple[str, tuple[int, int]] = ("<module>", (1, 1))
        self.enclosing: list[tuple[Chain, str]] = []  # chains whose branch we are inside

    # ---------------------------------------------------------------- scopes
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.names.append(node.name)
        self.generic_visit(node)
        self.names.pop()

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.names.append(node.name)
        outer = self.func
        self.func = (".".join(self.names), (node.lineno, node.end_lineno or node.lineno))
        self.generic_visit(node)
        self.func = outer
        self.names.pop()

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    # ---------------------------------------------------------------- chains
    def _chain(
        self, node: ast.AST, kind: str, test: ast.expr, branches: dict[str, Span], tests: dict[str, Span]
    ) -> Chain:
        parent = (self.enclosing[-1][0].key, self.enclosing[-1][1]) if self.enclosing else None
        c = Chain(
            key=(self.path, node.lineno, node.col_offset),  # type: ignore[attr-defined]
            kind=kind,
            source_file=self.path,
            function_qualname=self.func[0],
            function_span=self.func[1],
            if_stmt_span=(node.lineno, node.end_lineno or node.lineno),  # type: ignore[attr-defined]
            test_span=_span(test),
            branch_ranges=branches,
            branch_test_spans=tests,
            parent=parent,
        )
        self.index.chains.append(c)
        return c

    def visit_If(self, node: ast.If) -> None:
        # An If alone in its parent's orelse continues the chain as an `elif` (2.15 reads an `else:`
        # block holding only an `if` the same way).
        links = [node]
        while len(links[-1].orelse) == 1 and isinstance(links[-1].orelse[0], ast.If):
            links.append(links[-1].orelse[0])
        names = ["then"] + [f"elif_{k}" for k in range(1, len(links))]
        branches = {n: _body_span(link.body) for n, link in zip(names, links, strict=True)}
        tests = {n: _span(link.test) for n, link in zip(names, links, strict=True)}
        if links[-1].orelse:
            branches["else"] = _body_span(links[-1].orelse)
        chain = self._chain(node, "if_chain", node.test, branches, tests)
        for n, link in zip(names, links, strict=True):
            kind = "if_test" if n == "then" else "elif_test"
            self.index.tests.append(_Test(_span(link.test), kind, chain, n))
            self.index.statements.append(_Test(_span(link), kind, chain, n))
            self.visit(link.test)
            self._inside(chain, n, link.body)
        if links[-1].orelse:
            self._inside(chain, "else", links[-1].orelse)

    def _inside(self, chain: Chain, branch: str, body: list[Any]) -> None:
        self.enclosing.append((chain, branch))
        for stmt in body:
            self.visit(stmt)
        self.enclosing.pop()

    def visit_IfExp(self, node: ast.IfExp) -> None:
        branches = {"then": _span(node.body), "else": _span(node.orelse)}
        chain = self._chain(node, "ifexp", node.test, branches, {"then": _span(node.test)})
        self.index.tests.append(_Test(_span(node.test), "ifexp", chain, "then"))
        self.visit(node.test)
        self.enclosing.append((chain, "then"))
        self.visit(node.body)
        self.enclosing[-1] = (chain, "else")
        self.visit(node.orelse)
        self.enclosing.pop()

    # ---------------------------------------------------------------- other consumers
    def visit_Assert(self, node: ast.Assert) -> None:
        self.index.tests.append(_Test(_span(node.test), "assert"))
        self.index.statements.append(_Test(_span(node), "assert"))
        self.generic_visit(node)

    def visit_While(self, node: ast.While) -> None:
        self.index.tests.append(_Test(_span(node.test), "while"))
        self.index.statements.append(_Test(_span(node), "while"))
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        for cond in node.ifs:
            self.index.tests.append(_Test(_span(cond), "comprehension_filter"))
        self.generic_visit(node)

    def visit_match_case(self, node: ast.match_case) -> None:
        if node.guard is not None:
            self.index.tests.append(_Test(_span(node.guard), "match_guard"))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id == "bool":
            self.index.tests.append(_Test(_span(node), "bool_cast"))
        self.generic_visit(node)


_cache: dict[str, tuple[float, FileIndex | None]] = {}


def file_index(path: str) -> FileIndex | None:
    """The index of a source file; None when its source is unavailable (REPL, `exec`, compiled)."""
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    hit = _cache.get(path)
    if hit is not None and hit[0] == mtime:
        return hit[1]
    lines = linecache.getlines(path)
    index: FileIndex | None = None
    if lines:
        try:
            tree = ast.parse("".join(lines), filename=path)
        except (SyntaxError, ValueError):
            tree = None
        if tree is not None:
            ix = _Indexer(path)
            ix.visit(tree)
            index = ix.index
    _cache[path] = (mtime, index)
    return index


def _contains(span: Span, start: tuple[int, int], end: tuple[int, int]) -> bool:
    return (span[0], span[1]) <= start and end <= (span[2], span[3])


def _size(span: Span) -> tuple[int, int]:
    return (span[2] - span[0], span[3] - span[1])


def locate(code: Any, lasti: int, lineno: int | None) -> BoolSite | None:
    """The construct that consumed a bool, from the consuming frame's code and instruction."""
    index = file_index(code.co_filename)
    if index is None:
        return None
    line, end_line, col, end_col = lineno, lineno, None, None
    try:
        pos = list(code.co_positions())[lasti // 2]
        if pos[0] is not None:
            line, end_line, col, end_col = pos
    except (AttributeError, IndexError):  # no position table (older code objects)
        pass
    if line is None:
        return None
    # Without columns, a whole line stands for the position.
    start = (line, col if col is not None else 0)
    end = (end_line or line, end_col if end_col is not None else 10**9)
    found = [t for t in index.tests if _contains(t.span, start, end)]
    if not found:  # only a jump placed at the statement itself, not anything else inside its body
        found = [t for t in index.statements if (t.span[0], t.span[1]) == start and _contains(t.span, start, end)]
    if not found and col is None:
        found = [t for t in index.tests if t.span[0] <= line <= t.span[2]]
    if not found:
        return None
    found.sort(key=lambda t: _size(t.span))  # innermost first
    casts = [t for t in found if t.kind == "bool_cast"]
    tests = [t for t in found if t.kind != "bool_cast"]
    if casts and (not tests or _size(casts[0].span) <= _size(tests[0].span)):
        if tests:  # `if bool(t):`: the `if` consumes what `bool()` returned
            return BoolSite(tests[0].kind, "bool_cast", tests[0].chain, tests[0].branch, tests[0].span)
        return BoolSite("bool_cast", None, None, None, casts[0].span)
    t = tests[0]
    return BoolSite(t.kind, None, t.chain, t.branch, t.span)
