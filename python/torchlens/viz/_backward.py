"""The backward graph (spec §12.6): one oval per GradFnLog, an edge to each of its next grad_fns.

`backward_dot` writes the DOT source, `render_backward_graph` renders it (`ModelLog.show_backward_graph`),
and `show_backward_graph` is the top-level function, which also takes a `VisualizationOptions`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from .._options import MISSING, VIS_ALIASES, VisualizationOptions
from ._code_panel import add_code_panel, panel_text
from ._dot import attrs_str, q, shape_str
from ._render import render
from ._spec import NodeSpec, RenderHooks, check_render_options

if TYPE_CHECKING:
    from ..log.grad_fn_log import GradFnLog
    from ..log.model_log import ModelLog

EDGE_COLOR = "#9197F6"
NODE_FILL = "#F2F3FF"
NO_BACKWARD = "No backward graph is available; call log_backward(loss) first."
_RANKDIR = {"bottomup": "BT", "topdown": "TB", "leftright": "LR"}


def _grad_shape(g: GradFnLog) -> str:
    """`grad {shape}` of the first output gradient any pass captured, else `grad unknown`."""
    for p in g.passes.values():
        for t in p.grad_outputs or ():
            if t is not None:
                return f"grad {shape_str(tuple(t.shape))}"
    return "grad unknown"


def default_spec(log: ModelLog, g: GradFnLog) -> NodeSpec:
    """The node of one grad_fn: `[i] ` for intervening ones, ` [custom]` for Python autograd
    Functions, `@layer` when a forward layer produced it, and the gradient shape."""
    title = ("[i] " if g.is_intervening else "") + g.label + (" [custom]" if g.is_custom else "")
    lines = [title]
    if g._position is not None:
        lines.append("@" + log._col("labels")[g._position])
    lines.append(_grad_shape(g))
    return NodeSpec(
        lines,
        shape="oval",
        fillcolor=NODE_FILL,
        fontcolor="black",
        style="filled,solid",
        color=EDGE_COLOR,
        penwidth=1.8,
        extra_attrs={"ordering": "out"},
    )


def backward_dot(
    log: ModelLog,
    direction: str = "topdown",
    graph_overrides: dict[str, Any] | None = None,
    edge_overrides: dict[str, Any] | None = None,
    node_spec_fn: Any = None,
) -> str:
    """DOT source of the log's backward graph.

    `graph_overrides` values may be `f(model_log)`; `edge_overrides` values apply to every edge,
    callables as `f(model_log, grad_fn_log, next_grad_fn_log)`; `node_spec_fn(grad_fn_log,
    default_spec)` returns a NodeSpec or None (keep the default).

    Raises:
        ValueError: Nothing was captured (`log_backward` was never called), or an unknown direction.
    """
    if not log.has_backward_log:
        raise ValueError(NO_BACKWARD)
    if direction not in _RANKDIR:
        raise ValueError(f"vis_direction must be one of {list(_RANKDIR)}, not {direction!r}.")
    logs = log.grad_fn_logs
    br = "<br align='left'/>"
    caption = (
        f"<<B>{html.escape(log.model_name)} backward graph</B>{br}{log.num_grad_fns} grad_fn nodes{br}"
        f"{log.backward_num_passes} backward pass(es){br}>"
    )
    gattrs: dict[str, Any] = {
        "label": caption,
        "labeljust": "left",
        "labelloc": "t",
        "ordering": "out",
        "rankdir": _RANKDIR[direction],
    }
    for k, v in (graph_overrides or {}).items():
        gattrs[k] = v(log) if callable(v) else v
    eattrs: dict[str, Any] = {"color": EDGE_COLOR, "fontcolor": EDGE_COLOR}
    per_edge = {k: v for k, v in (edge_overrides or {}).items() if callable(v)}
    eattrs.update({k: v for k, v in (edge_overrides or {}).items() if not callable(v)})
    lines = [
        f"digraph {q(log.model_name + '_backward')} {{",
        "  // Backward grad_fn graph",
        f"  graph {attrs_str(gattrs)}",
        "  node [ordering=out]",
        f"  edge {attrs_str(eattrs)}",
    ]
    hooks = RenderHooks(node_spec_fn=node_spec_fn)
    order = list(log.grad_fns)

    def name(g: GradFnLog) -> str:
        # A GradFnLog whose freed grad_fn left its id to a newer one keeps a name of its own.
        live = logs.get(g.grad_fn_id) is g
        return q(f"grad_fn_{g.grad_fn_id}" if live else f"grad_fn_{g.grad_fn_id}_{g.grad_fn_total_num}")

    for g in order:
        spec = hooks.node_spec(g, default_spec(log, g))
        lines.append(f"  {name(g)} {attrs_str(spec.to_attrs())}")
    for g in order:
        for nid in g.next_grad_fn_ids:
            nxt = logs.get(nid)
            if nxt is None:
                continue
            edge = f"  {name(g)} -> {name(nxt)}"
            if per_edge:
                edge += " " + attrs_str({k: f(log, g, nxt) for k, f in per_edge.items()})
            lines.append(edge)
    lines.append("}")
    return "\n".join(lines)


def render_backward_graph(
    log: ModelLog,
    vis_outpath: str = "backward_modelgraph",
    vis_graph_overrides: dict[str, Any] | None = None,
    node_spec_fn: Any = None,
    collapsed_node_spec_fn: Any = None,
    vis_node_mode: str = "default",
    vis_edge_overrides: dict[str, Any] | None = None,
    vis_save_only: bool = False,
    vis_fileformat: str = "pdf",
    vis_direction: str = "topdown",
    code_panel: Any = False,
) -> str:
    """Render the backward graph with graphviz and return its DOT source (`collapsed_node_spec_fn`
    is accepted for 2.15 compatibility: the backward graph has no collapsed nodes)."""
    check_render_options({"node_mode": vis_node_mode}, code_panel)
    if vis_node_mode != "default":
        raise NotImplementedError(
            f"node_mode={vis_node_mode!r} presets describe forward layers; the backward graph has only 'default'."
        )
    src = backward_dot(log, vis_direction, vis_graph_overrides, vis_edge_overrides, node_spec_fn)
    if code_panel is not False:
        src = add_code_panel(src, panel_text(log, code_panel))
    render(src, vis_outpath, vis_fileformat, vis_save_only, "dot")
    return src


# `VisualizationOptions` fields that the backward graph reads -> `render_backward_graph` keywords.
_FIELDS = {
    "output_path": "vis_outpath",
    "save_only": "vis_save_only",
    "file_format": "vis_fileformat",
    "direction": "vis_direction",
    "graph_overrides": "vis_graph_overrides",
    "edge_overrides": "vis_edge_overrides",
    "node_spec_fn": "node_spec_fn",
    "collapsed_node_spec_fn": "collapsed_node_spec_fn",
    "node_mode": "vis_node_mode",
}


def show_backward_graph(
    model_log: ModelLog,
    vis_outpath: Any = MISSING,
    vis_save_only: Any = MISSING,
    vis_fileformat: Any = MISSING,
    vis_direction: Any = MISSING,
    vis_graph_overrides: Any = MISSING,
    vis_edge_overrides: Any = MISSING,
    node_spec_fn: Any = None,
    collapsed_node_spec_fn: Any = None,
    vis_node_mode: Any = MISSING,
    code_panel: Any = False,
    visualization: VisualizationOptions | None = None,
) -> str:
    """Render the backward graph that `model_log.log_backward(loss)` captured (spec §12.6).

    Defaults: `backward_modelgraph.pdf`, top-down. The `vis_*` keywords are plain overrides;
    fields set explicitly on `visualization` win over them.

    Returns:
        The DOT source.

    Raises:
        ValueError: No backward graph was captured.
    """
    kwargs: dict[str, Any] = {}
    flat = {
        "vis_outpath": vis_outpath,
        "vis_save_only": vis_save_only,
        "vis_fileformat": vis_fileformat,
        "vis_direction": vis_direction,
        "vis_graph_overrides": vis_graph_overrides,
        "vis_edge_overrides": vis_edge_overrides,
        "vis_node_mode": vis_node_mode,
    }
    for name, value in flat.items():
        if value is not MISSING:
            kwargs[_FIELDS[VIS_ALIASES[name]]] = value
    if node_spec_fn is not None:
        kwargs["node_spec_fn"] = node_spec_fn
    if collapsed_node_spec_fn is not None:
        kwargs["collapsed_node_spec_fn"] = collapsed_node_spec_fn
    if visualization is not None:
        for field_name, kw in _FIELDS.items():
            if visualization.is_field_explicit(field_name):
                kwargs[kw] = getattr(visualization, field_name)
    return render_backward_graph(model_log, code_panel=code_panel, **kwargs)
