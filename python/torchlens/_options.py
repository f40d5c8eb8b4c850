"""Grouped option objects and the deprecation mechanism for flat keyword arguments (spec §1.1, §1.3)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields
from typing import Any


class _Missing:
    _inst: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._inst is None:
            cls._inst = super().__new__(cls)
        return cls._inst

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()
_warned: set[tuple[str, str]] = set()


def warn_deprecated(old: str, new: str) -> None:
    """One DeprecationWarning per process per (old, new) pair."""
    if (old, new) in _warned:
        return
    _warned.add((old, new))
    warnings.warn(
        f"`{old}` is deprecated; use `{new}` instead. The old name continues to work but will be removed in a "
        "future release.",
        DeprecationWarning,
        stacklevel=4,
    )


def resolve_renamed(old_name: str, old_val: Any, new_name: str, new_val: Any, default: Any) -> Any:
    if old_val is not MISSING and new_val is not MISSING:
        raise TypeError(f"kwarg {old_name} deprecated, use {new_name}; do not pass both")
    if old_val is not MISSING:
        warn_deprecated(old_name, new_name)
        return old_val
    if new_val is not MISSING:
        return new_val
    return default


_BUFFER_CHOICES = ("never", "meaningful", "always")


@dataclass(frozen=True, init=False)
class VisualizationOptions:
    """Graph rendering options (spec §1.3). Keyword-only; remembers which fields were given."""

    mode: str = "none"
    max_module_depth: int = 1000
    output_path: str = "graph.gv"
    save_only: bool = False
    file_format: str = "pdf"
    show_buffers: Any = "meaningful"
    direction: str = "bottomup"
    graph_overrides: dict | None = None
    node_mode: str = "default"
    node_spec_fn: Any = None
    collapsed_node_spec_fn: Any = None
    collapse_fn: Any = None
    skip_fn: Any = None
    edge_overrides: dict | None = None
    gradient_edge_overrides: dict | None = None
    module_overrides: dict | None = None
    layout_engine: str = "auto"
    renderer: str = "graphviz"
    theme: str = "torchlens"
    _explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __init__(self, **kwargs: Any) -> None:
        explicit = set(kwargs.pop("_explicit", ()) or ())
        names = [f.name for f in fields(self) if not f.name.startswith("_")]
        unknown = set(kwargs) - set(names)
        if unknown:
            raise TypeError(f"Unknown visualization options: {sorted(unknown)}")
        for f in fields(self):
            if f.name.startswith("_"):
                continue
            if f.name in kwargs:
                explicit.add(f.name)
            object.__setattr__(self, f.name, kwargs.get(f.name, f.default))
        object.__setattr__(self, "_explicit", frozenset(explicit))
        self.__post_init__()

    def __post_init__(self) -> None:
        sb = self.show_buffers
        if isinstance(sb, bool):
            object.__setattr__(self, "show_buffers", "always" if sb else "never")
        elif sb not in _BUFFER_CHOICES:
            raise ValueError("Buffer visibility must be 'never', 'meaningful', 'always', or a bool.")
        if self.node_mode not in ("default", "profiling", "vision", "attention"):
            raise ValueError(f"Unknown node_mode {self.node_mode!r}.")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def is_field_explicit(self, name: str) -> bool:
        return name in self._explicit

    @classmethod
    def from_values(cls, values: dict[str, Any], specified_fields: Any = None) -> VisualizationOptions:
        return cls(**values, _explicit=frozenset(specified_fields or values))


VIS_ALIASES = {
    "vis_mode": "mode",
    "vis_nesting_depth": "max_module_depth",
    "vis_outpath": "output_path",
    "vis_save_only": "save_only",
    "vis_fileformat": "file_format",
    "vis_buffer_layers": "show_buffers",
    "vis_direction": "direction",
    "vis_graph_overrides": "graph_overrides",
    "vis_node_mode": "node_mode",
    "vis_edge_overrides": "edge_overrides",
    "vis_gradient_edge_overrides": "gradient_edge_overrides",
    "vis_module_overrides": "module_overrides",
    "vis_node_placement": "layout_engine",
    "vis_renderer": "renderer",
    "vis_theme": "theme",
}


def merge_visualization(visualization: VisualizationOptions | None, flat: dict[str, Any]) -> VisualizationOptions:
    """Fold deprecated flat `vis_*` kwargs into a `VisualizationOptions`."""
    base = visualization or VisualizationOptions()
    values = base.as_dict()
    explicit = set(base._explicit)
    for old, val in flat.items():
        if val is MISSING:
            continue
        new = VIS_ALIASES[old]
        if visualization is not None and visualization.is_field_explicit(new):
            raise TypeError(f"Do not pass both `{old}` and `visualization.{new}`.")
        warn_deprecated(old, f"visualization.{new}")
        values[new] = val
        explicit.add(new)
    return VisualizationOptions.from_values(values, explicit)


@dataclass(frozen=True, init=False)
class StreamingOptions:
    """Where saved activations go during capture (spec §1.3, §8.5); remembers which fields were given.

    `bundle_path`: stream every saved activation into a bundle directory. `retain_in_memory`:
    also keep them in the log (False: the log holds references into the bundle, or, with a
    callback, nothing). `activation_callback`: `f(label, tensor)` for every saved raw activation,
    as it is captured (exclusive with `bundle_path`; see docs/bundle-format.md).
    """

    bundle_path: Any = None
    retain_in_memory: bool = True
    activation_callback: Any = None
    _explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __init__(
        self, bundle_path: Any = MISSING, retain_in_memory: Any = MISSING, activation_callback: Any = MISSING
    ) -> None:
        given = {
            "bundle_path": bundle_path,
            "retain_in_memory": retain_in_memory,
            "activation_callback": activation_callback,
        }
        for f in fields(self):
            if f.name in given:
                v = given[f.name]
                object.__setattr__(self, f.name, f.default if v is MISSING else v)
        object.__setattr__(self, "_explicit", frozenset(k for k, v in given.items() if v is not MISSING))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}

    def is_field_explicit(self, name: str) -> bool:
        return name in self._explicit

    @classmethod
    def from_values(cls, values: dict[str, Any], specified_fields: Any = None) -> StreamingOptions:
        """An instance from resolved field values; `specified_fields` (default: the keys given) count as explicit."""
        inst = cls(**values)
        object.__setattr__(inst, "_explicit", frozenset(values if specified_fields is None else specified_fields))
        return inst


# `VisualizationOptions` field -> the `ModelLog.render_graph` keyword that carries it.
RENDER_KWARGS = {
    "mode": "vis_mode",
    "max_module_depth": "vis_nesting_depth",
    "output_path": "vis_outpath",
    "save_only": "vis_save_only",
    "file_format": "vis_fileformat",
    "show_buffers": "show_buffer_layers",
    "direction": "direction",
    "graph_overrides": "vis_graph_overrides",
    "node_mode": "node_mode",
    "node_spec_fn": "node_spec_fn",
    "collapsed_node_spec_fn": "collapsed_node_spec_fn",
    "collapse_fn": "collapse_fn",
    "skip_fn": "skip_fn",
    "edge_overrides": "vis_edge_overrides",
    "gradient_edge_overrides": "vis_gradient_edge_overrides",
    "module_overrides": "vis_module_overrides",
    "layout_engine": "vis_node_placement",
    "renderer": "vis_renderer",
    "theme": "vis_theme",
}


def visualization_to_render_kwargs(vis: VisualizationOptions, only_explicit: bool = False) -> dict[str, Any]:
    """`render_graph` keyword arguments from an options object (only its explicitly set fields if asked)."""
    return {kw: getattr(vis, f) for f, kw in RENDER_KWARGS.items() if not only_explicit or vis.is_field_explicit(f)}
