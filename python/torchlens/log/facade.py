"""ModelLog methods that the 2.15 API puts on the log but that a higher layer implements: graphs
(`render_graph`, `to_dot`, `show_backward_graph`, the dagua and audit helpers) and the fast replay
(`save_new_activations`).

Each imports its layer locally, marked `# facade`; `ModelLog` inherits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from .model_log import ModelLog


class FacadeMethods:
    """Mixed into `ModelLog`."""

    def render_graph(
        self,
        vis_mode: str = "unrolled",
        vis_nesting_depth: int = 1000,
        vis_outpath: str = "modelgraph",
        vis_graph_overrides: dict[str, Any] | None = None,
        module: Any = None,
        node_mode: str = "default",
        node_spec_fn: Any = None,
        collapsed_node_spec_fn: Any = None,
        collapse_fn: Any = None,
        skip_fn: Any = None,
        vis_edge_overrides: dict[str, Any] | None = None,
        vis_gradient_edge_overrides: dict[str, Any] | None = None,
        vis_module_overrides: dict[str, Any] | None = None,
        vis_save_only: bool = False,
        vis_fileformat: str = "pdf",
        show_buffer_layers: Any = "meaningful",
        direction: str = "bottomup",
        vis_node_placement: str = "auto",
        vis_renderer: str = "graphviz",
        vis_theme: str = "torchlens",
        code_panel: Any = False,
    ) -> str:
        """Render the computational graph with graphviz and return its DOT source (spec §12).

        Args:
            vis_mode: `"unrolled"` (one node per pass) or `"rolled"` (one node per layer).
            vis_nesting_depth: Collapse modules nested deeper than this into one box (0: never).
            vis_outpath: Output path without extension (a trailing image extension is stripped).
            vis_graph_overrides: Extra graphviz graph attributes (values may be `f(model_log)`).
            module: Focus on one module: a ModuleLog, an address, or `"addr:k"` for one pass.
            node_mode: A preset applied to every layer node before `node_spec_fn`: `"default"`,
                `"profiling"` (runtime, output size, calling file:line and function), `"vision"` (input
                and output shapes of convolutions and pools) or `"attention"` (marks attention ops).
            node_spec_fn: `f(layer_log, default_spec) -> NodeSpec | None` for every layer node.
            collapsed_node_spec_fn: `f(module_log, default_spec) -> NodeSpec | None` for collapsed modules.
            collapse_fn: `f(module_log) -> bool`, replacing the depth rule: collapse the outermost module
                it accepts.
            skip_fn: `f(layer_log) -> bool`: hide the layer's nodes and connect their parents to their children.
            vis_edge_overrides: Edge attributes (values may be `f(model_log, parent_entry, child_entry)`).
            vis_gradient_edge_overrides: Attributes of the gradient edges (unrolled graphs of a log with
                gradients; values may be `f(model_log, parent_entry, child_entry)`).
            vis_module_overrides: Cluster attributes (values may be `f(model_log, "address:pass")`).
            vis_save_only: Do not open the rendered file in a viewer.
            vis_fileformat: Any format `dot -T` accepts (`pdf`, `png`, `svg`, ...).
            show_buffer_layers: `"never"`, `"meaningful"` (default) or `"always"`.
            direction: `"bottomup"`, `"topdown"` or `"leftright"`.
            vis_node_placement: `"auto"`/`"dot"`, `"sfdp"`, or `"elk"` (falls back to sfdp with a warning).
            vis_renderer: `"graphviz"`; `"dagua"` needs the optional dagua backend.
            vis_theme: Used by the dagua renderer only.
            code_panel: Draw the model's source (captured at log time) beside the graph: `True` or
                `"forward"`, `"class"`, `"init+forward"`, or `f(model) -> str`; forces the dot layout.

        Returns:
            The DOT source.
        """
        self._require_all_layers()  # type: ignore[attr-defined]
        from ..viz import check_render_options, layout_engine, render  # facade

        check_render_options(
            {"node_mode": node_mode, "vis_renderer": vis_renderer},
            code_panel,
        )
        engine = "dot" if code_panel is not False else layout_engine(vis_node_placement)
        src = self.to_dot(
            vis_mode,
            vis_nesting_depth,
            direction,
            module,
            show_buffer_layers=show_buffer_layers,
            vis_graph_overrides=vis_graph_overrides,
            node_spec_fn=node_spec_fn,
            collapsed_node_spec_fn=collapsed_node_spec_fn,
            collapse_fn=collapse_fn,
            skip_fn=skip_fn,
            vis_edge_overrides=vis_edge_overrides,
            vis_module_overrides=vis_module_overrides,
            vis_gradient_edge_overrides=vis_gradient_edge_overrides,
            node_mode=node_mode,
            code_panel=code_panel,
        )
        render(src, vis_outpath, vis_fileformat, vis_save_only, engine)
        return src

    def _repr_html_(self) -> str:
        """Jupyter display: a compact summary table and the graph as inline SVG (when graphviz's `dot`
        is installed and the graph has at most 500 nodes; the summary only otherwise)."""
        from ..viz import repr_html  # facade

        return repr_html(self)

    def to_dot(
        self,
        vis_mode: str = "unrolled",
        vis_nesting_depth: int = 1000,
        direction: str = "bottomup",
        module: Any = None,
        *,
        show_buffer_layers: Any = "meaningful",
        vis_graph_overrides: dict[str, Any] | None = None,
        node_spec_fn: Any = None,
        collapsed_node_spec_fn: Any = None,
        collapse_fn: Any = None,
        skip_fn: Any = None,
        vis_edge_overrides: dict[str, Any] | None = None,
        vis_module_overrides: dict[str, Any] | None = None,
        vis_gradient_edge_overrides: dict[str, Any] | None = None,
        node_mode: str = "default",
        code_panel: Any = False,
    ) -> str:
        """DOT source of the graph without rendering it (the arguments are those of `render_graph`)."""
        self._require_all_layers()  # type: ignore[attr-defined]
        from ..viz import RenderHooks, add_code_panel, build_dot, check_render_options, panel_text  # facade

        check_render_options({"node_mode": node_mode}, code_panel)

        hooks = RenderHooks(
            node_spec_fn,
            collapsed_node_spec_fn,
            collapse_fn,
            skip_fn,
            vis_edge_overrides,
            vis_module_overrides,
            vis_gradient_edge_overrides,
            node_mode,
        )
        src = build_dot(
            self,
            vis_mode,
            vis_nesting_depth,
            direction,
            show_buffer_layers,
            vis_graph_overrides,
            module,
            hooks,  # type: ignore[arg-type]
        )
        return src if code_panel is False else add_code_panel(src, panel_text(self, code_panel))

    def show_backward_graph(
        self,
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
        """Render the backward graph captured by `log_backward` (spec §12.6) and return its DOT source.

        One oval per grad_fn (`[i]` marks intervening ones, `@layer` the forward layer that produced
        it), an edge to each of its next grad_fns. `node_spec_fn(grad_fn_log, default_spec)` may
        return a NodeSpec; `vis_edge_overrides` values apply to every edge.

        Raises:
            ValueError: No backward graph was captured.
        """
        from ..viz import render_backward_graph  # facade

        return render_backward_graph(
            self,  # type: ignore[arg-type]
            vis_outpath,
            vis_graph_overrides,
            node_spec_fn,
            collapsed_node_spec_fn,
            vis_node_mode,
            vis_edge_overrides,
            vis_save_only,
            vis_fileformat,
            vis_direction,
            code_panel,
        )

    def render_dagua_graph(
        self,
        vis_mode: str = "unrolled",
        vis_nesting_depth: int = 1000,
        vis_outpath: str = "graph.gv",
        vis_save_only: bool = False,
        vis_fileformat: str = "pdf",
        vis_buffer_layers: bool = False,
        vis_direction: str = "bottomup",
        vis_theme: str = "torchlens",
    ) -> str:
        """Render with the optional dagua backend (ModuleNotFoundError naming `dagua` when it is missing)."""
        from ..viz import render_model_log_with_dagua  # facade

        return render_model_log_with_dagua(
            self,
            vis_mode,
            vis_nesting_depth,
            vis_outpath,
            vis_save_only,
            vis_fileformat,
            vis_buffer_layers,
            vis_direction,
            vis_theme,
        )

    def to_dagua_graph(
        self,
        vis_mode: str = "unrolled",
        vis_nesting_depth: int = 1000,
        show_buffer_layers: bool = False,
        direction: str = "bottomup",
        include_gradient_edges: bool | None = None,
    ) -> Any:
        """A dagua graph of the log (ModuleNotFoundError naming `dagua` when it is missing)."""
        from ..viz import model_log_to_dagua_graph  # facade

        return model_log_to_dagua_graph(
            self, vis_mode, vis_nesting_depth, show_buffer_layers, direction, include_gradient_edges
        )

    def visualization_field_audit(self) -> Any:
        """Which log fields the graph uses and which it leaves out (`torchlens.build_render_audit`)."""
        from ..viz import build_render_audit  # facade

        return build_render_audit(self)  # type: ignore[arg-type]

    def save_new_activations(
        self,
        model: nn.Module,
        input_args: Any,
        input_kwargs: dict[str, Any] | None = None,
        layers_to_save: Any = "all",
        gradients_to_save: Any = "all",
        random_seed: int | None = None,
        train_mode: bool | None = None,
    ) -> None:
        """Run `model` on new inputs and replace the saved activations, keeping labels and metadata (spec §8.7).

        Raises:
            ValueError: The new pass computes a different graph.
        """
        from ..api_extra import save_new_activations  # facade

        log: ModelLog = self  # type: ignore[assignment]
        save_new_activations(
            log, model, input_args, input_kwargs, layers_to_save, gradients_to_save, random_seed, train_mode
        )

    def finalize_gradient_bundle(self) -> str:
        """Commit the bundle that `save_gradients_to` streams this log's gradients to; returns its path.

        `log_backward` / `recording_backward` commit it themselves after their first backward; call
        this after a plain `loss.backward()`. The bundle holds the gradients received until then
        (later ones stay in memory only).

        Raises:
            ValueError: No gradient bundle is waiting to be committed.
        """
        from ..io import finalize_gradient_bundle  # facade

        return finalize_gradient_bundle(self)  # type: ignore[arg-type]

    def preview_fastlog(
        self,
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
        """The graph coloured by what `tl.fastlog.record(model, x, keep_op=..., keep_module=...)` would keep
        (spec §10.8); see `torchlens.preview_fastlog` for the arguments. Returns the DOT source."""
        from ..fastlog._preview import preview_fastlog  # facade

        return preview_fastlog(
            self,
            predicate,
            keep_op,
            keep_module,
            color_kept,
            color_rejected,
            color_unreachable,
            color_predicate_error,
            show_predicate_inputs,
            show_module_events,
            **render_kwargs,
        )
