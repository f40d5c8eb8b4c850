"""DOT source of a ModelLog, unrolled (one node per pass) or rolled (one node per layer), spec §12.

`build_dot` runs the steps in order over one `_View` of the log: which positions are hidden, how deep
modules nest before collapsing, which positions descend from an input, where each position is drawn
(its own node or a collapsed module box, inside which clusters), then nodes, edges and the caption.
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..log import conditionals
from ..log.params import used_params
from ._caption import caption, header_lines, module_params_row
from ._dot import (
    FILL_FROZEN,
    FILL_INPUT,
    FILL_OUTPUT,
    FILL_TRAINABLE,
    Graph,
    node_name,
    q,
    ranges,
    shape_str,
)
from ._focus import Focus, resolve_focus
from ._interactive import add_anchors
from ._presets import apply_preset
from ._spec import NodeSpec, RenderHooks, render_lines_to_html

if TYPE_CHECKING:
    from ..log.model_log import ModelLog

_DIRECTIONS = {"bottomup": "BT", "topdown": "TB", "leftright": "LR"}
_HIDDEN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
AUTO_COLLAPSE_NODES = 3000
# Collapsed module boxes share the node namespace with layers until the very end; the prefix keeps
# them apart (and marks them) while the graph is assembled.
_MOD = "mod:"


@dataclass
class _View:
    """The log's columns plus everything the steps decide about each position."""

    log: ModelLog
    rolled: bool
    labels: list[str]
    no_pass: list[str]
    parents: list[list[int]]
    num_passes: list[int]
    pass_nums: list[int]
    entries: list[Any]
    mod_passes: dict[str, int]
    mod_types: dict[str, str]
    focus: Focus | None = None
    hooks: RenderHooks = field(default_factory=RenderHooks)
    hidden: set[int] = field(default_factory=set)
    skipped: set[int] = field(default_factory=set)  # skip_fn: hidden, with edges chained through them
    boundary: set[int] = field(default_factory=set)  # focus only: outside entries feeding the module
    from_input: list[bool] = field(default_factory=list)
    grads: list[bool] = field(default_factory=list)  # unrolled: the entry holds a gradient
    cond_labels: dict[tuple[str, str], str] = field(default_factory=dict)  # IF / THEN / ELIF k / ELSE
    rep: list[str] = field(default_factory=list)  # name of the node that stands for each position
    cluster_of: list[tuple[str, ...]] = field(default_factory=list)
    collapsed: dict[str, dict[str, Any]] = field(default_factory=dict)
    collapse_verdicts: dict[str, bool] = field(default_factory=dict)  # collapse_fn, asked once per address

    @property
    def n(self) -> int:
        return len(self.entries)

    def title(self, p: int) -> str:
        return self.no_pass[p] if self.rolled else self.labels[p]


def build_dot(
    log: ModelLog,
    mode: str = "unrolled",
    max_module_depth: int = 1000,
    direction: str = "bottomup",
    show_buffers: str = "meaningful",
    graph_overrides: dict[str, Any] | None = None,
    module: Any = None,
    hooks: RenderHooks | None = None,
) -> str:
    """DOT source for a log. `mode` is 'unrolled' or 'rolled'; `module` focuses on one module (§12.4);
    `hooks` carries the caller's node specs, collapse and skip rules and edge/module overrides (§12.5)."""
    show_buffers = _check_options(mode, direction, show_buffers)
    v = _view(log, mode == "rolled", resolve_focus(log, module))
    v.hooks = hooks or RenderHooks()
    v.hidden = _hidden_positions(v.entries, show_buffers)
    if v.focus is not None:
        _restrict_to_focus(v)
    if v.hooks.skip_fn is not None:
        _skip_positions(v)
    depth = _effective_depth(v, max_module_depth) if v.hooks.collapse_fn is None else 0
    auto_collapsed = v.hooks.collapse_fn is None and depth != max_module_depth
    v.from_input = _reaches_from_input(v.entries, v.parents)
    v.grads = [False] * v.n if v.rolled or not log.has_gradients else [bool(e.has_gradient) for e in v.entries]
    v.cond_labels = cond_edge_labels(log, v.rolled)
    _place(v, depth)
    g = Graph()
    _add_layer_nodes(g, v)
    _add_module_boxes(g, v)
    edge_passes = _add_edges(g, v)
    if v.rolled:
        _add_pass_labels(g, v, edge_passes)
    if auto_collapsed:  # a big graph: every node gets an SVG anchor and a tooltip
        add_anchors(
            g, v.collapsed, v.mod_types, v.rep, [None if p in v.hidden else v.title(p) for p in range(v.n)], _MOD
        )
    sink = _add_focus_outputs(g, v) if v.focus is not None else _model_sink(v)
    header = header_lines(log, _DIRECTIONS[direction], graph_overrides, _caption(v))
    footer = [f"  {{ rank=sink {q(sink)} }}"] if sink else []
    return g.source(header, footer).replace('"' + _MOD, '"')


# --------------------------------------------------------------------------- options and columns


def _check_options(mode: str, direction: str, show_buffers: Any) -> str:
    if mode not in ("unrolled", "rolled"):
        raise ValueError("Visualization option must be either 'none', 'rolled', or 'unrolled'.")
    if direction not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {sorted(_DIRECTIONS)}, not {direction!r}.")
    if isinstance(show_buffers, bool):
        return "always" if show_buffers else "never"
    return show_buffers


def _view(log: ModelLog, rolled: bool, focus: Focus | None) -> _View:
    return _View(
        log=log,
        rolled=rolled,
        labels=log._col("labels"),
        no_pass=log._col("labels_no_pass"),
        parents=log._col("parents"),
        num_passes=log._col("num_passes"),
        pass_nums=log._col("pass_nums"),
        entries=[log._entry(p) for p in range(len(log))],
        mod_passes=log._module_num_passes(),
        mod_types=log._module_types(),
        focus=focus,
    )


# --------------------------------------------------------------------------- which positions are drawn


def _hidden_positions(entries: list[Any], show_buffers: str) -> set[int]:
    hidden: set[int] = set()
    for p, e in enumerate(entries):
        if e.is_buffer_layer:
            last = (e.buffer_address or "").rsplit(".", 1)[-1]
            if show_buffers == "never" or (show_buffers == "meaningful" and last in _HIDDEN_BUFFERS):
                hidden.add(p)
    return hidden


def _skip_positions(v: _View) -> None:
    """`skip_fn(layer_log) -> bool`, asked once per layer: its passes are hidden and their edges chained."""
    logs = v.log.layer_logs
    verdict: dict[str, bool] = {}
    for p in range(v.n):
        lab = v.no_pass[p]
        if lab not in verdict:
            verdict[lab] = bool(v.hooks.skip_fn(logs[lab]))
        if verdict[lab] and p not in v.hidden:
            v.skipped.add(p)
    v.hidden |= v.skipped


def _restrict_to_focus(v: _View) -> None:
    """Hide everything outside the focused module except the entries feeding it (its boundary inputs)."""
    assert v.focus is not None
    inside = set(v.focus.inside)
    feeding = {q for p in inside if p not in v.hidden for q in v.parents[p] if q not in inside}
    # A module that returns a tensor it did not compute (a passthrough) still needs that tensor drawn.
    feeding.update(p for p, _ in v.focus.outputs if p not in inside)
    v.boundary = feeding - v.hidden
    v.hidden |= set(range(v.n)) - inside - v.boundary


def _shown_count(v: _View) -> int:
    return v.n if v.focus is None else len(set(v.focus.inside) - v.hidden)


def _stack_offset(v: _View, p: int) -> int:
    """Where the module stack of a position starts to count: the focused module's index, else 0."""
    if v.focus is None:
        return 0
    return v.focus.stack_index(v.entries[p].containing_modules)


def _effective_depth(v: _View, requested: int) -> int:
    """The nesting depth to collapse at: `requested`, or a shallower one when the graph is too big for dot."""
    n = _shown_count(v)
    if requested < 1000 or n <= AUTO_COLLAPSE_NODES:
        return requested
    drawn = range(v.n) if v.focus is None else sorted(set(v.focus.inside) - v.hidden)
    depth = _auto_depth([_relative_stack(v, p) for p in drawn])
    warnings.warn(
        f"Graph has {n} nodes; collapsing modules below nesting depth {depth} so graphviz stays usable "
        "(pass vis_nesting_depth explicitly to override).",
        UserWarning,
        stacklevel=4,
    )
    return depth


def _relative_stack(v: _View, p: int) -> tuple[list[str], bool]:
    """(modules nested below the focus, or all modules; whether the entry is a leaf-module output)."""
    e = v.entries[p]
    start = 0 if v.focus is None else _stack_offset(v, p) + 1
    return e.containing_modules[start:], e.is_leaf_module_output


def _auto_depth(stacks: list[tuple[list[str], bool]]) -> int:
    """Deepest nesting level at which the collapsed graph has at most AUTO_COLLAPSE_NODES nodes."""
    best = 1
    max_d = max((len(cms) for cms, _ in stacks), default=0)
    for d in range(1, max_d + 1):
        keys: set[Any] = set()
        for i, (cms, leaf) in enumerate(stacks):
            eff = len(cms) - (1 if leaf else 0)
            keys.add(cms[d - 1] if cms and d <= eff else ("pos", i))
        if len(keys) <= AUTO_COLLAPSE_NODES:
            best = d
        else:
            break
    return best


def _reaches_from_input(entries: list[Any], parents: list[list[int]]) -> list[bool]:
    from_input = [False] * len(entries)
    for p, e in enumerate(entries):
        from_input[p] = e.is_input_layer or any(from_input[q] for q in parents[p])
    return from_input


# --------------------------------------------------------------------------- placement


def _place(v: _View, depth: int) -> None:
    """Decide, per position, the node standing for it (itself or a collapsed module box) and its clusters."""
    v.rep = [""] * v.n
    v.cluster_of = [()] * v.n
    for p, e in enumerate(v.entries):
        if v.focus is not None and (p in v.hidden or p in v.boundary):
            v.rep[p] = node_name(v.title(p))
            continue
        cms = e.containing_modules
        leaf = e.is_leaf_module_output
        # Clusters start at the focused module (it frames the graph); depth counts the modules below it.
        c0 = _stack_offset(v, p)
        d0 = c0 if v.focus is None else c0 + 1
        eff = len(cms) - (1 if leaf else 0) - d0
        at = _collapse_level(v, cms[d0 : d0 + eff]) if v.hooks.collapse_fn is not None else depth
        if 0 < at <= eff:
            depth_here = at
            target = cms[d0 + at - 1]
            addr, k = target.rsplit(":", 1)
            key = addr if v.rolled else f"{addr}pass{k}"
            v.rep[p] = _MOD + key
            info = v.collapsed.setdefault(
                key,
                {
                    "addr": addr,
                    "k": int(k),
                    "positions": [],
                    "cluster": _clusters(cms[c0 : d0 + depth_here - 1], v.rolled),
                },
            )
            info["positions"].append(p)
            continue
        v.rep[p] = node_name(v.title(p))
        inner = cms[:-1] if leaf else cms
        v.cluster_of[p] = _clusters(inner[c0:], v.rolled)


def _collapse_level(v: _View, cms: list[str]) -> int:
    """`collapse_fn(module_log) -> bool`: 1-based level of the outermost module it collapses, 0 for none."""
    cache = v.collapse_verdicts
    for i, m in enumerate(cms):
        addr = m.rsplit(":", 1)[0]
        if addr not in cache:
            cache[addr] = bool(v.hooks.collapse_fn(v.log.modules[addr]))
        if cache[addr]:
            return i + 1
    return 0


def _clusters(cms: list[str], rolled: bool) -> tuple[str, ...]:
    names = []
    for m in cms:
        addr, k = m.rsplit(":", 1)
        names.append(addr if rolled else f"{addr}_pass{k}")
    return tuple(names)


def _cluster_chain(cl: tuple[str, ...]) -> list[tuple[str, ...]]:
    return [cl[:i] for i in range(1, len(cl) + 1)]


def _add_clusters(g: Graph, v: _View, cl: tuple[str, ...]) -> None:
    for sub in _cluster_chain(cl):
        if sub not in g.clusters:
            info = g.clusters[sub] = _cluster_info(sub, v.mod_types, v.mod_passes, v.rolled)
            if v.hooks.module_overrides:
                name = sub[-1] if v.rolled else ":".join(sub[-1].rsplit("_pass", 1))
                info["overrides"] = v.hooks.cluster_attrs(v.log, name)


def _cluster_info(cl: tuple[str, ...], types: dict[str, str], passes: dict[str, int], rolled: bool) -> dict[str, Any]:
    last = cl[-1]
    if rolled:
        addr = last
        title = f"@{addr}" + (f" (x{passes[addr]})" if passes.get(addr, 1) > 1 else "")
    else:
        addr, k = last.rsplit("_pass", 1)
        title = f"@{addr}" + (f":{k}" if passes.get(addr, 1) > 1 else "")
    label = f"<<B>{html.escape(title)}</B><br align='left'/>({html.escape(types.get(addr, '?'))})<br align='left'/>>"
    return {"label": label, "depth": len(cl)}


# --------------------------------------------------------------------------- nodes


def _add_layer_nodes(g: Graph, v: _View) -> None:
    # A rolled boundary input may share its name with a pass drawn inside the module; the inside one wins.
    inside_reps = {v.rep[p] for p in v.focus.inside} if v.focus is not None else set()
    seen: set[str] = set()
    for p in range(v.n):
        if p in v.hidden or v.rep[p].startswith(_MOD) or v.rep[p] in seen:
            continue
        if p in v.boundary and v.rep[p] in inside_reps:
            continue
        seen.add(v.rep[p])
        params = v.log._params_of(p)
        fill = _layer_fill(v.entries[p], params, p in v.boundary)
        spec = NodeSpec(
            lines=_layer_rows(v, p, params),
            shape=fill.pop("shape"),
            fillcolor=fill.pop("fillcolor"),
            fontcolor="black",
            style="filled,solid" if v.from_input[p] else "filled,dashed",
            color="black",
            extra_attrs=fill,
        )
        if p not in v.boundary:
            layer_log = v.log.layer_logs[v.no_pass[p]]
            if v.hooks.node_mode != "default":
                spec = apply_preset(v.hooks.node_mode, layer_log if v.rolled else v.entries[p], v.log, spec, params)
            spec = v.hooks.node_spec(layer_log, spec)
        g.node(v.rep[p], spec.to_attrs(), v.cluster_of[p])
        _add_clusters(g, v, v.cluster_of[p])


def _layer_rows(v: _View, p: int, params: list[Any]) -> list[str]:
    e = v.entries[p]
    title = v.title(p)
    if v.rolled and v.num_passes[p] > 1:
        title += f" (x{v.num_passes[p]})"
    rows = [title, f"{shape_str(e.tensor_shape)} ({e.tensor_memory_str})"]
    if params:
        shown = []
        for prm in params:
            dims = shape_str(prm.shape)
            shown.append(f"{prm.name}: " + (f"({dims})" if prm.requires_grad else f"[{dims}]"))
        rows.append("params: " + ", ".join(shown))
    if e.is_input_layer or e.is_output_layer:
        rows.append(f"@{e.io_role}")
    elif e.is_buffer_layer:
        rows.append(f"@{e.buffer_address}")
    elif e.is_leaf_module_output and e.leaf_module_pass:
        addr, k = e.leaf_module_pass.rsplit(":", 1)
        rows.append(f"@{addr}:{k}" if (not v.rolled and v.mod_passes.get(addr, 1) > 1) else f"@{addr}")
    return rows


def _layer_fill(e: Any, params: list[Any], boundary_input: bool) -> dict[str, Any]:
    if e.is_input_layer or boundary_input:
        return {"shape": "oval", "fillcolor": FILL_INPUT}
    if e.is_output_layer:
        return {"shape": "oval", "fillcolor": FILL_OUTPUT}
    if e.is_buffer_layer:
        return {"shape": "cylinder", "fillcolor": "white"}
    out: dict[str, Any] = {"shape": "box" if e.is_leaf_module_output else "oval"}
    if params:
        trainable = [prm.requires_grad for prm in params]
        out["fillcolor"] = (
            FILL_TRAINABLE if all(trainable) else FILL_FROZEN if not any(trainable) else "#D9D9D9:#B0B0B0"
        )
        if any(trainable) and not all(trainable):
            out["gradientangle"] = "0"
    else:
        out["fillcolor"] = "white"
    return out


def _add_module_boxes(g: Graph, v: _View) -> None:
    """One box3d node per collapsed module (per pass unrolled)."""
    for key, info in v.collapsed.items():
        ps = info["positions"]
        addr = info["addr"]
        npasses = v.mod_passes.get(addr, 1)
        title = f"@{addr}"
        if v.rolled and npasses > 1:
            title += f" (x{v.mod_passes[addr]})"
        elif not v.rolled and npasses > 1:
            title += f":{info['k']}"
        last = v.entries[ps[-1]]
        mparams = v.log._module_params(addr)
        nparams = sum(p.numel for p in mparams)
        trainable = sum(p.numel for p in mparams if p.requires_grad)
        rows = [
            title,
            v.mod_types.get(addr, "?"),
            f"{shape_str(last.tensor_shape)} ({last.tensor_memory_str})",
            f"{len({v.no_pass[p] for p in ps}) if v.rolled else len(ps)} layers total",
            module_params_row(nparams, trainable),
        ]
        fill = FILL_TRAINABLE if trainable == nparams else FILL_FROZEN if not trainable else "#D9D9D9:#B0B0B0"
        spec = NodeSpec(
            lines=rows,
            shape="box3d",
            fillcolor=fill if nparams else "white",
            fontcolor="black",
            style="filled,solid" if any(v.from_input[p] for p in ps) else "filled,dashed",
            color="black",
            extra_attrs={"gradientangle": "0"} if 0 < trainable < nparams else {},
        )
        spec = v.hooks.collapsed_spec(v.log.modules[addr], spec)
        g.node(_MOD + key, spec.to_attrs(), info["cluster"])
        _add_clusters(g, v, info["cluster"])


# --------------------------------------------------------------------------- edges


_GRAD_COLOR = "#9197F6"


def _edge_attrs(solid: bool) -> dict[str, Any]:
    return {"arrowsize": ".7", "labelfontsize": "8", "color": "black", "style": "solid" if solid else "dashed"}


def _add_edges(g: Graph, v: _View) -> dict[tuple[str, str], tuple[set[int], set[int]]]:
    """Parent -> child edges between drawn nodes; returns the (tail, head) pass numbers behind each edge."""
    edge_passes: dict[tuple[str, str], tuple[set[int], set[int]]] = {}
    for c in range(v.n):
        if c in v.hidden or c in v.boundary:
            continue
        for par in _drawn_parents(v, c):
            a, b = v.rep[par], v.rep[c]
            if a == b:
                continue
            tail, head = edge_passes.setdefault((a, b), (set(), set()))
            tail.add(v.pass_nums[par])
            head.add(v.pass_nums[c])
            attrs = _edge_attrs(v.from_input[par])
            ep, ec = v.entries[par], v.entries[c]
            cond = v.cond_labels.get(
                (ep.layer_label_no_pass, ec.layer_label_no_pass) if v.rolled else (ep.layer_label, ec.layer_label)
            )
            if cond is not None:
                attrs["label"] = f'<<FONT POINT-SIZE="18"><b><u>{cond}</u></b></FONT>>'
            if v.hooks.edge_overrides:
                attrs.update(v.hooks.edge_attrs(v.log, v.entries[par], v.entries[c]))
            g.edges[(a, b)] = attrs
            if not v.rolled and v.grads[par] and v.grads[c]:
                # Spec §12.3: gradient flow, drawn child -> parent, when both ends hold a gradient.
                gattrs = {**_edge_attrs(v.from_input[par]), "color": _GRAD_COLOR, "fontcolor": _GRAD_COLOR}
                if v.hooks.gradient_edge_overrides:
                    gattrs.update(v.hooks.edge_attrs(v.log, v.entries[par], v.entries[c], gradient=True))
                g.edges[(b, a)] = gattrs
    return edge_passes


def cond_edge_labels(log: ModelLog, rolled: bool) -> dict[tuple[str, str], str]:
    """Spec §12.3: `IF` on the edges entering a condition's computation, `THEN` / `ELIF k` / `ELSE`
    on the edges entering an arm (keyed by the drawn entries' labels)."""
    t = conditionals.table(log)
    if not t.branch_edges and not t.arm_list:
        return {}
    labels = log._col("labels_no_pass" if rolled else "labels")
    passes = log._col("pass_nums")
    # (parent, child) -> (event, arm word) -> the child passes entering that arm over this edge
    arms: dict[tuple[str, str], dict[tuple[int, str], list[int]]] = {}
    for e, arm, p, c in t.arm_list:
        text = "THEN" if arm == "then" else "ELSE" if arm == "else" else f"ELIF {arm[5:]}"
        got = arms.setdefault((labels[p], labels[c]), {}).setdefault((e, text), [])
        if passes[c] not in got:
            got.append(passes[c])
    lines = {ev.id: ev.if_stmt_span[0] for ev in t.events}
    out = {key: _arm_label(groups, lines) for key, groups in arms.items()}
    for p, c in t.branch_edges:
        out.setdefault((labels[p], labels[c]), "IF")  # an arm label wins over IF
    return out


def _arm_label(groups: dict[tuple[int, str], list[int]], lines: dict[int, int]) -> str:
    """2.15's words: `THEN`; one conditional's arms on different passes of a rolled edge,
    `THEN(2,4) / ELSE(1,3)`; arms of several conditionals, `ELIF 1@L62 · ELSE@L65`."""
    if len(groups) == 1:
        return next(iter(groups))[1]
    if len({e for e, _ in groups}) == 1:
        rank = {"THEN": 0, "ELSE": 10**6}
        order = sorted(groups, key=lambda g: rank.get(g[1], int(g[1][5:]) if g[1][5:].isdigit() else 1))
        return " / ".join(f"{text}({','.join(map(str, groups[(e, text)]))})" for e, text in order)
    return " · ".join(f"{text}@L{lines[e]}" for e, text in groups)


def _drawn_parents(v: _View, c: int) -> list[int]:
    """Visible parents of `c`; a skipped parent is replaced by its own drawn parents (edges chained through)."""
    out: list[int] = []
    stack = list(reversed(v.parents[c]))
    seen: set[int] = set()
    while stack:
        par = stack.pop()
        if par in seen:
            continue
        seen.add(par)
        if par in v.skipped:
            stack.extend(reversed(v.parents[par]))
        elif par not in v.hidden:
            out.append(par)
    return out


def _add_pass_labels(g: Graph, v: _View, edge_passes: dict[tuple[str, str], tuple[set[int], set[int]]]) -> None:
    """Rolled view: `Out`/`In` pass ranges on the edges of layers whose neighbours vary across passes."""
    varies = _edges_vary(v.log)
    first_pos: dict[str, int] = {}
    for p in range(v.n):
        first_pos.setdefault(v.rep[p], p)
    for (a, b), (tail, head) in edge_passes.items():
        pa, pb = first_pos[a], first_pos[b]
        attrs = g.edges[(a, b)]
        if not a.startswith(_MOD) and varies.get(v.no_pass[pa]):
            attrs["taillabel"] = f"  Out {ranges(list(tail))}  "
        if not b.startswith(_MOD) and varies.get(v.no_pass[pb]):
            attrs["headlabel"] = f"  In {ranges(list(head))}  "


def _edges_vary(log: ModelLog) -> dict[str, bool]:
    no_pass = log._col("labels_no_pass")
    parents = log._col("parents")
    children = log._col("children")
    per: dict[str, set[tuple[frozenset[str], frozenset[str]]]] = {}
    for p in range(len(log)):
        sig = (frozenset(no_pass[q] for q in parents[p]), frozenset(no_pass[q] for q in children[p]))
        per.setdefault(no_pass[p], set()).add(sig)
    return {k: len(s) > 1 for k, s in per.items()}


def _add_focus_outputs(g: Graph, v: _View) -> str | None:
    """Focus view: one red oval per tensor the module returned, fed by the node that computed it."""
    assert v.focus is not None
    name = None
    drawn: dict[str, str] = {}
    for p, k in v.focus.outputs:
        src = v.rep[p]
        if p in v.hidden or src in drawn:
            continue
        name = f"{v.focus.address}_output_{len(drawn) + 1}"
        drawn[src] = name
        e = v.entries[p]
        where = v.focus.pass_title(None if v.rolled else k)
        rows = [f"output_{len(drawn)}", f"{shape_str(e.tensor_shape)} ({e.tensor_memory_str})", where]
        style = "filled,solid" if v.from_input[p] else "filled,dashed"
        attrs = {"label": render_lines_to_html(rows), "shape": "oval", "fillcolor": FILL_OUTPUT}
        g.node(name, {**attrs, "color": "black", "style": style}, ())
        g.edges[(src, name)] = _edge_attrs(v.from_input[p])
    return name


def _model_sink(v: _View) -> str | None:
    outs = [v.rep[p] for p in range(v.n) if v.entries[p].is_output_layer and p not in v.hidden]
    return outs[-1] if outs else None


def _caption(v: _View) -> str:
    if v.focus is None:
        return caption(v.log, v.n, v.log.total_activation_memory, used_params(v.log), None)
    inside = v.focus.inside
    params = list({prm.address: prm for p in inside for prm in v.log._params_of(p)}.values())
    memory = sum(v.entries[p].tensor_memory for p in inside)
    return caption(v.log, len(inside), memory, params, f"{v.focus.title} ({v.focus.class_name})")
