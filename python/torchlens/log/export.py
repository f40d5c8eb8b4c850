"""Tabular exports shared by every log surface (spec §13): pandas, CSV, parquet, JSON.

Cells are made portable before they reach pandas: dtypes become strings (`"torch.float32"`),
shapes and other tuples become lists rendered as strings in files, so every file format
round-trips to the same DataFrame that `to_pandas()` returns (after `read_*`).
"""

from __future__ import annotations

from typing import Any

import torch

# Field orders and column lists of every log surface, in one place so printing, exports and the
# spec's tables cannot drift apart.

LAYER_PASS_LOG_FIELD_ORDER = """layer_label tensor_label_raw layer_label_raw operation_num creation_order source_model_log
_pass_finished layer_label_short layer_label_w_pass layer_label_w_pass_short layer_label_no_pass
layer_label_no_pass_short layer_type layer_type_num layer_total_num pass_num num_passes lookup_keys activation
has_saved_activations output_device activation_postfunc extra_data detach_saved_tensor args_captured
captured_args captured_kwargs tensor_shape transformed_activation_shape tensor_dtype transformed_activation_dtype
tensor_memory transformed_activation_memory transformed_activation autograd_saved_bytes autograd_saved_tensor_count
has_child_tensor_variations children_tensor_versions gradient transformed_gradient save_gradients has_gradient
grad_shape transformed_gradient_shape grad_dtype transformed_gradient_dtype grad_memory transformed_gradient_memory
func_applied func_name func_call_stack func_time flops_forward flops_backward func_rng_states func_autocast_state
func_argnames num_args num_positional_args num_keyword_args func_positional_args_non_tensor func_kwargs_non_tensor
func_non_tensor_args func_is_inplace grad_fn_name grad_fn_id grad_fn_object corresponding_grad_fn
is_part_of_iterable_output iterable_output_index parent_params parent_param_barcodes parent_param_passes
parent_param_logs parent_param_shapes num_params_total num_params_trainable num_params_frozen params_memory
operation_equivalence_type equivalent_operations recurrent_group parent_layers parent_layer_arg_locs
root_ancestors child_layers has_children is_input_layer has_input_ancestor input_ancestors
min_distance_from_input max_distance_from_input is_output_layer feeds_output is_final_output is_output_ancestor
output_descendants io_role min_distance_from_output max_distance_from_output is_buffer_layer buffer_address
buffer_pass buffer_parent is_internally_initialized has_internally_initialized_ancestor
internally_initialized_parents internally_initialized_ancestors is_internally_terminated is_terminal_bool_layer
bool_is_branch bool_context_kind bool_wrapper_kind bool_conditional_id is_scalar_bool scalar_bool_value
in_cond_branch conditional_branch_stack conditional_branch_depth cond_branch_start_children
cond_branch_then_children cond_branch_elif_children cond_branch_else_children cond_branch_children_by_cond
containing_module containing_modules modules_entered module_passes_entered modules_entered_argnames
modules_exited module_passes_exited is_submodule_output is_leaf_module_output leaf_module_pass
module_entry_exit_threads_inputs module_entry_exit_thread_output func_config""".split()

MODEL_EXPORT_COLUMNS = """layer_label layer_label_w_pass layer_label_no_pass layer_label_short layer_label_w_pass_short
layer_label_no_pass_short layer_type layer_type_num layer_total_num num_passes pass_num operation_num tensor_shape
tensor_dtype tensor_memory tensor_memory_str func_name func_config func_time func_is_inplace grad_fn_name
is_input_layer is_output_layer is_buffer_layer is_part_of_iterable_output iterable_output_index parent_layers
has_parents root_ancestors child_layers has_children output_descendants sibling_layers has_siblings
co_parent_layers has_co_parents is_internally_initialized min_distance_from_input max_distance_from_input
min_distance_from_output max_distance_from_output uses_params num_params_total parent_param_shapes params_memory
params_memory_str modules_entered modules_exited is_submodule_input is_submodule_output containing_module
containing_modules conditional_branch_depth bool_is_branch bool_context_kind bool_wrapper_kind bool_conditional_id
conditional_branch_stack cond_branch_then_children cond_branch_elif_children cond_branch_else_children""".split()

BUFFER_LOG_FIELD_ORDER = (
    "buffer_address name module_address buffer_pass layer_label pass_num tensor_shape tensor_dtype tensor_memory "
    "tensor_memory_str has_saved_activations has_gradient grad_shape grad_dtype grad_memory grad_memory_str "
    "buffer_parent containing_module containing_modules"
).split()

MODULE_PASS_LOG_FIELD_ORDER = (
    "module_address all_module_addresses is_shared_module pass_num pass_label layers num_layers input_layers "
    "output_layers forward_args_summary forward_kwargs_summary call_parent call_children"
).split()

LAYER_ACCESSOR_COLUMNS = [
    "layer_label",
    "layer_type",
    "func_name",
    "tensor_shape",
    "tensor_dtype",
    "tensor_memory_str",
    "num_passes",
    "num_params_total",
    "containing_module",
    "is_input_layer",
    "is_output_layer",
    "is_buffer_layer",
]

PARAM_LOG_FIELDS = (
    "address name shape dtype num_params memory memory_str trainable is_quantized has_optimizer "
    "module_address module_type barcode num_passes used_by_layers linked_params"
).split()

MODULE_ACCESSOR_COLUMNS = [
    "address",
    "module_class_name",
    "nesting_depth",
    "address_depth",
    "num_params",
    "num_layers",
    "num_passes",
]

MODULE_LOG_COLUMNS = ["layer_label", "layer_type", "tensor_shape", "tensor_dtype", "pass_num", "func_name"]


def cell(v: Any) -> Any:
    """A value as it is stored in an export cell."""
    if isinstance(v, torch.dtype):
        return str(v)
    if isinstance(v, torch.Size):
        return str(tuple(v))
    if isinstance(v, tuple):
        return str(tuple(cell(x) if isinstance(x, torch.dtype) else x for x in v))
    if isinstance(v, list | set | frozenset):
        items = sorted(v, key=str) if isinstance(v, set | frozenset) else v
        return str([cell(x) if not isinstance(x, str | int | float | bool) else x for x in items])
    if isinstance(v, dict):
        return str({k: cell(x) if not isinstance(x, str | int | float | bool) else x for k, x in v.items()})
    if isinstance(v, torch.Tensor):
        return str(tuple(v.shape))
    return v


def frame(rows: list[dict[str, Any]], columns: list[str]) -> Any:
    import pandas as pd

    data = {c: [cell(r.get(c)) for r in rows] for c in columns}
    df = pd.DataFrame(data, columns=columns)
    for c in columns:
        col = df[c]
        if col.dtype == object:
            vals = [x for x in col if x is not None]
            if vals and all(isinstance(x, bool) for x in vals) and len(vals) == len(col):
                df[c] = col.astype(bool)
            elif vals and all(isinstance(x, int) and not isinstance(x, bool) for x in vals):
                df[c] = col.astype("Int64")
            elif vals and all(isinstance(x, float) for x in vals):
                df[c] = col.astype("float64")
            elif vals and all(isinstance(x, str) for x in vals):
                df[c] = col.astype(object)
    return df


def to_csv(df: Any, path: Any, **kw: Any) -> None:
    kw.setdefault("index", False)
    df.to_csv(path, **kw)


def to_parquet(df: Any, path: Any, **kw: Any) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:
        raise ImportError("to_parquet requires pyarrow. Install with: pip install torchlens[io]") from e
    kw.setdefault("index", False)
    df.to_parquet(path, **kw)


def to_json(df: Any, path: Any, orient: str = "records", **kw: Any) -> None:
    df.to_json(path, orient=orient, **kw)


class ExportMixin:
    """`to_pandas` is provided by the class; this adds the file writers on top of it."""

    def to_pandas(self) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_csv(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as CSV (no index column)."""
        to_csv(self.to_pandas(), path, **kw)

    def to_parquet(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as parquet (requires pyarrow)."""
        to_parquet(self.to_pandas(), path, **kw)

    def to_json(self, path: Any, *, orient: str = "records", **kw: Any) -> None:
        """Write `to_pandas()` as JSON (`orient="records"` by default)."""
        to_json(self.to_pandas(), path, orient=orient, **kw)


def model_frame(log: Any) -> Any:
    """`ModelLog.to_pandas()`: one row per layer pass, the columns of MODEL_EXPORT_COLUMNS."""
    if not getattr(log, "_pass_finished", True):
        raise RuntimeError("to_pandas() is only available after the forward pass has finished.")
    rows = []
    for e in log:
        r = e.row()
        r["conditional_branch_stack"] = ",".join(f"cond_{c}:{k}" for c, k in r["conditional_branch_stack"])
        rows.append(r)
    df = frame(rows, MODEL_EXPORT_COLUMNS)
    df["bool_conditional_id"] = df["bool_conditional_id"].astype("Int64")
    return df
