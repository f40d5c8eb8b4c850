"""Node customization (spec §12.5): `NodeSpec`, the HTML label writer, the render hooks, the render audit."""

from __future__ import annotations

import dataclasses
import html
from dataclasses import dataclass, field
from typing import Any

from ..log.export import LAYER_PASS_LOG_FIELD_ORDER
from ..log.model_log import ModelLog
from ._dagua import require_dagua
from ._render import layout_engine


@dataclass
class NodeSpec:
    """How one graph node is drawn: its label rows and its graphviz attributes.

    `node_spec_fn(layer_log, default_spec)` and `collapsed_node_spec_fn(module_log, default_spec)`
    receive the spec built for a node and return a new one (or None to keep the given one, which
    they may also have modified in place).
    """

    lines: list[str]
    shape: str = "box"
    fillcolor: str | None = None
    fontcolor: str | None = None
    style: str = "filled,rounded"
    color: str | None = None
    penwidth: float | None = None
    tooltip: str | None = None
    extra_attrs: dict[str, str] = field(default_factory=dict)

    def replace(self, **kwargs: Any) -> NodeSpec:
        """A copy with the given fields changed."""
        return dataclasses.replace(self, **kwargs)

    def to_attrs(self) -> dict[str, Any]:
        """The graphviz node attributes: the HTML label, then every field that is set, then `extra_attrs`."""
        attrs: dict[str, Any] = {"label": render_lines_to_html(self.lines)}
        for name in ("shape", "fillcolor", "fontcolor", "style", "color", "penwidth", "tooltip"):
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extra_attrs)
        return attrs


def render_lines_to_html(lines: list[str]) -> str:
    """A graphviz HTML-like label: one centred table row per line, text escaped."""
    rows = "".join(f'<TR><TD ALIGN="CENTER">{html.escape(str(line), quote=False)}</TD></TR>' for line in lines)
    return f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{rows}</TABLE>>'


@dataclass
class RenderHooks:
    """The caller's graph customizations (spec §12.3-12.5); every field is optional."""

    node_spec_fn: Any = None
    collapsed_node_spec_fn: Any = None
    collapse_fn: Any = None
    skip_fn: Any = None
    edge_overrides: dict[str, Any] | None = None
    module_overrides: dict[str, Any] | None = None
    gradient_edge_overrides: dict[str, Any] | None = None
    node_mode: str = "default"  # the preset applied after the default spec, before node_spec_fn

    def node_spec(self, layer_log: Any, spec: NodeSpec) -> NodeSpec:
        if self.node_spec_fn is None:
            return spec
        return _spec_result(self.node_spec_fn(layer_log, spec), spec, "node_spec_fn")

    def collapsed_spec(self, module_log: Any, spec: NodeSpec) -> NodeSpec:
        if self.collapsed_node_spec_fn is None:
            return spec
        return _spec_result(self.collapsed_node_spec_fn(module_log, spec), spec, "collapsed_node_spec_fn")

    def edge_attrs(self, log: ModelLog, parent: Any, child: Any, gradient: bool = False) -> dict[str, Any]:
        """`edge_overrides` (or, for a gradient edge, `gradient_edge_overrides`) values, callables called
        as `f(model_log, parent_entry, child_entry)`."""
        over = self.gradient_edge_overrides if gradient else self.edge_overrides
        return {k: (v(log, parent, child) if callable(v) else v) for k, v in (over or {}).items()}

    def cluster_attrs(self, log: ModelLog, cluster_name: str) -> dict[str, Any]:
        """`module_overrides` values, callables called as `f(model_log, "address:pass")` (rolled: the address)."""
        return {k: (v(log, cluster_name) if callable(v) else v) for k, v in (self.module_overrides or {}).items()}


_NODE_MODES = ("default", "profiling", "vision", "attention")
_CODE_PANELS = ("forward", "class", "init+forward")


def check_render_options(render: dict[str, Any], code_panel: Any = False) -> None:
    """Reject bad or not-yet-available rendering options before any work is done.

    `render` holds `render_graph` keyword arguments (only the ones present are checked).
    Raises ValueError for invalid values, ModuleNotFoundError for the dagua renderer without its backend.
    """
    mode = render.get("node_mode", "default")
    if mode not in _NODE_MODES:
        raise ValueError(f"node_mode must be one of {list(_NODE_MODES)}, not {mode!r}.")
    if not (code_panel is False or code_panel is True or code_panel in _CODE_PANELS or callable(code_panel)):
        raise ValueError(f"code_panel must be a bool, one of {list(_CODE_PANELS)} or a callable, not {code_panel!r}.")
    if "vis_node_placement" in render and render["vis_node_placement"] != "elk":
        layout_engine(render["vis_node_placement"])
    renderer = render.get("vis_renderer", "graphviz")
    if renderer == "dagua":
        require_dagua()
    elif renderer != "graphviz":
        raise ValueError(f"vis_renderer must be 'graphviz' or 'dagua', not {renderer!r}.")


def _spec_result(result: Any, spec: NodeSpec, name: str) -> NodeSpec:
    if result is None:
        return spec
    if not isinstance(result, NodeSpec):
        raise TypeError(f"{name} must return a NodeSpec or None, not {type(result).__name__}.")
    return result


# --------------------------------------------------------------------------- render audit

_NOT_DRAWN = "Not drawn by the graphviz renderer."
_VALUES = "Tensor values are not drawn; nodes show shapes and sizes only."

_MODEL_LOG_USED = {
    "model_name": "Graph name and caption title.",
    "num_tensors_total": "Caption tensor count.",
    "total_activation_memory": "Caption activation-memory summary.",
    "total_params": "Caption parameter summary.",
    "total_params_trainable": "Caption trainable/frozen breakdown.",
    "total_params_frozen": "Caption trainable/frozen breakdown.",
    "total_params_memory": "Caption parameter-memory summary.",
    "modules": "Cluster titles, class names, pass counts and collapsed module boxes.",
    "layer_list": "Unrolled node inventory.",
    "layer_logs": "Rolled node inventory; the object given to node_spec_fn and skip_fn.",
}
_ENTRY_USED = {
    "layer_label": "Node name and unrolled title.",
    "layer_label_no_pass": "Rolled title.",
    "pass_num": "Pass ranges on rolled edges.",
    "num_passes": "Rolled `(xN)` suffix.",
    "parent_layers": "Edges.",
    "child_layers": "Whether rolled edges vary across passes.",
    "tensor_shape": "Shape row.",
    "tensor_memory": "Focused-module caption memory.",
    "tensor_memory_str": "Size in the shape row.",
    "parent_params": "Params row and fill colour.",
    "is_input_layer": "Input colour and solid/dashed style.",
    "is_output_layer": "Output colour and the sink rank.",
    "is_buffer_layer": "Buffer shape and buffer visibility.",
    "buffer_address": "Buffer address row and meaningful-buffer filter.",
    "io_role": "Address row of inputs and outputs.",
    "is_leaf_module_output": "Box shape and module address row.",
    "leaf_module_pass": "Module address row.",
    "containing_modules": "Module clusters and collapsing.",
}
_MODULE_USED = {
    "address": "Cluster identity and collapsed box title.",
    "module_class_name": "Cluster label and collapsed box class row.",
    "num_passes": "`:k` / `(xN)` suffixes.",
    "params": "Collapsed box parameter summary.",
}


@dataclass
class TorchLensRenderAudit:
    """Which fields of the log objects the graph uses (field -> how) and which it leaves out (field -> why)."""

    model_log_used: dict[str, str]
    model_log_unused: dict[str, str]
    entry_used: dict[str, str]
    entry_unused: dict[str, str]
    module_used: dict[str, str]
    module_unused: dict[str, str]

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {f.name: dict(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _public_fields(obj: Any) -> list[str]:
    """Public data fields of an object (properties and instance attributes), without evaluating them."""
    cls = type(obj)
    names = {n for n in dir(cls) if not n.startswith("_") and isinstance(getattr(cls, n, None), property)}
    names.update(n for n in vars(obj) if not n.startswith("_"))
    return sorted(names)


def _reason(name: str) -> str:
    if name in ("activation", "transformed_activation", "gradient", "transformed_gradient", "captured_args"):
        return _VALUES
    return _NOT_DRAWN


def _split(names: list[str], used: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    return dict(used), {n: _reason(n) for n in names if n not in used}


def build_render_audit(model_log: ModelLog) -> TorchLensRenderAudit:
    """Audit which ModelLog, layer-entry and module fields the graphviz renderer reads (spec §12)."""
    if not isinstance(model_log, ModelLog):
        raise TypeError(f"build_render_audit expects a ModelLog, not {type(model_log).__name__}.")
    m_used, m_unused = _split(_public_fields(model_log), _MODEL_LOG_USED)
    e_used, e_unused = _split(list(LAYER_PASS_LOG_FIELD_ORDER), _ENTRY_USED)
    root = model_log.modules["self"]
    d_used, d_unused = _split(_public_fields(root), _MODULE_USED)
    return TorchLensRenderAudit(m_used, m_unused, e_used, e_unused, d_used, d_unused)
