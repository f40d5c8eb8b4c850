"""The supergraph of a `TraceBundle` (spec §12.7), coloured by divergence, coverage or group.

Modes:
- ``"divergence"``: fill from a 9-step Reds scale by the node's divergence (``metric``,
  ``direction``) relative to the largest divergence in the graph; nodes that cannot be compared
  (one trace only, no saved tensor, shapes differ) are light grey.
- ``"swarm"`` (alias ``"coverage"``): fill from a 9-step viridis scale by the fraction of traces
  that have the node (1.0 is the yellow end).
- ``"group_color"`` (alias ``"group"``): a tab10 colour per group; a node that traces of several
  groups share is striped with their colours. Needs a bundle made with ``groups``.
- ``"auto"``: divergence when some node can be compared, else swarm.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Any

from ._dot import Graph, node_name, q, shape_str
from ._render import render

if TYPE_CHECKING:
    from ..traces import TraceBundle

REDS = ("#fff5f0", "#fee0d2", "#fcbba1", "#fc9272", "#fb6a4a", "#ef3b2c", "#cb181d", "#a50f15", "#67000d")
VIRIDIS = ("#440154", "#472d7b", "#3b528b", "#2c728e", "#21918c", "#28ae80", "#5ec962", "#addc30", "#fde725")
TAB10 = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
NOT_COMPARED = "#EEEEEE"
_MODES = {"auto": "auto", "divergence": "divergence", "swarm": "swarm", "coverage": "swarm"}
_MODES.update({"group_color": "group_color", "group": "group_color"})
_RANKDIR = {"bottomup": "BT", "topdown": "TB", "leftright": "LR"}
_PASS = re.compile(r":\d+")


def _scale(palette: tuple[str, ...], frac: float) -> str:
    frac = min(max(frac, 0.0), 1.0)
    return palette[round(frac * (len(palette) - 1))]


def _dark(color: str) -> bool:
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b < 128


def _check(mode: str, vis_opt: str, vis_orientation: str, direction: str) -> str:
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {list(_MODES)}, not {mode!r}.")
    if vis_opt not in ("unrolled", "rolled"):
        raise ValueError(f"vis_opt must be 'unrolled' or 'rolled', not {vis_opt!r}.")
    if vis_orientation not in _RANKDIR:
        raise ValueError(f"vis_orientation must be one of {list(_RANKDIR)}, not {vis_orientation!r}.")
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', not {direction!r}.")
    return _MODES[mode]


def bundle_dot(
    bundle: TraceBundle,
    mode: str = "auto",
    *,
    metric: str = "cosine",
    show_coverage: bool = False,
    vis_opt: str = "unrolled",
    vis_orientation: str = "bottomup",
    direction: str = "forward",
) -> str:
    """DOT source of the bundle's supergraph (see the module docstring for the modes).

    Raises:
        ValueError: An unknown option; ``group_color`` on a bundle without groups; ``divergence``
            when no node can be compared.
    """
    mode = _check(mode, vis_opt, vis_orientation, direction)
    div: dict[str, float] = {}
    if mode in ("auto", "divergence"):
        try:
            div = bundle.divergences(metric, direction=direction)
        except ValueError:
            if mode == "divergence":
                raise
        mode = "divergence" if div else "swarm"
    if mode == "group_color" and bundle.groups is None:
        raise ValueError("mode='group_color' needs a bundle made with groups=[...].")
    group_names = sorted(set(bundle.groups or ()), key=(bundle.groups or []).index)
    n_traces = len(bundle.traces)

    # Rolled: passes of one layer (same name without ':k') become one node.
    def key(name: str) -> str:
        return _PASS.sub("", name) if vis_opt == "rolled" else name

    members: dict[str, list[int]] = {}
    for i, name in enumerate(bundle.nodes):
        members.setdefault(key(name), []).append(i)
    top = max((v for v in div.values() if v == v and v != float("inf")), default=0.0)
    g = Graph()
    for k, idxs in members.items():
        traces = sorted({t for i in idxs for t in bundle._positions[i]})
        first = bundle[idxs[0]]
        vals = [div[bundle.nodes[i]] for i in idxs if bundle.nodes[i] in div]
        lines = [f"<B>{html.escape(k)}</B>"]
        if len(idxs) > 1:
            lines[0] += f" (x{len(idxs)})"
        lines.append(html.escape(first.op_type) + (f" @{html.escape(first.module_path)}" if first.module_path else ""))
        if first.shape is not None:
            lines.append(shape_str(first.shape))
        attrs: dict[str, Any] = {"shape": "box", "style": "filled,solid"}
        if mode == "divergence":
            value = max(vals) if vals else None
            fill = (
                NOT_COMPARED
                if value is None
                else _scale(REDS, 1.0 if top == 0 else (value / top if value == value else 0))
            )
            if value is not None:
                lines.append(f"{metric} divergence {value:.4g}")
        elif mode == "swarm":
            fill = _scale(VIRIDIS, len(traces) / n_traces)
        else:
            groups_here = [gn for gn in group_names if any(bundle.groups[t] == gn for t in traces)]  # type: ignore[index]
            colors = [TAB10[group_names.index(gn) % len(TAB10)] for gn in groups_here]
            fill = colors[0] if len(colors) == 1 else ":".join(colors)
            if len(colors) > 1:
                attrs["style"] = "striped"
            lines.append("groups: " + html.escape(", ".join(groups_here)))
        if show_coverage or mode == "swarm":
            lines.append(f"coverage {len(traces)}/{n_traces}")
        attrs["fillcolor"] = fill
        attrs["fontcolor"] = "white" if ":" not in fill and _dark(fill) else "black"
        attrs["label"] = "<" + "<br/>".join(lines) + ">"
        g.node(node_name(k), attrs, ())
    for a, b in bundle.edges():
        g.edges.setdefault((node_name(key(a)), node_name(key(b))), {"arrowsize": ".7"})
    model = bundle.traces[0].model_name
    br = "<br align='left'/>"
    caption = (
        f"<<B>{html.escape(model)}: {n_traces} traces</B>{br}{len(bundle.nodes)} nodes, "
        f"{len(bundle.universal_nodes)} in every trace{br}colour: {mode}"
        + (f" ({html.escape(metric)}, {direction})" if mode == "divergence" else "")
        + f"{br}>"
    )
    header = [
        f"digraph {q(model + '_bundle')} {{",
        f"  graph [label={caption} labeljust=left labelloc=t ordering=out rankdir={_RANKDIR[vis_orientation]}]",
        "  node [ordering=out]",
    ]
    return g.source(header, [])


def show_bundle_graph(
    bundle: TraceBundle,
    vis_outpath: str | None = None,
    mode: str = "auto",
    *,
    metric: str = "cosine",
    show_coverage: bool = False,
    vis_opt: str = "unrolled",
    vis_format: str = "pdf",
    vis_orientation: str = "bottomup",
    save_only: bool = False,
    direction: str = "forward",
    return_dot: bool = False,
) -> str | None:
    """Renders a `TraceBundle`'s supergraph with graphviz.

    Args:
        bundle: The bundle (``tl.bundle(...)``).
        vis_outpath: Output path without extension (default ``"bundle_graph"``).
        mode: ``"auto"``, ``"divergence"`` (Reds), ``"swarm"`` (coverage, viridis) or
            ``"group_color"`` (tab10, needs groups).
        metric: Divergence metric: ``"cosine"``, ``"relative_l2"`` or ``"pearson"``.
        show_coverage: Add ``coverage k/n`` to every node.
        vis_opt: ``"unrolled"`` (one node per pass) or ``"rolled"`` (passes of a layer merged;
            a merged node shows the largest divergence of its passes).
        vis_format: Graphviz output format (``"pdf"``, ``"png"``, ``"svg"``, ...).
        vis_orientation: ``"bottomup"``, ``"topdown"`` or ``"leftright"``.
        save_only: Do not open a viewer.
        direction: ``"forward"`` (activation divergence) or ``"backward"`` (gradients).
        return_dot: Return the DOT source instead of the rendered file's path.

    Returns:
        The DOT source when ``return_dot``, else the rendered file's path (None if graphviz failed).
    """
    source = bundle_dot(
        bundle,
        mode,
        metric=metric,
        show_coverage=show_coverage,
        vis_opt=vis_opt,
        vis_orientation=vis_orientation,
        direction=direction,
    )
    path = render(source, vis_outpath or "bundle_graph", vis_format, save_only=save_only)
    return source if return_dot else path
