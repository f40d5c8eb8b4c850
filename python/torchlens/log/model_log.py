"""`ModelLog`: the user-facing result of `log_forward_pass` (construction, lookup, printing).

A facade over the core's columns (see `columns.RecordView`); modules, parameters, relations and
exports live in the modules named for them, and the methods here that the 2.15 API puts on the
log but that belong to a higher layer (bundles, graphs, summary, validation) import it locally,
marked `# facade`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from .._format import human_readable_size
from . import export, func_call, gradients, lifecycle
from .accessors import BufferAccessor, LayerAccessor, ModuleAccessor, ParamAccessor
from .backward import BackwardMethods
from .columns import RecordView
from .conditionals import ConditionalMethods
from .facade import FacadeMethods
from .gradients import GradientStore
from .layer_log import LayerLog
from .layer_pass_log import BufferLog, LayerPassLog
from .lookup import get_item, help_text
from .modules import module_logs
from .params import ParamLog, layers_with_params, used_params
from .printing import model_log_repr, model_log_text
from .relations import equivalents

if TYPE_CHECKING:
    from .._data import CaptureData


class ModelLog(RecordView, FacadeMethods, BackwardMethods, ConditionalMethods):
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
        self._activation_callback: Any = None  # StreamingOptions.activation_callback of the capture
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
        self.gradients_to_save: Any = None
        self.gradient_postfunc: Any = None
        self.gradient_postfunc_repr: str | None = None
        self.save_raw_gradient = True
        self._grad_store: GradientStore | None = None  # tensor-hook gradients (log/gradients.py)
        self._lazy_grads: dict[int, Any] = {}  # gradients of a lazily loaded bundle, by node id
        self.logging_mode = "exhaustive"
        self.io_format_version = 1
        self.keep_unsaved_layers = True
        self._rng_before_forward: Any = None
        self._source_model_ref: Any = None
        if info.get("kept_nids") is not None:  # a keep_unsaved_layers=False log read back from a bundle
            pon = self._pos_of_nid()
            self._kept = [pon[n] for n in info["kept_nids"]]
            self.keep_unsaved_layers = False

    def _entry(self, pos: int) -> LayerPassLog:
        e = self._entries.get(pos)
        if e is None:
            e = self._entries[pos] = BufferLog(self, pos) if self._is_buffer(pos) else LayerPassLog(self, pos)
        return e

    def __iter__(self) -> Iterator[LayerPassLog]:
        for pos in self._positions():
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
        return self._shown("labels")

    @property
    def layer_labels_no_pass(self) -> list[str]:
        return self._shown("labels_no_pass")

    @property
    def layer_labels_w_pass(self) -> list[str]:
        return self._shown("labels_w_pass")

    def _shown(self, column: str) -> list[Any]:
        col = self._col(column)
        return list(col) if self._kept is None else [col[p] for p in self._kept]

    @property
    def layer_logs(self) -> dict[str, LayerLog]:
        if self._layer_logs is None:
            groups: dict[str, list[int]] = {}
            labels = self._col("labels_no_pass")
            for pos in self._positions():
                groups.setdefault(labels[pos], []).append(pos)
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
        return [labels[p] for p in self._positions() if self._is_input(p)]

    @property
    def output_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in self._positions() if self._is_output(p)]

    @property
    def buffer_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in self._positions() if self._is_buffer(p)]

    @property
    def orphan_layers(self) -> list[str]:
        return [self._raw_label_of_record(n) for n in self._fin.removed()]

    @property
    def layers_with_saved_activations(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in self._positions() if self._has_saved(self._node_ids[p])]

    @property
    def num_tensors_saved(self) -> int:
        return len(self.layers_with_saved_activations)

    @property
    def total_activation_memory(self) -> int:
        return sum(self._memory(p) for p in range(self._n_pos))

    @property
    def saved_activation_memory(self) -> int:
        return sum(self._memory(p) for p in self._positions() if self._has_saved(self._node_ids[p]))

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
    def total_params(self) -> int:
        return sum(p.numel for p in used_params(self))

    @property
    def total_params_memory(self) -> int:
        return sum(p.nbytes for p in used_params(self))

    @property
    def total_param_layers(self) -> int:
        groups = self._col("layer_groups")
        return len({groups[p] for p in range(self._n_pos) if self._param_ids(p)})

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
        return BufferAccessor([self._entry(p) for p in self._positions() if self._is_buffer(p)])  # type: ignore[misc]

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
        """Labels of the entries a keep_unsaved_layers=False log dropped (no saved activation)."""
        labels = self._col("labels")
        return [labels[p] for p in range(self._n_pos) if not self._visible(p)]

    @property
    def _all_layers_logged(self) -> bool:
        return len(self) == self._n_pos

    @property
    def _all_layers_saved(self) -> bool:
        return all(self._has_saved(self._node_ids[p]) for p in self._positions())

    @property
    def layers_with_saved_gradients(self) -> list[str]:
        return gradients.labels_with_gradients(self)

    @property
    def _gradient_layer_nums_to_save(self) -> list[int] | None:
        store = self._grad_store
        if store is None or store.selected is None:
            return None
        return sorted(n + 1 for n in store.selected)

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
        return func_call.total_flops(self)[0]

    @property
    def total_flops_backward(self) -> int:
        return func_call.total_flops(self)[1]

    @property
    def total_autograd_saved_bytes(self) -> int | None:
        return func_call.total_autograd_saved_bytes(self)

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
        from ..tables import summary  # facade

        return summary(
            self,
            level,
            fields=fields,
            mode=mode,
            show_ops=show_ops,
            preset=preset,
            columns=columns,
            include_ops=include_ops,
            max_rows=max_rows,
            print_to=print_to,
        )

    def validate_forward_pass(
        self,
        ground_truth_output_tensors: list[torch.Tensor],
        verbose: bool = False,
        validate_metadata: bool = True,
        *,
        progress: bool | None = None,
    ) -> bool:
        """Replay every op from its parents' saved activations and compare (spec §11.2).

        A failed check is logged as a warning on the ``torchlens`` logger. ``progress``: a bar
        over the layers; None (default) only on a terminal or in a notebook.
        """
        if not self._all_layers_logged:
            raise ValueError(
                "validate_forward_pass needs every layer; this log dropped the layers without saved "
                "activations (keep_unsaved_layers=False)."
            )
        from ..validate import validate_log  # facade

        return validate_log(self, ground_truth_output_tensors, verbose, validate_metadata, progress=progress)

    def validate_saved_activations(
        self, ground_truth_output_tensors: list[torch.Tensor], verbose: bool = False, validate_metadata: bool = True
    ) -> bool:
        """Deprecated alias of `validate_forward_pass`."""
        from .._options import warn_deprecated

        warn_deprecated("validate_saved_activations", "validate_forward_pass")
        return self.validate_forward_pass(ground_truth_output_tensors, verbose, validate_metadata)

    def check_metadata_invariants(self) -> bool:
        """Check the log's internal consistency (spec §11.3); raises MetadataInvariantError."""
        from ..validate import check_metadata_invariants  # facade

        # A keep_unsaved_layers=False log is checked as the whole graph it shows a part of.
        return check_metadata_invariants(self if self._kept is None else lifecycle.full_view(self))

    def _require_all_layers(self) -> None:
        if not self._all_layers_logged:
            raise ValueError(
                "Must have all layers logged in order to render the graph; either save all layers,"
                "set keep_unsaved_layers to True, or use show_model_graph."
            )

    # ------------------------------------------------------------------ lifecycle
    def release_param_refs(self) -> None:
        """Cache each ParamLog's gradient metadata, then drop every reference to the model's parameters.

        Saved activations that are still attached to autograd (`detach_saved_tensors=False`) keep
        their graph, and the graph its parameters: `cleanup()` drops those too.
        """
        lifecycle.release_param_refs(self)

    def cleanup(self) -> None:
        """Drop saved values and cached tables, release the parameters, empty the CUDA cache.

        Labels, modules and parameter metadata stay readable; activations read None.
        """
        lifecycle.cleanup(self)

    def __getstate__(self) -> dict[str, Any]:
        return lifecycle.log_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        lifecycle.restore_state(self, state)

    # ------------------------------------------------------------------ lookup
    def __getitem__(self, key: Any) -> Any:
        return get_item(self, key)

    def _help_text(self, key: str) -> str:
        return help_text(self, key)

    def __contains__(self, key: Any) -> bool:
        try:
            self[key]
        except (ValueError, KeyError):
            return False
        return True

    # ------------------------------------------------------------------ printing
    def __str__(self) -> str:
        return model_log_text(self)

    def __repr__(self) -> str:
        return model_log_repr(self)
