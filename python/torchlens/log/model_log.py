"""`ModelLog`: the user-facing result of `log_forward_pass` (construction, lookup, printing).

A facade over the core's columns (see `columns.RecordView`); modules, parameters, relations and
exports live in the modules named for them, and the methods here that the 2.15 API puts on the
log but that belong to a higher layer (bundles, graphs, summary, validation) import it locally,
marked `# facade`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .._format import compact_count, human_readable_size
from . import export
from .accessors import BufferAccessor, LayerAccessor, ModuleAccessor, ParamAccessor
from .columns import RecordView
from .layer_log import LayerLog
from .layer_pass_log import BufferLog, LayerPassLog
from .modules import hierarchy_lines, module_logs
from .params import ParamLog, layers_with_params, used_params
from .relations import equivalents

if TYPE_CHECKING:
    from .._data import CaptureData

_SEED_LABEL = re.compile(r"^(input|output|buffer)_(\d+)_(\d+)$")


class ModelLog(RecordView):
    """Log of one forward pass: every tensor computed, its metadata and (optionally) its value."""

    def __init__(
        self, model_name: str, data: CaptureData, fin: Any, saved: dict[int, torch.Tensor], info: dict
    ) -> None:
        super().__init__(data, fin, saved)
        self.model_name = model_name
        self._loaded_from_bundle = False
        self._bundle_path: str | None = None
        self._entries: dict[int, LayerPassLog] = {}
        self._layer_logs: dict[str, LayerLog] | None = None
        self.random_seed_used: int = info["random_seed"]
        self.time_forward_pass: float = info["time_forward"]
        self.time_total: float = info["time_total"]
        self.time_postprocessing: float = info["time_core"]
        self.layers_to_save = info["layers_to_save"]
        self.detect_loops: bool = info["detect_loops"]
        self._pass_finished = True
        # Capture options (spec §2.5); the api sets the ones a call chose.
        self.activation_postfunc: Any = None
        self.activation_postfunc_repr: str | None = None
        self.save_raw_activation = True
        self.save_function_args = False
        self.save_rng_states = False
        self.save_source_context = False
        self.num_context_lines = 7
        self.mark_input_output_distances = False
        self.detach_saved_tensors = False
        self.output_device = "same"
        self.train_mode = False
        self.save_gradients = False
        self.has_gradients = False
        self.logging_mode = "exhaustive"
        self.io_format_version = 1
        self.keep_unsaved_layers = True
        self._rng_before_forward: Any = None
        self._source_model_ref: Any = None

    def _entry(self, pos: int) -> LayerPassLog:
        e = self._entries.get(pos)
        if e is None:
            e = self._entries[pos] = BufferLog(self, pos) if self._is_buffer(pos) else LayerPassLog(self, pos)
        return e

    def __iter__(self) -> Iterator[LayerPassLog]:
        for pos in range(len(self._node_ids)):
            yield self._entry(pos)

    # ------------------------------------------------------------------ bundles
    def save(self, path: Any, **kwargs: Any) -> None:
        """Write this log as a portable bundle (see `torchlens.save`)."""
        from ..io import save  # facade

        save(self, path, **kwargs)

    @staticmethod
    def load(path: Any, **kwargs: Any) -> ModelLog:
        """Load a portable bundle (see `torchlens.load`)."""
        from ..io import load  # facade

        return load(path, **kwargs)

    # ------------------------------------------------------------------ layers
    @property
    def layer_list(self) -> list[LayerPassLog]:
        return list(self)

    @property
    def layer_labels(self) -> list[str]:
        return list(self._col("labels"))

    @property
    def layer_labels_no_pass(self) -> list[str]:
        return list(self._col("labels_no_pass"))

    @property
    def layer_labels_w_pass(self) -> list[str]:
        return list(self._col("labels_w_pass"))

    @property
    def layer_logs(self) -> dict[str, LayerLog]:
        if self._layer_logs is None:
            groups: dict[str, list[int]] = {}
            for pos, lab in enumerate(self._col("labels_no_pass")):
                groups.setdefault(lab, []).append(pos)
            self._layer_logs = {lab: LayerLog(self, ps) for lab, ps in groups.items()}
        return self._layer_logs

    @property
    def layer_num_passes(self) -> dict[str, int]:
        return {k: v.num_passes for k, v in self.layer_logs.items()}

    @property
    def num_operations(self) -> int:
        return self._fin.num_operations()

    @property
    def num_tensors_total(self) -> int:
        return len(self)

    @property
    def input_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._is_input(p)]

    @property
    def output_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._is_output(p)]

    @property
    def buffer_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._is_buffer(p)]

    @property
    def orphan_layers(self) -> list[str]:
        return [f"{self._layer_type_of_record(n)}_{n + 1}_raw" for n in self._fin.removed()]

    @property
    def layers_with_saved_activations(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._has_saved(self._node_ids[p])]

    @property
    def num_tensors_saved(self) -> int:
        return len(self.layers_with_saved_activations)

    @property
    def total_activation_memory(self) -> int:
        return sum(self._memory(p) for p in range(len(self)))

    @property
    def saved_activation_memory(self) -> int:
        return sum(self._memory(p) for p in range(len(self)) if self._has_saved(self._node_ids[p]))

    @property
    def is_recurrent(self) -> bool:
        return self.max_recurrent_loops > 1

    @property
    def max_recurrent_loops(self) -> int:
        return max(self._col("num_passes"), default=1)

    @property
    def is_branching(self) -> bool:
        return any(len(c) > 1 for c in self._col("children"))

    @property
    def has_conditional_branching(self) -> bool:
        return False

    @property
    def total_params(self) -> int:
        return sum(p.numel for p in used_params(self))

    @property
    def total_params_memory(self) -> int:
        return sum(p.nbytes for p in used_params(self))

    @property
    def total_param_layers(self) -> int:
        groups = self._col("layer_groups")
        return len({groups[p] for p in range(len(self)) if self._param_ids(p)})

    @property
    def module_addresses(self) -> list[str]:
        return [m.address for m in self._data.modules]

    @property
    def modules(self) -> ModuleAccessor:
        return self._cached("modules", lambda: ModuleAccessor(self, module_logs(self)))

    @property
    def root_module(self) -> Any:
        return self.modules["self"]

    @property
    def layers(self) -> LayerAccessor:
        return LayerAccessor(self)

    @property
    def param_logs(self) -> ParamAccessor:
        return self._cached("params", lambda: ParamAccessor([ParamLog(self, i) for i in range(len(self._data.params))]))

    @property
    def params(self) -> ParamAccessor:
        return self.param_logs

    @property
    def total_param_tensors(self) -> int:
        return len(self._data.params)

    @property
    def total_params_trainable(self) -> int:
        return sum(p.numel for p in used_params(self) if p.requires_grad)

    @property
    def total_params_frozen(self) -> int:
        return sum(p.numel for p in used_params(self) if not p.requires_grad)

    @property
    def total_params_memory_str(self) -> str:
        return human_readable_size(self.total_params_memory)

    @property
    def layers_with_params(self) -> dict[str, list[str]]:
        return layers_with_params(self)

    @property
    def buffers(self) -> BufferAccessor:
        return BufferAccessor([self._entry(p) for p in range(len(self)) if self._is_buffer(p)])  # type: ignore[misc]

    @property
    def buffer_num_passes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.buffers:
            out[b.buffer_address] = out.get(b.buffer_address, 0) + 1
        return out

    # ------------------------------------------------------------------ other fields
    @property
    def layer_dict_main_keys(self) -> dict[str, Any]:
        return {e.layer_label: e for e in self}

    @property
    def layer_dict_all_keys(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for e in self:
            for k in e.lookup_keys:
                out.setdefault(k, e)
        return out

    @property
    def internally_initialized_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_initialized]

    @property
    def internally_terminated_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_terminated]

    @property
    def internally_terminated_bool_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_terminated and e.tensor_dtype == torch.bool]

    @property
    def unlogged_layers(self) -> list[str]:
        return []

    @property
    def layers_with_saved_gradients(self) -> list[str]:
        return []

    @property
    def equivalent_operations(self) -> dict[str, set[str]]:
        return {k: set(v) for k, v in equivalents(self).items()}

    @property
    def time_logging(self) -> float:
        return self.time_total - self.time_forward_pass

    @property
    def time_function_calls(self) -> float:
        return float(sum(self._data.func_times or ()))

    @property
    def total_activation_memory_str(self) -> str:
        return human_readable_size(self.total_activation_memory)

    @property
    def saved_activation_memory_str(self) -> str:
        return human_readable_size(self.saved_activation_memory)

    @property
    def total_flops_forward(self) -> int:
        return sum(f for e in self if (f := e.flops_forward) is not None)

    @property
    def total_flops_backward(self) -> int:
        return sum(f for e in self if (f := e.flops_backward) is not None)

    @property
    def total_flops(self) -> int:
        return self.total_flops_forward + self.total_flops_backward

    @property
    def total_macs_forward(self) -> int:
        return self.total_flops_forward // 2

    @property
    def total_macs_backward(self) -> int:
        return self.total_flops_backward // 2

    @property
    def total_macs(self) -> int:
        return self.total_flops // 2

    def print_all_fields(self) -> None:
        for name in sorted(dir(self)):
            if name.startswith("_"):
                continue
            try:
                v = getattr(self, name)
            except Exception as e:  # pragma: no cover - diagnostic printout
                v = f"<error: {e}>"
            if not callable(v):
                print(f"{name}: {v!r:.200}")

    # ------------------------------------------------------------------ exports
    def to_pandas(self) -> Any:
        """One row per layer pass, columns as in spec §13 (dtypes and shapes as strings)."""
        return export.model_frame(self)

    def to_csv(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as CSV (no index)."""
        export.to_csv(self.to_pandas(), path, **kw)

    def to_parquet(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as parquet (requires pyarrow)."""
        export.to_parquet(self.to_pandas(), path, **kw)

    def to_json(self, path: Any, *, orient: str = "records", **kw: Any) -> None:
        """Write `to_pandas()` as JSON records."""
        export.to_json(self.to_pandas(), path, orient=orient, **kw)

    # ------------------------------------------------------------------ summary / validation
    def summary(
        self,
        level: str = "overview",
        *,
        fields: list[str] | None = None,
        mode: str = "auto",
        show_ops: bool = False,
        preset: str | None = None,
        columns: list[str] | None = None,
        include_ops: bool | None = None,
        max_rows: int = 200,
        print_to: Any = None,
    ) -> str:
        """ASCII table summary of the log (spec §2.7); returns the text (and prints it if `print_to`)."""
        from ..summary import summary  # facade

        return summary(
            self, preset or level, fields or columns, mode, show_ops or bool(include_ops), max_rows, print_to
        )

    def validate_forward_pass(
        self, ground_truth_output_tensors: list[torch.Tensor], verbose: bool = False, validate_metadata: bool = True
    ) -> bool:
        """Replay every op from its parents' saved activations and compare (spec §11.2)."""
        from ..validate import validate_log  # facade

        return validate_log(self, ground_truth_output_tensors, verbose, validate_metadata)

    def validate_saved_activations(self, *args: Any, **kwargs: Any) -> bool:
        """Deprecated alias of `validate_forward_pass`."""
        from .._options import warn_deprecated

        warn_deprecated("validate_saved_activations", "validate_forward_pass")
        return self.validate_forward_pass(*args, **kwargs)

    def check_metadata_invariants(self) -> bool:
        """Check the log's internal consistency (spec §11.3); raises MetadataInvariantError."""
        from ..validate import check_metadata_invariants  # facade

        return check_metadata_invariants(self)

    def cleanup(self) -> None:
        """Drop saved tensors and cached tables."""
        self._saved.clear()
        self._cols.clear()
        self._transformed = {}
        self._data.func_args = {}

    # ------------------------------------------------------------------ rendering
    def render_graph(
        self,
        vis_mode: str = "unrolled",
        vis_nesting_depth: int = 1000,
        vis_outpath: str = "modelgraph",
        vis_graph_overrides: dict[str, Any] | None = None,
        vis_save_only: bool = False,
        vis_fileformat: str = "pdf",
        show_buffer_layers: Any = "meaningful",
        direction: str = "bottomup",
        module: Any = None,
    ) -> str:
        """Render the computational graph with graphviz and return its DOT source.

        Args:
            vis_mode: `"unrolled"` (one node per pass) or `"rolled"` (one node per layer).
            vis_nesting_depth: Collapse modules nested deeper than this into one box (0: never).
            vis_outpath: Output path without extension (a trailing image extension is stripped).
            vis_graph_overrides: Extra graphviz graph attributes (values may be `f(model_log)`).
            vis_save_only: Do not open the rendered file in a viewer.
            vis_fileformat: Any format `dot -T` accepts (`pdf`, `png`, `svg`, ...).
            show_buffer_layers: `"never"`, `"meaningful"` (default) or `"always"`.
            direction: `"bottomup"`, `"topdown"` or `"leftright"`.
            module: Focus on one module: a ModuleLog, an address, or `"addr:k"` for one pass.

        Returns:
            The DOT source.
        """
        from ..viz import build_dot, render  # facade

        src = build_dot(self, vis_mode, vis_nesting_depth, direction, show_buffer_layers, vis_graph_overrides, module)
        render(src, vis_outpath, vis_fileformat, vis_save_only)
        return src

    def to_dot(
        self, vis_mode: str = "unrolled", vis_nesting_depth: int = 1000, direction: str = "bottomup", module: Any = None
    ) -> str:
        """DOT source of the graph without rendering it (`module` focuses on one module, as in `render_graph`)."""
        from ..viz import build_dot  # facade

        return build_dot(self, vis_mode, vis_nesting_depth, direction, module=module)

    # ------------------------------------------------------------------ lookup
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice):
            return self.layer_list[key]
        n = len(self)
        if isinstance(key, int) and not isinstance(key, bool):
            if -n <= key < n:
                return self._entry(key % n)
            raise ValueError(
                f"You specified the layer with index {key}, but there are only {n} layers; please specify an "
                f"index in the range -{n} - {n - 1}."
            )
        if not isinstance(key, str):
            raise ValueError(f"Layer keys must be str, int or slice, not {type(key).__name__}.")
        pos = self._fin.lookup(key)
        if pos is not None:
            return self._entry(pos)
        logs = self.layer_logs
        if key in logs:
            return logs[key]
        m = _SEED_LABEL.match(key)
        if m is not None:
            pos = self._fin.lookup(f"{m.group(1)}_{m.group(2)}")
            if pos is not None and self._col("layer_total_nums")[pos] == int(m.group(3)):
                return self._entry(pos)
        mod = self._module_lookup(key)
        if mod is not None:
            return mod
        pos = self._fin.lookup_ci(key)
        if pos is not None:
            return self._entry(pos)
        lower = {k.lower(): k for k in logs}
        if key.lower() in lower:
            return logs[lower[key.lower()]]
        matches = self._fin.find_substring_ci(key)
        # Unlike TorchLens 2.15, several keys of the same entry are not ambiguous.
        if len({p for _, p in matches}) == 1:
            return self._entry(matches[0][1])
        if len(matches) > 1:
            shown = ", ".join(k for k, _ in matches[:10])
            more = f" (and {len(matches) - 10} more)" if len(matches) > 10 else ""
            raise ValueError(
                f"Ambiguous lookup: '{key}' matches {len(matches)} layers: {shown}{more}. "
                "Please use a more specific key."
            )
        raise ValueError(self._help_text(key))

    def _module_lookup(self, key: str) -> Any:
        passes = self._module_num_passes()
        addr, _, k = key.partition(":")
        if addr in passes:
            if k:
                if not k.isdigit() or not 1 <= int(k) <= passes[addr]:
                    raise ValueError(f"Module {addr} has {passes[addr]} passes; pass {k} does not exist.")
                return self.modules[key]
            return self.modules[addr]
        return None

    def _help_text(self, key: str) -> str:
        labels = self._col("labels")
        example = labels[min(1, len(labels) - 1)] if labels else "conv2d_1_1"
        base, _, p = key.rpartition(":")
        if p.isdigit() and base in self.layer_logs:
            return f"Layer {base} has only {self.layer_logs[base].num_passes} passes; pass {p} does not exist."
        return (
            f"'{key}' not found in the ModelLog. Index a layer by (1) its label, e.g. '{example}' (the pass "
            f"'{example}:1' and the short form without the overall number also work), (2) the address of a "
            "module whose output it is, e.g. 'features.3' or 'features.3:1', (3) its ordinal position "
            "(negative counts from the end), or (4) a substring that matches exactly one layer."
        )

    def __contains__(self, key: Any) -> bool:
        try:
            self[key]
        except (ValueError, KeyError):
            return False
        return True

    # ------------------------------------------------------------------ printing
    def __str__(self) -> str:
        saved = set(self._saved) | set(self._lazy)
        all_saved = all(n in saved for n in self._node_ids)
        none_saved = not any(n in saved for n in self._node_ids)
        s = [f"Log of {self.model_name} forward pass:"]
        s.append(f"\tRandom seed: {self.random_seed_used}")
        logging = self.time_total - self.time_forward_pass
        s.append(f"\tTime elapsed: {round(self.time_total, 3)}s ({round(logging, 3)}s spent logging)")
        s.append("\tStructure:")
        s.append(
            f"\t\t- recurrent (at most {self.max_recurrent_loops} loops)"
            if self.is_recurrent
            else "\t\t- purely feedforward, no recurrence"
        )
        s.append("\t\t- with branching" if self.is_branching else "\t\t- no branching")
        s.append("\t\t- no conditional (if-then) branching")
        if self.buffer_layers:
            s.append(f"\t\t- contains {len(self.buffer_layers)} buffer layers")
        s.append(f"\t\t- {len(self._module_num_passes())} total modules")
        s.append("\tTensor info:")
        s.append(
            f"\t\t- {len(self)} total tensors ({human_readable_size(self.total_activation_memory)}) "
            "computed in forward pass."
        )
        s.append(
            f"\t\t- {self.num_tensors_saved} tensors ({human_readable_size(self.saved_activation_memory)}) "
            "with saved activations."
        )
        s.append(
            f"\tParameters: {self.total_param_layers} parameter operations ({self.total_params} params total; "
            f"{human_readable_size(self.total_params_memory)})"
        )
        s.append("\tModule Hierarchy:" + "".join("\n" + ln for ln in hierarchy_lines(self)))
        if all_saved:
            head = "\tLayers (all have saved activations):"
        elif none_saved:
            head = "\tLayers (no layer activations are saved):"
        else:
            head = "\tLayers (* means layer has saved activations):"
        rows = [head]
        labels = self._col("labels")
        pnums = self._col("pass_nums")
        npass = self._col("num_passes")
        for pos, lab in enumerate(labels):
            star = "* " if (not all_saved and self._node_ids[pos] in saved) else "  "
            pstr = f" ({pnums[pos]}/{npass[pos]} passes)" if npass[pos] > 1 else ""
            rows.append(f"\t\t{star}({pos}) {lab} {pstr}")
        return "\n".join(s) + "\n" + "\n".join(rows)

    def __repr__(self) -> str:
        nparams = compact_count(self.total_params)
        return (
            f"<ModelLog {self.model_name}>\nlayers={len(self)} params={nparams} ops={self.num_operations} "
            f"saved={human_readable_size(self.saved_activation_memory)} forward={self.time_forward_pass:.3f}s"
        )
