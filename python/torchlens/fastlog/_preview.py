"""`preview_fastlog`: the logged graph coloured by what a fastlog predicate would keep (spec §10.8).

The predicates run over the pass's events rebuilt from the log (`_preview_events`), then the
ordinary graph is drawn with a node hook (node colour, optional predicate rows), a collapsed-module
hook and module-cluster overrides (border colour of each module pass by `keep_module`'s decision).
"""

from __future__ import annotations

import inspect
from typing import Any

from .._options import MISSING
from ._preview_events import ERROR, KEPT, REJECTED, UNREACHABLE, PreviewDecisions, decide_events, merge_all

# Keyword arguments that configure the simulated recording rather than the drawing.
_RECORDING_KWARGS = ("default_op", "default_module", "history_size", "include_source_events")
# render_graph keywords that `to_dot` (DOT only, vis_outpath=None) does not take.
_RENDER_ONLY = (
    "vis_save_only",
    "vis_fileformat",
    "vis_node_placement",
    "vis_renderer",
    "vis_theme",
    "node_mode",
    "code_panel",
)
_STATUS_TEXT = {KEPT: "kept", REJECTED: "rejected", ERROR: "predicate raised", UNREACHABLE: "not offered"}


def preview_fastlog(
    model_log: Any,
    predicate: Any = None,
    keep_op: Any = None,
    keep_module: Any = None,
    color_kept: str = "#98FB98",
    color_rejected: str = "#E6E6E6",
    color_unreachable: str = "#F7D460",
    color_predicate_error: str = "#FF7AB6",
    show_predicate_inputs: bool = True,
    show_module_events: bool = True,
    **render_kwargs: Any,
) -> str:
    """Render `model_log`'s graph coloured by the decision fastlog's predicates would make (spec §10.8).

    Args:
        model_log: A log of the pass to preview (any `layers_to_save`; metadata is enough).
        predicate: Alias of `keep_op` (give one of them).
        keep_op: `f(ctx) -> bool | CaptureSpec | None` for op events, as in `tl.fastlog.record`.
        keep_module: The same for module enter/exit events (colours the module clusters).
        color_kept: Fill colour of the nodes a predicate keeps.
        color_rejected: Fill colour of the nodes a predicate drops.
        color_unreachable: Fill colour of the nodes never offered to a predicate (outputs, inputs and
            buffers without `include_source_events`, identity nodes).
        color_predicate_error: Fill colour of the nodes whose predicate raised or returned a bad value.
        show_predicate_inputs: Add rows with the event's raw label, module and decision to each node.
        show_module_events: Colour module clusters (and collapsed modules) by `keep_module`'s decision.
        **render_kwargs: `render_graph` keywords (`vis_outpath=None` returns the DOT without running
            graphviz), plus the recording options `default_op`, `default_module`, `history_size` and
            `include_source_events` of `tl.fastlog.record`.

    Returns:
        The DOT source.
    """
    if predicate is not None and keep_op is not None:
        raise ValueError("preview_fastlog: give `predicate` or `keep_op`, not both (predicate is keep_op)")
    keep_op = keep_op if keep_op is not None else predicate
    if render_kwargs.get("vis_renderer", "graphviz") == "dagua":
        raise NotImplementedError("preview_fastlog draws with graphviz only; the dagua renderer is not supported")
    rec = {k: render_kwargs.pop(k) for k in _RECORDING_KWARGS if k in render_kwargs}
    for k in ("default_op", "default_module"):
        if rec.get(k, False) is MISSING:
            rec[k] = False
    decisions = decide_events(model_log, keep_op, keep_module, **rec)
    colors = {KEPT: color_kept, REJECTED: color_rejected, UNREACHABLE: color_unreachable, ERROR: color_predicate_error}
    hooks = _Hooks(decisions, colors, show_predicate_inputs, show_module_events, render_kwargs)
    outpath = render_kwargs.pop("vis_outpath", "fastlog_preview")
    if outpath is None:
        # DOT only: `to_dot` takes render_graph's drawing keywords, not the file/viewer/renderer ones.
        accepted = inspect.signature(model_log.to_dot).parameters
        kw = {k: v for k, v in render_kwargs.items() if k in accepted or k not in _RENDER_ONLY}
        return model_log.to_dot(**kw, **hooks.kwargs())
    return model_log.render_graph(vis_outpath=outpath, **render_kwargs, **hooks.kwargs())


class _Hooks:
    """The node, collapsed-module and cluster hooks of one preview (the caller's own hooks run first)."""

    def __init__(
        self, d: PreviewDecisions, colors: dict[str, str], show_inputs: bool, show_modules: bool, kw: dict[str, Any]
    ) -> None:
        self.d = d
        self.colors = colors
        self.show_inputs = show_inputs
        self.show_modules = show_modules
        self.user_node = kw.pop("node_spec_fn", None)
        self.user_collapsed = kw.pop("collapsed_node_spec_fn", None)
        self.user_modules = dict(kw.pop("vis_module_overrides", None) or {})
        by_layer: dict[str, list[str]] = {}
        for label in d.nodes:
            by_layer.setdefault(label.split(":")[0], []).append(label)
        self.by_layer = by_layer

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node_spec_fn": self.node_spec}
        if self.show_modules:
            out["collapsed_node_spec_fn"] = self.collapsed_spec
            out["vis_module_overrides"] = {**self.user_modules, "color": self.cluster_color, "penwidth": "3"}
        else:
            if self.user_collapsed is not None:
                out["collapsed_node_spec_fn"] = self.user_collapsed
            if self.user_modules:
                out["vis_module_overrides"] = self.user_modules
        return out

    # -- nodes
    def _labels_of(self, layer_log: Any, title: str) -> list[str]:
        if title in self.d.nodes:
            return [title]  # unrolled: the node's title is the pass label
        return self.by_layer.get(str(layer_log.layer_label).split(":")[0], [])  # rolled: every pass

    def node_spec(self, layer_log: Any, spec: Any) -> Any:
        if self.user_node is not None:
            new = self.user_node(layer_log, spec)
            spec = new if new is not None else spec
        labels = self._labels_of(layer_log, str(spec.lines[0]) if spec.lines else "")
        statuses = [self.d.nodes[lab] for lab in labels]
        status = merge_all(statuses)
        lines = list(spec.lines)
        if self.show_inputs and labels:
            ctx = self.d.contexts.get(labels[0])
            if ctx is not None:
                lines.append(f"{ctx.kind} {ctx.raw_label} [{ctx.module_address or ''}]")
            lines.append(self._status_row(statuses, labels))
        tooltip = self.d.errors.get(labels[0]) if labels and status == ERROR else spec.tooltip
        return spec.replace(lines=lines, fillcolor=self.colors[status], tooltip=tooltip)

    def _status_row(self, statuses: list[str], labels: list[str]) -> str:
        if len(statuses) == 1:
            text = _STATUS_TEXT[statuses[0]]
            err = self.d.errors.get(labels[0])
            return f"fastlog: {text}" + (f" ({err[:60]})" if err else "")
        kept = sum(1 for s in statuses if s == KEPT)
        return f"fastlog: kept in {kept}/{len(statuses)} passes"

    # -- modules
    def _module_status(self, name: str) -> str:
        if name in self.d.modules:
            return self.d.modules[name]
        return merge_all([s for k, s in self.d.modules.items() if k.rsplit(":", 1)[0] == name])

    def cluster_color(self, log: Any, name: str) -> str:
        return self.colors[self._module_status(name)]

    def collapsed_spec(self, module_log: Any, spec: Any) -> Any:
        if self.user_collapsed is not None:
            new = self.user_collapsed(module_log, spec)
            spec = new if new is not None else spec
        title = str(spec.lines[0]).lstrip("@") if spec.lines else ""
        status = self._module_status(title if title in self.d.modules else module_log.address)
        lines = [*spec.lines, f"fastlog module: {_STATUS_TEXT[status]}"] if self.show_inputs else spec.lines
        return spec.replace(lines=lines, fillcolor=self.colors[status])
