"""Conditional-branch attribution (spec §7.5 step 5): which `if` arm each operation ran in.

The capture records every `Tensor.__bool__` on a logged 0-d bool (`CaptureData.bool_events`);
nothing else is paid per op. On first use the log locates each consumption in the source
(`cond_ast`), makes one `ConditionalEvent` per `if/elif/else` chain or ternary whose test
consumed a tensor, attributes operations to arms by the source lines of their call-stack
frames, and derives the condition cones and arm-entry edges. The result is cached on the log.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from . import cond_ast
from .call_stack import raw_frames

if TYPE_CHECKING:
    from .model_log import ModelLog

_BRANCH_CONTEXTS = frozenset({"if_test", "elif_test", "ifexp"})
# Frames in torch's or torchlens's own files are library code, never the user's conditionals.
_LIBRARY_DIRS = (
    os.path.dirname(os.path.abspath(torch.__file__)),
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
)


@dataclass
class ConditionalEvent:
    """One `if/elif/else` chain or ternary whose test consumed a tensor (spec §7.5)."""

    id: int
    kind: str
    source_file: str
    function_qualname: str
    function_span: tuple[int, int]
    if_stmt_span: tuple[int, int]
    test_span: tuple[int, int, int, int]
    branch_ranges: dict[str, tuple[int, int, int, int]]
    branch_test_spans: dict[str, tuple[int, int, int, int]]
    nesting_depth: int = 0
    parent_conditional_id: int | None = None
    parent_branch_kind: str | None = None
    bool_layers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BoolInfo:
    context_kind: str | None
    wrapper_kind: str | None
    conditional_id: int | None

    @property
    def is_branch(self) -> bool:
        return self.context_kind in _BRANCH_CONTEXTS


@dataclass
class CondTable:
    events: list[ConditionalEvent] = field(default_factory=list)
    bools: dict[int, BoolInfo] = field(default_factory=dict)  # position -> how its bool was consumed
    stacks: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    in_branch: set[int] = field(default_factory=set)
    start_children: dict[int, list[int]] = field(default_factory=dict)  # derived (`_index_edges`)
    branch_edges: list[tuple[int, int]] = field(default_factory=list)
    arm_edges: dict[tuple[int, str], list[tuple[int, int]]] = field(default_factory=dict)
    arm_list: list[tuple[int, str, int, int]] = field(default_factory=list)  # (event, arm, parent, child)
    by_parent: dict[int, dict[int, dict[str, list[int]]]] = field(default_factory=dict)


def _library(path: str) -> bool:
    return path.startswith(_LIBRARY_DIRS)


def table(log: ModelLog) -> CondTable:
    return log._cached("cond", lambda: _build(log))


def _build(log: ModelLog) -> CondTable:
    d = log._data
    out = CondTable()
    if not d.bool_events:
        return out
    pon = log._pos_of_nid()
    labels = log._col("labels")
    chains: dict[tuple, cond_ast.Chain] = {}
    event_of: dict[tuple, ConditionalEvent] = {}
    sites: dict[tuple[int, int], cond_ast.BoolSite | None] = {}  # a loop consumes at the same place
    for nid, _value, co, lasti, line in d.bool_events:
        pos = pon.get(nid)
        if pos is None or pos in out.bools:
            continue
        where = (id(co), lasti)
        if where not in sites:
            sites[where] = None if _library(co.co_filename) else cond_ast.locate(co, lasti, line)
        site = sites[where]
        if site is None:
            out.bools[pos] = BoolInfo(None, None, None)
            continue
        if not _made_in(log, pos, co.co_filename, site.span):
            # As in 2.15, a bool computed elsewhere and tested by name (`c = t > 0` ... `if c:`) is
            # classified by where it was made: no construct there, no conditional.
            out.bools[pos] = BoolInfo("unknown", None, None)
            continue
        cid = None
        if site.chain is not None and site.context_kind in _BRANCH_CONTEXTS:
            ev = event_of.get(site.chain.key)
            if ev is None:
                ev = event_of[site.chain.key] = _event(len(out.events), site.chain)
                out.events.append(ev)
            ev.bool_layers.append(labels[pos])
            cid = ev.id
            index = cond_ast.file_index(site.chain.source_file)
            for c in index.chains if index is not None else ():
                chains[c.key] = c
        out.bools[pos] = BoolInfo(site.context_kind, site.wrapper_kind, cid)
    _nest(out.events, event_of, chains)
    _attribute(log, out)
    _cones(log, out)
    _arm_edges(log, out)
    _index_edges(out)
    return out


def _made_in(log: ModelLog, pos: int, path: str, span: Any) -> bool:
    """Whether the bool op itself ran on the lines of the test that consumed it."""
    if span is None:
        return True
    frames = raw_frames(log, pos)
    if not frames:
        return True  # no call sites recorded: trust the consumer
    return any(co.co_filename == path and span[0] <= line <= span[2] for co, line in frames)


def _event(i: int, c: cond_ast.Chain) -> ConditionalEvent:
    return ConditionalEvent(
        i,
        c.kind,
        c.source_file,
        c.function_qualname,
        c.function_span,
        c.if_stmt_span,
        c.test_span,
        dict(c.branch_ranges),
        dict(c.branch_test_spans),
    )


def _nest(events: list[ConditionalEvent], event_of: dict[tuple, ConditionalEvent], chains: dict) -> None:
    """Parent and depth: the nearest enclosing chain (in the source) that is an event itself."""
    key_of = {ev.id: k for k, ev in event_of.items()}
    for ev in events:
        parent = chains[key_of[ev.id]].parent
        depth = 0
        first: tuple[ConditionalEvent, str] | None = None
        while parent is not None:
            pkey, branch = parent
            pev = event_of.get(pkey)
            if pev is not None:
                depth += 1
                if first is None:
                    first = (pev, branch)
            parent = chains[pkey].parent if pkey in chains else None
        ev.nesting_depth = depth
        if first is not None:
            ev.parent_conditional_id, ev.parent_branch_kind = first[0].id, first[1]


def _line_arms(ev: ConditionalEvent) -> list[tuple[str, int, int]]:
    """Arms as line ranges, for frames known by line only. A ternary's arms on one line cannot be
    told apart that way (2.15 leaves such ops unattributed too)."""
    arms = [(kind, r[0], r[2]) for kind, r in ev.branch_ranges.items()]
    if ev.kind == "ifexp":
        lines = [set(range(a, b + 1)) for _, a, b in arms]
        if any(x & y for i, x in enumerate(lines) for y in lines[i + 1 :]):
            return []
    return arms


# code object -> its position table (weakly: code objects come and go with the user's modules)
_positions: weakref.WeakKeyDictionary[Any, list] = weakref.WeakKeyDictionary()


def _point(co: Any, lasti: int) -> tuple[int, int] | None:
    """(line, column) where the instruction at `lasti` starts, if the code object knows it."""
    if lasti < 0:
        return None
    try:
        table = _positions.get(co)
        if table is None:
            table = _positions[co] = list(co.co_positions())
    except (AttributeError, TypeError):  # a stand-in for a code object (a pickled log)
        return None
    if lasti // 2 >= len(table) or table[lasti // 2][0] is None or table[lasti // 2][2] is None:
        return None
    line, _, col, _ = table[lasti // 2]
    return (line, col)


def _attribute(log: ModelLog, out: CondTable) -> None:
    by_file: dict[str, list[ConditionalEvent]] = {}
    for ev in sorted(out.events, key=lambda e: e.nesting_depth):
        by_file.setdefault(ev.source_file, []).append(ev)
    own: dict[int, set[int]] = {}  # an event's own bool layers are not inside its arms
    for pos, b in out.bools.items():
        if b.conditional_id is not None:
            own.setdefault(pos, set()).add(b.conditional_id)
    line_arms = {ev.id: _line_arms(ev) for ev in out.events}
    site_ids = log._data.site_ids
    # The arms of an op depend only on its frames, i.e. on (module stack, call site): a loop's
    # repeated ops are looked up once.
    memo: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for pos in log._positions():
        if not log._is_op(pos):
            continue
        nid = log._record_index(pos)
        key = (log._stack_id(pos), site_ids[nid] if site_ids is not None and nid < len(site_ids) else -1)
        stack = memo.get(key)
        if stack is None:
            stack = memo[key] = _arms_of(raw_frames(log, pos, lasti=True), by_file, line_arms)
        mine = own.get(pos)
        if mine:
            stack = [x for x in stack if x[0] not in mine]
        if stack:
            out.stacks[pos] = list(stack)


def _arms_of(frames: list[tuple], by_file: dict[str, list[ConditionalEvent]], line_arms: dict) -> list[tuple[int, str]]:
    stack: list[tuple[int, str]] = []
    for co, line, at in frames:
        evs = by_file.get(co.co_filename)
        if not evs:
            continue
        # A module call knows its column (as 2.15 matches module calls); an op frame its line.
        point = _point(co, at) if at >= 0 else None
        for ev in evs:
            if point is not None:
                arms = [k for k, r in ev.branch_ranges.items() if (r[0], r[1]) <= point <= (r[2], r[3])]
            else:
                arms = [k for k, first, last in line_arms[ev.id] if first <= line <= last]
            for kind in arms:
                if (ev.id, kind) not in stack:
                    stack.append((ev.id, kind))
    return stack


def _reach(start: Iterable[int], step: Any) -> set[int]:
    seen: set[int] = set()
    todo = list(start)
    while todo:
        p = todo.pop()
        for q in step(p):
            if q not in seen:
                seen.add(q)
                todo.append(q)
    return seen


def _cones(log: ModelLog, out: CondTable) -> None:
    """`in_cond_branch`: operations that only feed branch tests (ancestors of a branch bool that
    reach no output), and the edges entering that region."""
    parents = log._col("parents")
    branch = [p for p, b in out.bools.items() if b.is_branch]
    if not branch:
        return
    outputs = [p for p in range(log._n_pos) if log._is_output(p)]
    feeds_output = _reach(outputs, lambda p: parents[p])
    cone = _reach(branch, lambda p: parents[p]) - feeds_output - set(out.bools)
    out.in_branch = {p for p in cone if log._is_op(p)}
    for c in sorted(out.in_branch, reverse=True):
        for p in parents[c]:
            if p not in out.in_branch and p not in out.bools:
                out.branch_edges.append((p, c))


def _arm_edges(log: ModelLog, out: CondTable) -> None:
    """Edges entering an arm: the child runs in (event, arm) and its parent does not."""
    parents = log._col("parents")
    for c in sorted(out.stacks):
        for p in parents[c]:
            pstack = out.stacks.get(p, ())
            for key in out.stacks[c]:
                if key not in pstack:
                    out.arm_list.append((key[0], key[1], p, c))


def _index_edges(out: CondTable) -> None:
    """The lookups derived from the two edge lists (by parent, by arm)."""
    for p, c in out.branch_edges:
        out.start_children.setdefault(p, []).append(c)
    for e, arm, p, c in out.arm_list:
        out.arm_edges.setdefault((e, arm), []).append((p, c))
        kids = out.by_parent.setdefault(p, {}).setdefault(e, {}).setdefault(arm, [])
        if c not in kids:
            kids.append(c)


# ------------------------------------------------------------------ entry fields (LayerPassLog)
def bool_info(log: ModelLog, pos: int) -> BoolInfo | None:
    return table(log).bools.get(pos)


def stack(log: ModelLog, pos: int) -> list[tuple[int, str]]:
    return list(table(log).stacks.get(pos, ()))


def start_children(log: ModelLog, pos: int) -> list[str]:
    labels = log._col("labels")
    return [labels[c] for c in table(log).start_children.get(pos, ())]


def arm_children(log: ModelLog, pos: int) -> dict[int, dict[str, list[str]]]:
    """`cond_branch_children_by_cond`: {event: {arm: children entered from this entry}}."""
    labels = log._col("labels")
    by = table(log).by_parent.get(pos, {})
    return {e: {k: [labels[c] for c in cs] for k, cs in arms.items()} for e, arms in by.items()}


def children_of_arm(log: ModelLog, pos: int, arm: str) -> list[str]:
    out: list[str] = []
    for arms in arm_children(log, pos).values():
        for c in arms.get(arm, ()):
            if c not in out:
                out.append(c)
    return out


def elif_children(log: ModelLog, pos: int) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for arms in arm_children(log, pos).values():
        for arm, cs in arms.items():
            if arm.startswith("elif_"):
                out.setdefault(int(arm[5:]), []).extend(c for c in cs if c not in out.get(int(arm[5:]), []))
    return out


# ------------------------------------------------------------------ model fields (ModelLog)
class ConditionalMethods:
    """The conditional fields of `ModelLog` (spec §2.5)."""

    @property
    def conditional_events(self) -> list[ConditionalEvent]:
        return list(table(self).events)  # type: ignore[arg-type]

    @property
    def has_conditional_branching(self) -> bool:
        return bool(table(self).in_branch)  # type: ignore[arg-type]

    def _edge_labels(self, p: int, c: int) -> tuple[str, str]:
        labels = self._col("labels")  # type: ignore[attr-defined]
        return labels[p], labels[c]

    @property
    def conditional_branch_edges(self) -> list[tuple[str, str]]:
        return [self._edge_labels(p, c) for p, c in table(self).branch_edges]  # type: ignore[arg-type]

    @property
    def conditional_then_edges(self) -> list[tuple[str, str]]:
        return [self._edge_labels(p, c) for _, k, p, c in table(self).arm_list if k == "then"]  # type: ignore[arg-type]

    @property
    def conditional_elif_edges(self) -> list[tuple[int, int, str, str]]:
        return [
            (e, int(k[5:]), *self._edge_labels(p, c))
            for e, k, p, c in table(self).arm_list  # type: ignore[arg-type]
            if k.startswith("elif_")
        ]

    @property
    def conditional_else_edges(self) -> list[tuple[int, str, str]]:
        return [(e, *self._edge_labels(p, c)) for e, k, p, c in table(self).arm_list if k == "else"]  # type: ignore[arg-type]

    @property
    def conditional_arm_edges(self) -> dict[tuple[int, str], list[tuple[str, str]]]:
        t = table(self)  # type: ignore[arg-type]
        return {key: [self._edge_labels(p, c) for p, c in edges] for key, edges in t.arm_edges.items()}

    @property
    def conditional_edge_passes(self) -> dict[tuple[str, str, int, str], list[int]]:
        no_pass = self._col("labels_no_pass")  # type: ignore[attr-defined]
        passes = self._col("pass_nums")  # type: ignore[attr-defined]
        out: dict[tuple[str, str, int, str], list[int]] = {}
        for e, k, p, c in table(self).arm_list:  # type: ignore[arg-type]
            got = out.setdefault((no_pass[p], no_pass[c], e, k), [])
            if passes[c] not in got:
                got.append(passes[c])
        return out


# ------------------------------------------------------------------ invariants (spec §11.3 family F)
def invariant_failures(log: ModelLog) -> list[str]:
    """What breaks the conditional invariants: events, bools, stacks and edges must agree."""
    t = table(log)
    labels = log._col("labels")
    parents = log._col("parents")
    events = {ev.id: ev for ev in t.events}
    out: list[str] = []
    for ev in t.events:
        for lab in ev.bool_layers:
            p = labels.index(lab) if lab in labels else None
            b = None if p is None else t.bools.get(p)
            if b is None or not b.is_branch or b.conditional_id != ev.id:
                out.append(f"bool layer {lab} of conditional {ev.id} is not a branch bool of it")
        if ev.parent_conditional_id is not None:
            parent = events.get(ev.parent_conditional_id)
            if parent is None or parent.nesting_depth >= ev.nesting_depth:
                out.append(f"conditional {ev.id} has a parent that does not enclose it")
    for p, st in t.stacks.items():
        for cid, arm in st:
            if cid not in events or arm not in events[cid].branch_ranges:
                out.append(f"{labels[p]} sits in an arm ({cid}, {arm}) no conditional has")
    for cid, arm, p, c in t.arm_list:
        if p not in parents[c] or (cid, arm) not in t.stacks.get(c, ()) or (cid, arm) in t.stacks.get(p, ()):
            out.append(f"arm edge {labels[p]} -> {labels[c]} does not enter ({cid}, {arm})")
    for p, c in t.branch_edges:
        if c not in t.in_branch or p in t.in_branch or c not in t.start_children.get(p, ()):
            out.append(f"condition edge {labels[p]} -> {labels[c]} does not enter a condition")
    for p in t.in_branch:
        if p in t.bools:
            out.append(f"{labels[p]} is both a branch bool and inside its condition")
    return out


# ------------------------------------------------------------------ bundles (node ids, JSON-safe)
def to_json(log: ModelLog) -> dict[str, Any] | None:
    """The attribution, keyed by node id, for a bundle's metadata (None when there is none)."""
    t = table(log)
    if not t.bools:
        return None
    nid = log._node_ids
    return {
        "events": [{**vars(ev), "branch_ranges": {k: list(v) for k, v in ev.branch_ranges.items()}} for ev in t.events],
        "bools": [[nid[p], b.context_kind, b.wrapper_kind, b.conditional_id] for p, b in t.bools.items()],
        "stacks": [[nid[p], [list(x) for x in st]] for p, st in t.stacks.items()],
        "in_branch": sorted(nid[p] for p in t.in_branch),
        "branch_edges": [[nid[p], nid[c]] for p, c in t.branch_edges],
        "arm_list": [[e, arm, nid[p], nid[c]] for e, arm, p, c in t.arm_list],
    }


def restore(log: ModelLog, d: dict[str, Any]) -> None:
    """Install the attribution a bundle stored (its source may not exist where it is loaded)."""
    pon = log._pos_of_nid()
    out = CondTable()
    for ev in d["events"]:
        spans = {k: tuple(v) for k, v in ev["branch_ranges"].items()}
        tests = {k: tuple(v) for k, v in ev["branch_test_spans"].items()}
        fields = {**ev, "branch_ranges": spans, "branch_test_spans": tests}
        for key in ("function_span", "if_stmt_span", "test_span"):
            fields[key] = tuple(ev[key])
        out.events.append(ConditionalEvent(**fields))
    for n, ctx, wrapper, cid in d["bools"]:
        out.bools[pon[n]] = BoolInfo(ctx, wrapper, cid)
    for n, st in d["stacks"]:
        out.stacks[pon[n]] = [(int(e), str(arm)) for e, arm in st]
    out.in_branch = {pon[n] for n in d["in_branch"]}
    out.branch_edges = [(pon[pn], pon[cn]) for pn, cn in d["branch_edges"]]
    out.arm_list = [(int(e), str(arm), pon[pn], pon[cn]) for e, arm, pn, cn in d["arm_list"]]
    _index_edges(out)
    log._cols["cond"] = out
