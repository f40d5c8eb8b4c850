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


@dataclass(frozen=True)
class StreamingOptions:
    """Where saved activations go during capture (spec §1.3, §8.5)."""

    bundle_path: str | None = None
    retain_in_memory: bool = True
    activation_callback: Any = None
