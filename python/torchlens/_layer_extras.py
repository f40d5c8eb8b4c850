"""The less common `LayerPassLog` fields (spec §3.1), kept apart from the core views in layer_log.py."""

from __future__ import annotations

import copy as _copy
from typing import Any

import torch

from ._format import human_readable_size


def _unref(obj: Any, saved: dict, depth: int = 0) -> Any:
    """Captured arguments as plain values: parent references replaced by their call-time copies."""
    from ._capture.session import GeneratorSnapshot, ParentRef

    if isinstance(obj, ParentRef):
        return obj.value if obj.value is not None else saved.get(obj.nid)
    if isinstance(obj, GeneratorSnapshot):
        return obj.make()
    if depth < 6:
        if type(obj) is tuple or type(obj) is list:
            return type(obj)(_unref(o, saved, depth + 1) for o in obj)
        if type(obj) is dict:
            return {k: _unref(v, saved, depth + 1) for k, v in obj.items()}
    return obj


def _size(t: Any) -> int | None:
    if isinstance(t, torch.Tensor):
        return t.numel() * t.element_size()
    return None


class LayerPassExtras:
    """Mixin for LayerPassLog: everything here reads the ModelLog's data lazily."""

    __slots__ = ()
    _log: Any
    _pos: int

    # identity ---------------------------------------------------------------
    @property
    def layer_label_raw(self) -> str:
        return self.tensor_label_raw  # type: ignore[attr-defined]

    @property
    def source_model_log(self) -> Any:
        return self._log

    @property
    def _pass_finished(self) -> bool:
        return True

    # saved tensor ------------------------------------------------------------
    @property
    def output_device(self) -> str:
        return getattr(self._log, "output_device", "same")

    @property
    def activation_postfunc(self) -> Any:
        return getattr(self._log, "activation_postfunc", None)

    @property
    def detach_saved_tensor(self) -> bool:
        return getattr(self._log, "detach_saved_tensors", False)

    @property
    def extra_data(self) -> dict:
        return self._log._extra_data_for(self._pos)

    @property
    def transformed_activation(self) -> Any:
        return self._log._transformed_for(self._pos)

    @property
    def transformed_activation_shape(self) -> tuple | None:
        t = self.transformed_activation
        return tuple(t.shape) if isinstance(t, torch.Tensor) else None

    @property
    def transformed_activation_dtype(self) -> Any:
        t = self.transformed_activation
        return t.dtype if isinstance(t, torch.Tensor) else None

    @property
    def transformed_activation_memory(self) -> int | None:
        return _size(self.transformed_activation)

    @property
    def autograd_saved_bytes(self) -> int | None:
        return None

    @property
    def autograd_saved_tensor_count(self) -> int | None:
        return None

    def _func_args(self) -> tuple | None:
        log = self._log
        if log._is_output(self._pos) or log._kind(self._pos) != 2:
            return None
        return log._data.func_args.get(log._node_id(self._pos))

    @property
    def args_captured(self) -> bool:
        return self._func_args() is not None

    @property
    def captured_args(self) -> Any:
        fa = self._func_args()
        return None if fa is None else _unref(fa[1], self._log._saved)

    @property
    def captured_kwargs(self) -> Any:
        fa = self._func_args()
        return None if fa is None else _unref(fa[2], self._log._saved)

    @property
    def children_tensor_versions(self) -> dict[str, Any]:
        return self._log._children_versions().get(self._pos, {})

    @property
    def has_child_tensor_variations(self) -> bool:
        return bool(self.children_tensor_versions)

    # gradients (not captured in this release) ----------------------------------
    gradient = None
    transformed_gradient = None
    grad_shape = None
    transformed_gradient_shape = None
    grad_dtype = None
    transformed_gradient_dtype = None
    grad_memory = None
    transformed_gradient_memory = None
    gradient_ref = None

    @property
    def save_gradients(self) -> bool:
        return False

    @property
    def has_gradient(self) -> bool:
        return False

    @property
    def grad_memory_str(self) -> str:
        return human_readable_size(0)

    # function -----------------------------------------------------------------
    @property
    def func_applied(self) -> Any:
        fa = self._func_args()
        return None if fa is None else fa[0]

    @property
    def func_call_stack(self) -> list:
        from ._objects import call_stack

        return call_stack(self._log, self._pos)

    @property
    def func_time(self) -> float | None:
        log = self._log
        if log._is_output(self._pos) or log._kind(self._pos) != 2:
            return 0.0
        ft = log._data.func_times
        nid = log._node_id(self._pos)
        return None if ft is None or nid >= len(ft) else ft[nid]

    @property
    def func_rng_states(self) -> Any:
        log = self._log
        if log._is_output(self._pos):
            return None
        st = log._data.func_rng.get(log._record_index(self._pos))
        if st is None:
            return None
        return {"cpu": st[0], "cuda": st[1]}

    @property
    def func_autocast_state(self) -> Any:
        return None

    def _toks(self) -> tuple:
        log = self._log
        if log._is_output(self._pos):
            return ()
        toks = log._data.toks
        nid = log._node_id(self._pos)
        return toks[nid] if nid < len(toks) else ()

    def _split_toks(self) -> tuple[list, dict]:
        toks = list(self._toks())
        kw: dict = {}
        if (
            toks
            and isinstance(toks[-1], tuple)
            and toks[-1]
            and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in toks[-1])
        ):
            kw = dict(toks.pop())
        return toks, kw

    @property
    def func_argnames(self) -> tuple[str, ...]:
        from ._funcconfig import _SIGS

        sig = _SIGS.get(self.layer_type)  # type: ignore[attr-defined]
        if sig is not None:
            return sig
        pos, kw = self._split_toks()
        return tuple(f"arg{i}" for i in range(len(pos))) + tuple(kw)

    @property
    def num_positional_args(self) -> int:
        return len(self._split_toks()[0])

    @property
    def num_keyword_args(self) -> int:
        return len(self._split_toks()[1])

    @property
    def num_args(self) -> int:
        pos, kw = self._split_toks()
        return len(pos) + len(kw)

    @property
    def func_positional_args_non_tensor(self) -> list:
        return [t for t in self._split_toks()[0] if t is not None and not isinstance(t, torch.Size)]

    @property
    def func_kwargs_non_tensor(self) -> dict:
        return {k: v for k, v in self._split_toks()[1].items() if not isinstance(v, torch.Size)}

    @property
    def func_non_tensor_args(self) -> list:
        return self.func_positional_args_non_tensor + list(self.func_kwargs_non_tensor.values())

    @property
    def func_is_inplace(self) -> bool:
        n = self.func_name  # type: ignore[attr-defined]
        return (n.endswith("_") and not n.endswith("__")) or n.startswith("__i") or n in ("__setitem__",)

    @property
    def func_config(self) -> dict[str, Any]:
        from ._funcconfig import func_config

        if self.is_input_layer or self.is_output_layer or self.is_buffer_layer:  # type: ignore[attr-defined]
            return {}
        return func_config(self.layer_type, self.func_name, self._toks(), self.parent_param_shapes)  # type: ignore[attr-defined]

    @property
    def flops_forward(self) -> int | None:
        from ._funcconfig import flops_forward

        return flops_forward(self.layer_type, self.tensor_shape, self.parent_param_shapes, {})  # type: ignore[attr-defined]

    @property
    def flops_backward(self) -> int | None:
        f = self.flops_forward
        return None if f is None else 2 * f

    @property
    def macs_forward(self) -> int | None:
        f = self.flops_forward
        return None if f is None else f // 2

    @property
    def macs_backward(self) -> int | None:
        f = self.flops_backward
        return None if f is None else f // 2

    grad_fn_id = None
    grad_fn_object = None
    corresponding_grad_fn = None

    # params -------------------------------------------------------------------
    @property
    def parent_params(self) -> list:
        return []

    @property
    def parent_param_logs(self) -> list:
        plogs = self._log.params
        return [plogs[a] for a in self.parent_param_addresses]  # type: ignore[attr-defined]

    @property
    def params(self) -> Any:
        from ._objects import ParamAccessor

        return ParamAccessor(self.parent_param_logs)

    @property
    def parent_param_barcodes(self) -> list[str]:
        return [p.barcode for p in self.parent_param_logs]

    @property
    def parent_param_passes(self) -> dict[str, int]:
        users = self._log._param_users()
        out = {}
        label = self.layer_label  # type: ignore[attr-defined]
        for p in self.parent_param_logs:
            u = users.get(p._index, [])
            out[p.barcode] = u.index(label) + 1 if label in u else 1
        return out

    @property
    def num_param_tensors(self) -> int:
        return len(self.parent_param_shapes)  # type: ignore[attr-defined]

    @property
    def num_params_trainable(self) -> int:
        return sum(p.num_params for p in self.parent_param_logs if p.trainable)

    @property
    def num_params_frozen(self) -> int:
        return sum(p.num_params for p in self.parent_param_logs if not p.trainable)

    @property
    def params_memory_str(self) -> str:
        return human_readable_size(self.params_memory)  # type: ignore[attr-defined]

    # equivalence --------------------------------------------------------------
    @property
    def equivalent_operations(self) -> set[str]:
        return set(self._log._equivalents().get(self.operation_equivalence_type, ()))  # type: ignore[attr-defined]

    @property
    def recurrent_group(self) -> list[str]:
        lay = self._log.layer_logs[self.layer_label_no_pass]  # type: ignore[attr-defined]
        return lay.pass_labels

    # graph --------------------------------------------------------------------
    @property
    def parent_layer_arg_locs(self) -> dict[str, dict]:
        return self._log._arg_locs(self._pos)

    @property
    def root_ancestors(self) -> list[str]:
        return self._log._root_ancestors(self._pos)

    @property
    def has_siblings(self) -> bool:
        return bool(self.sibling_layers)  # type: ignore[attr-defined]

    @property
    def has_co_parents(self) -> bool:
        return bool(self.co_parent_layers)  # type: ignore[attr-defined]

    @property
    def feeds_output(self) -> bool:
        log = self._log
        return any(log._is_output(c) for c in log._col("children")[self._pos])

    @property
    def min_distance_from_input(self) -> int | None:
        return self._log._distance(self._pos, "in", min)

    @property
    def max_distance_from_input(self) -> int | None:
        return self._log._distance(self._pos, "in", max)

    @property
    def min_distance_from_output(self) -> int | None:
        return self._log._distance(self._pos, "out", min)

    @property
    def max_distance_from_output(self) -> int | None:
        return self._log._distance(self._pos, "out", max)

    @property
    def buffer_pass(self) -> int | None:
        return 1 if self.is_buffer_layer else None  # type: ignore[attr-defined]

    @property
    def buffer_parent(self) -> str | None:
        return None

    @property
    def internally_initialized_ancestors(self) -> list[str]:
        log = self._log
        labels = log._col("labels")
        return [labels[p] for p in log._ancestor_set(self._pos) if log._entry(p).is_internally_initialized]

    @property
    def has_internally_initialized_ancestor(self) -> bool:
        return bool(self.internally_initialized_ancestors)

    @property
    def internally_initialized_parents(self) -> list[str]:
        log = self._log
        labels = log._col("labels")
        return [labels[p] for p in log._col("parents")[self._pos] if log._entry(p).is_internally_initialized]

    # conditionals (not attributed in this release) ------------------------------
    is_terminal_bool_layer = False
    bool_is_branch = False
    bool_context_kind = None
    bool_wrapper_kind = None
    bool_conditional_id = None
    in_cond_branch = False
    conditional_branch_depth = 0

    @property
    def is_scalar_bool(self) -> bool:
        return self.tensor_dtype == torch.bool and self.tensor_shape == ()  # type: ignore[attr-defined]

    @property
    def scalar_bool_value(self) -> bool | None:
        if not self.is_scalar_bool:
            return None
        a = self.activation  # type: ignore[attr-defined]
        return None if a is None else bool(a)

    @property
    def conditional_branch_stack(self) -> list:
        return []

    @property
    def cond_branch_start_children(self) -> list:
        return []

    @property
    def cond_branch_then_children(self) -> list:
        return []

    @property
    def cond_branch_elif_children(self) -> dict:
        return {}

    @property
    def cond_branch_else_children(self) -> list:
        return []

    @property
    def cond_branch_children_by_cond(self) -> dict:
        return {}

    # modules ------------------------------------------------------------------
    @property
    def module_passes_entered(self) -> list[str]:
        log = self._log
        mine = set(self.containing_modules)  # type: ignore[attr-defined]
        out: list[str] = []
        for c in log._col("children")[self._pos]:
            for m in log._containing_modules(c):
                if m not in mine and m not in out:
                    out.append(m)
        return out

    @property
    def modules_entered(self) -> list[str]:
        out: list[str] = []
        for m in self.module_passes_entered:
            a = m.rsplit(":", 1)[0]
            if a not in out:
                out.append(a)
        return out

    @property
    def modules_entered_argnames(self) -> dict:
        return {}

    @property
    def is_submodule_input(self) -> bool:
        return bool(self.module_passes_entered)

    @property
    def module_entry_exit_threads_inputs(self) -> list:
        return []

    @property
    def module_entry_exit_thread_output(self) -> list:
        return []

    # methods ------------------------------------------------------------------
    def materialize_gradient(self, *, map_location: str = "cpu") -> Any:
        return None

    def get_child_layers(self) -> list:
        return [self._log[c] for c in self.child_layers]  # type: ignore[attr-defined]

    def get_parent_layers(self) -> list:
        return [self._log[p] for p in self.parent_layers]  # type: ignore[attr-defined]

    def print_all_fields(self) -> None:
        for name in LAYER_PASS_LOG_FIELD_ORDER:
            try:
                v = getattr(self, name)
            except Exception as e:  # pragma: no cover - diagnostic printout
                v = f"<error: {e}>"
            print(f"{name}: {v if not isinstance(v, torch.Tensor) else tuple(v.shape)}")

    def copy(self) -> Any:
        return _copy.copy(self)

    def row(self) -> dict[str, Any]:
        from ._model_extras import MODEL_EXPORT_COLUMNS

        out = {}
        for c in MODEL_EXPORT_COLUMNS:
            out[c] = getattr(self, c)
        return out


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


def _no_pass(label: str) -> str:
    return label.split(":")[0]


class LayerLogExtras:
    """Mixin for LayerLog: the aggregates of spec §3.3 that are not simply the first pass's value."""

    __slots__ = ()
    _log: Any
    _positions: list[int]

    def _passes_list(self) -> list[Any]:
        return [self._log._entry(p) for p in self._positions]

    def _union(self, name: str) -> list[str]:
        out: list[str] = []
        for e in self._passes_list():
            for lab in getattr(e, name):
                lab = _no_pass(lab)
                if lab not in out:
                    out.append(lab)
        return out

    @property
    def sibling_layers(self) -> list[str]:
        return self._union("sibling_layers")

    @property
    def co_parent_layers(self) -> list[str]:
        return self._union("co_parent_layers")

    @property
    def child_layers_per_pass(self) -> dict[int, list[str]]:
        return {e.pass_num: e.child_layers for e in self._passes_list()}

    @property
    def parent_layers_per_pass(self) -> dict[int, list[str]]:
        return {e.pass_num: e.parent_layers for e in self._passes_list()}

    @property
    def child_passes_per_layer(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self._passes_list():
            for c in e.child_layers:
                out.setdefault(_no_pass(c), []).append(c)
        return out

    @property
    def parent_passes_per_layer(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self._passes_list():
            for c in e.parent_layers:
                out.setdefault(_no_pass(c), []).append(c)
        return out

    @property
    def edges_vary_across_passes(self) -> bool:
        ps = self._passes_list()
        kids = {tuple(_no_pass(c) for c in e.child_layers) for e in ps}
        pars = {tuple(_no_pass(c) for c in e.parent_layers) for e in ps}
        return len(kids) > 1 or len(pars) > 1

    @property
    def has_input_ancestor(self) -> bool:
        return any(e.has_input_ancestor for e in self._passes_list())

    @property
    def is_leaf_module_output(self) -> bool:
        return any(e.is_leaf_module_output for e in self._passes_list())

    @property
    def leaf_module_passes(self) -> list[str]:
        return [e.leaf_module_pass for e in self._passes_list() if e.leaf_module_pass]

    @property
    def in_cond_branch(self) -> bool:
        return any(e.in_cond_branch for e in self._passes_list())

    @property
    def conditional_branch_stacks(self) -> list[list]:
        out: list[list] = []
        for e in self._passes_list():
            if e.conditional_branch_stack not in out:
                out.append(e.conditional_branch_stack)
        return out

    @property
    def io_role(self) -> str | None:
        roles = [e.io_role for e in self._passes_list()]
        if any(r is None for r in roles):
            return roles[0]
        first = roles[0]
        if all(len(r) == len(first) for r in roles):
            return "".join(c if all(r[i] == c for r in roles) else "*" for i, c in enumerate(first))
        return first

    @property
    def modules_exited(self) -> list[str]:
        return self._union("modules_exited")

    @property
    def module_passes_exited(self) -> list[str]:
        out: list[str] = []
        for e in self._passes_list():
            out += [m for m in e.module_passes_exited if m not in out]
        return out

    @property
    def parent_layer_arg_locs(self) -> dict[str, dict]:
        merged: dict[str, dict] = {"args": {}, "kwargs": {}}
        for e in self._passes_list():
            for kind, locs in e.parent_layer_arg_locs.items():
                for k, lab in locs.items():
                    merged[kind].setdefault(k, _no_pass(lab))
        return merged

    @property
    def extra_data(self) -> dict:
        store = self._log._x("x_layer_extra", dict)
        return store.setdefault(self._positions[0], {})

    @property
    def autograd_saved_bytes(self) -> int | None:
        return None

    @property
    def autograd_saved_tensor_count(self) -> int | None:
        return None
