"""`LayerPassLog` (one executed operation) and `BufferLog` (a buffer source node, spec §4.5).

Both are thin views over the columns the Rust core returned; nothing is computed until a field
is read, so iterating a large log stays cheap. Fields that are plain column reads or fixed
values of this release are declared with small descriptors; the rest are properties whose
work lives in the module named for its concern (relations, func_call, params, modules).
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import torch

from .._data import is_inplace_name
from .._format import human_readable_size, tensor_dtype, tensor_memory, tensor_preview, tensor_shape
from . import backward, conditionals, func_call, gradients, relations
from .export import BUFFER_LOG_FIELD_ORDER, LAYER_PASS_LOG_FIELD_ORDER, MODEL_EXPORT_COLUMNS
from .params import param_users

if TYPE_CHECKING:
    from .accessors import ParamAccessor
    from .model_log import ModelLog
    from .params import ParamLog

T = TypeVar("T")


class _Column(Generic[T]):
    """A field read from one of the core's columns at the entry's position."""

    def __init__(self, column: str) -> None:
        self.column = column

    @overload
    def __get__(self, obj: None, owner: type) -> _Column[T]: ...
    @overload
    def __get__(self, obj: LayerPassLog, owner: type) -> T: ...
    def __get__(self, obj: LayerPassLog | None, owner: type) -> Any:
        return self if obj is None else obj._log._col(self.column)[obj._pos]


class _Field(Generic[T]):
    """A field computed from the entry by one expression (typed, unlike a bare `property(lambda)`)."""

    def __init__(self, fn: Callable[[LayerPassLog], T]) -> None:
        self.fn = fn

    @overload
    def __get__(self, obj: None, owner: type) -> _Field[T]: ...
    @overload
    def __get__(self, obj: LayerPassLog, owner: type) -> T: ...
    def __get__(self, obj: LayerPassLog | None, owner: type) -> Any:
        return self if obj is None else self.fn(obj)


class _Empty(Generic[T]):
    """A field this release never fills, as a fresh empty container per read (callers may mutate it)."""

    def __init__(self, factory: type[T]) -> None:
        self.factory = factory

    @overload
    def __get__(self, obj: None, owner: type) -> _Empty[T]: ...
    @overload
    def __get__(self, obj: object, owner: type) -> T: ...
    def __get__(self, obj: object, owner: type) -> Any:
        return self if obj is None else self.factory()


def _labels(log: ModelLog, positions: list[int]) -> list[str]:
    labels = log._col("labels")
    return [labels[p] for p in positions]


class LayerPassLog:
    """One pass of one layer: a single tensor produced during the forward pass."""

    __slots__ = ("_log", "_pos")

    def __init__(self, log: ModelLog, pos: int) -> None:
        self._log = log
        self._pos = pos

    # identity -------------------------------------------------------------------
    layer_label: _Column[str] = _Column("labels")
    layer_label_short: _Column[str] = _Column("labels_short")
    layer_label_no_pass: _Column[str] = _Column("labels_no_pass")
    layer_label_w_pass: _Column[str] = _Column("labels_w_pass")
    layer_label_w_pass_short: _Column[str] = _Column("labels_w_pass_short")
    layer_type_num: _Column[int] = _Column("layer_type_nums")
    layer_total_num: _Column[int] = _Column("layer_total_nums")
    pass_num: _Column[int] = _Column("pass_nums")
    num_passes: _Column[int] = _Column("num_passes")
    operation_num: _Column[int] = _Column("operation_nums")
    operation_equivalence_type: _Column[str] = _Column("fingerprints")

    layer_label_no_pass_short: _Field[str] = _Field(lambda e: e.layer_label_w_pass_short.rsplit(":", 1)[0])
    tensor_label_raw: _Field[str] = _Field(lambda e: e._log._raw_label(e._pos))
    layer_label_raw = tensor_label_raw

    layer_type: _Field[str] = _Field(lambda e: e._log._layer_type(e._pos))
    creation_order: _Field[int] = _Field(lambda e: e._log._node_id(e._pos) + 1)
    lookup_keys: _Field[list[Any]] = _Field(lambda e: e._log._lookup_keys(e._pos))
    source_model_log: _Field[ModelLog] = _Field(lambda e: e._log)

    @property
    def _pass_finished(self) -> bool:
        return True

    # saved tensor ---------------------------------------------------------------
    activation: _Field[torch.Tensor | None] = _Field(lambda e: e._log._activation(e._pos))
    tensor = activation

    has_saved_activations: _Field[bool] = _Field(lambda e: e._log._has_saved(e._log._node_id(e._pos)))

    @property
    def activation_ref(self) -> Any:
        """The `LazyActivationRef` of a lazily loaded or streamed activation not read yet, else None."""
        return self._log._lazy.get(self._log._node_id(self._pos))

    def materialize_activation(self, map_location: Any = "cpu") -> torch.Tensor | None:
        """Read this entry's activation from its bundle (if lazy) and return it; None if never saved."""
        return self._log._materialize(self._pos, map_location)

    tensor_shape: _Field[tuple[int, ...]] = _Field(lambda e: e._log._shape(e._pos))
    tensor_dtype: _Field[torch.dtype] = _Field(lambda e: e._log._dtype(e._pos))
    tensor_memory: _Field[int] = _Field(lambda e: e._log._memory(e._pos))
    tensor_memory_str: _Field[str] = _Field(lambda e: human_readable_size(e.tensor_memory))
    output_device: _Field[str] = _Field(lambda e: e._log.output_device)
    activation_postfunc: _Field[Any] = _Field(lambda e: e._log.activation_postfunc)
    detach_saved_tensor: _Field[bool] = _Field(lambda e: e._log.detach_saved_tensors)
    extra_data: _Field[dict] = _Field(lambda e: e._log._extra_data(e._pos))
    transformed_activation: _Field[Any] = _Field(lambda e: e._log._transformed.get(e._log._node_id(e._pos)))

    @property
    def transformed_activation_shape(self) -> tuple | None:
        return tensor_shape(self.transformed_activation)

    @property
    def transformed_activation_dtype(self) -> torch.dtype | None:
        return tensor_dtype(self.transformed_activation)

    @property
    def transformed_activation_memory(self) -> int | None:
        return tensor_memory(self.transformed_activation)

    @property
    def children_tensor_versions(self) -> dict[str, Any]:
        return relations.children_versions(self._log).get(self._pos, {})

    has_child_tensor_variations: _Field[bool] = _Field(lambda e: bool(e.children_tensor_versions))

    # autograd (see _capture/opstate.py) --------------------------------------------
    @property
    def autograd_saved_bytes(self) -> int | None:
        """Bytes of the tensors autograd saved for this op's grad_fn (None without a grad_fn)."""
        st = func_call.autograd_saved(self._log, self._pos)
        return None if st is None else st[0]

    @property
    def autograd_saved_tensor_count(self) -> int | None:
        st = func_call.autograd_saved(self._log, self._pos)
        return None if st is None else st[1]

    # gradients (tensor hooks, see log/gradients.py) ------------------------------------
    gradient: _Field[torch.Tensor | None] = _Field(lambda e: gradients.gradient(e._log, e._pos))
    transformed_gradient: _Field[Any] = _Field(lambda e: gradients.transformed_gradient(e._log, e._pos))
    has_gradient: _Field[bool] = _Field(lambda e: gradients.has_gradient(e._log, e._pos))
    save_gradients: _Field[bool] = _Field(lambda e: gradients.is_selected(e._log, e._pos))
    gradient_ref: _Field[Any] = _Field(lambda e: e._log._lazy_grads.get(e._log._node_id(e._pos)))

    @property
    def grad_shape(self) -> tuple | None:
        return tensor_shape(self.gradient)

    @property
    def grad_dtype(self) -> torch.dtype | None:
        return tensor_dtype(self.gradient)

    @property
    def grad_memory(self) -> int | None:
        return tensor_memory(self.gradient)

    @property
    def transformed_gradient_shape(self) -> tuple | None:
        return tensor_shape(self.transformed_gradient)

    @property
    def transformed_gradient_dtype(self) -> torch.dtype | None:
        return tensor_dtype(self.transformed_gradient)

    @property
    def transformed_gradient_memory(self) -> int | None:
        return tensor_memory(self.transformed_gradient)

    # backward graph (log/backward.py) --------------------------------------------------
    grad_fn_id: _Field[int | None] = _Field(lambda e: backward.grad_fn_id(e._log, e._pos))
    grad_fn_object: _Field[Any] = _Field(lambda e: backward.grad_fn_object(e._log, e._pos))
    corresponding_grad_fn: _Field[Any] = _Field(lambda e: backward.corresponding_grad_fn(e._log, e._pos))

    @property
    def func_autocast_state(self) -> dict[str, dict[str, Any]] | None:
        """`{"cpu": {"enabled": ..., "dtype": ...}, "cuda": {...}}` when the op ran; `{}` for sources."""
        return func_call.autocast_state(self._log, self._pos)

    grad_memory_str: _Field[str] = _Field(lambda e: human_readable_size(e.grad_memory or 0))

    def materialize_gradient(self, *, map_location: str = "cpu") -> torch.Tensor | None:
        """This entry's gradient, read from its bundle if it was loaded lazily; None if none was saved."""
        return gradients.materialize(self._log, self._pos, map_location)

    # function -------------------------------------------------------------------
    func_name: _Field[str] = _Field(lambda e: e._log._func_name(e._pos))
    grad_fn_name: _Field[str | None] = _Field(lambda e: e._log._grad_fn_name(e._pos))
    is_part_of_iterable_output: _Field[bool] = _Field(lambda e: e._log._out_index(e._pos) >= 0)

    @property
    def iterable_output_index(self) -> int | None:
        i = self._log._out_index(self._pos)
        return i if i >= 0 else None

    args_captured: _Field[bool] = _Field(lambda e: func_call.captured_call(e._log, e._pos) is not None)

    @property
    def captured_args(self) -> Any:
        fa = func_call.captured_call(self._log, self._pos)
        return None if fa is None else func_call.unref(fa[1], self._log._saved)

    @property
    def captured_kwargs(self) -> Any:
        fa = func_call.captured_call(self._log, self._pos)
        return None if fa is None else func_call.unref(fa[2], self._log._saved)

    @property
    def func_applied(self) -> Any:
        fa = func_call.captured_call(self._log, self._pos)
        return None if fa is None else fa[0]

    @property
    def func_call_stack(self) -> list:
        from .call_stack import call_stack

        return call_stack(self._log, self._pos)

    func_time: _Field[float | None] = _Field(lambda e: func_call.func_time(e._log, e._pos))
    func_rng_states: _Field[dict[str, Any] | None] = _Field(lambda e: func_call.rng_states(e._log, e._pos))
    func_argnames: _Field[tuple[str, ...]] = _Field(lambda e: func_call.argnames(e._log, e._pos, e.layer_type))
    num_positional_args: _Field[int] = _Field(lambda e: len(func_call.arg_tokens(e._log, e._pos)[0]))
    num_keyword_args: _Field[int] = _Field(lambda e: len(func_call.arg_tokens(e._log, e._pos)[1]))
    num_args: _Field[int] = _Field(lambda e: e.num_positional_args + e.num_keyword_args)
    func_positional_args_non_tensor: _Field[list] = _Field(lambda e: func_call.non_tensor_args(e._log, e._pos)[0])
    func_kwargs_non_tensor: _Field[dict] = _Field(lambda e: func_call.non_tensor_args(e._log, e._pos)[1])

    @property
    def func_non_tensor_args(self) -> list:
        positional, keyword = func_call.non_tensor_args(self._log, self._pos)
        return positional + list(keyword.values())

    func_is_inplace: _Field[bool] = _Field(lambda e: is_inplace_name(e.func_name))

    @property
    def func_config(self) -> dict[str, Any]:
        from .._funcconfig import func_config

        if not self._log._is_op(self._pos):
            return {}
        return func_config(
            self.layer_type, self.func_name, func_call.raw_tokens(self._log, self._pos), self.parent_param_shapes
        )

    # FLOPs (spec §7.6, tables in flops.py): an output node copies its producer's metadata (spec §7.5).
    flops_forward: _Field[int | None] = _Field(lambda e: func_call.flops(e._log, e._pos)[0])
    flops_backward: _Field[int | None] = _Field(lambda e: func_call.flops(e._log, e._pos)[1])
    macs_forward: _Field[int | None] = _Field(lambda e: func_call.macs(e.flops_forward))
    macs_backward: _Field[int | None] = _Field(lambda e: func_call.macs(e.flops_backward))

    # params ---------------------------------------------------------------------
    parent_params: _Empty[list] = _Empty(list)

    parent_param_shapes: _Field[list[tuple[int, ...]]] = _Field(lambda e: [p.shape for p in e._log._params_of(e._pos)])
    parent_param_addresses: _Field[list[str]] = _Field(lambda e: [p.address for p in e._log._params_of(e._pos)])
    num_params_total: _Field[int] = _Field(lambda e: sum(p.numel for p in e._log._params_of(e._pos)))
    params_memory: _Field[int] = _Field(lambda e: sum(p.nbytes for p in e._log._params_of(e._pos)))
    params_memory_str: _Field[str] = _Field(lambda e: human_readable_size(e.params_memory))
    uses_params: _Field[bool] = _Field(lambda e: bool(e._log._params_of(e._pos)))
    num_param_tensors: _Field[int] = _Field(lambda e: len(e.parent_param_shapes))

    @property
    def parent_param_logs(self) -> list[ParamLog]:
        plogs = self._log.params
        return [plogs[a] for a in self.parent_param_addresses]

    @property
    def params(self) -> ParamAccessor:
        from .accessors import ParamAccessor

        return ParamAccessor(self.parent_param_logs)

    parent_param_barcodes: _Field[list[str]] = _Field(lambda e: [p.barcode for p in e.parent_param_logs])

    @property
    def parent_param_passes(self) -> dict[str, int]:
        users = param_users(self._log)
        label = self.layer_label
        return {
            p.barcode: u.index(label) + 1 if label in (u := users.get(p._index, [])) else 1
            for p in self.parent_param_logs
        }

    num_params_trainable: _Field[int] = _Field(lambda e: sum(p.num_params for p in e.parent_param_logs if p.trainable))
    num_params_frozen: _Field[int] = _Field(lambda e: sum(p.num_params for p in e.parent_param_logs if not p.trainable))
    # graph ----------------------------------------------------------------------
    parent_layers: _Field[list[str]] = _Field(lambda e: _labels(e._log, e._log._parents_with_repeats(e._pos)))
    child_layers: _Field[list[str]] = _Field(lambda e: _labels(e._log, e._log._col("children")[e._pos]))
    has_parents: _Field[bool] = _Field(lambda e: bool(e._log._col("parents")[e._pos]))
    has_children: _Field[bool] = _Field(lambda e: bool(e._log._col("children")[e._pos]))

    @property
    def sibling_layers(self) -> list[str]:
        log, me = self._log, self._pos
        children = log._col("children")
        sibs = [c for p in log._col("parents")[me] for c in children[p] if c != me and not log._is_output(c)]
        return list(dict.fromkeys(_labels(log, sibs)))

    @property
    def co_parent_layers(self) -> list[str]:
        log, me = self._log, self._pos
        parents = log._col("parents")
        return list(dict.fromkeys(_labels(log, [p for c in log._col("children")[me] for p in parents[c] if p != me])))

    has_siblings: _Field[bool] = _Field(lambda e: bool(e.sibling_layers))
    has_co_parents: _Field[bool] = _Field(lambda e: bool(e.co_parent_layers))
    parent_layer_arg_locs: _Field[dict[str, dict]] = _Field(lambda e: relations.arg_locs(e._log, e._pos))
    root_ancestors: _Field[list[str]] = _Field(lambda e: relations.root_ancestors(e._log, e._pos))

    @property
    def equivalent_operations(self) -> set[str]:
        return set(relations.equivalents(self._log).get(self.operation_equivalence_type, ()))

    recurrent_group: _Field[list[str]] = _Field(lambda e: e._log.layer_logs[e.layer_label_no_pass].pass_labels)
    is_input_layer: _Field[bool] = _Field(lambda e: e._log._is_input(e._pos))
    is_buffer_layer: _Field[bool] = _Field(lambda e: e._log._is_buffer(e._pos))
    is_output_layer: _Field[bool] = _Field(lambda e: e._log._is_output(e._pos))
    is_final_output: _Field[bool] = _Field(lambda e: e._log._is_output(e._pos) and e._pos == e._log._last_output_pos())
    feeds_output: _Field[bool] = _Field(lambda e: any(e._log._is_output(c) for c in e._log._col("children")[e._pos]))
    io_role: _Field[str | None] = _Field(lambda e: e._log._io_role(e._pos))
    buffer_address: _Field[str | None] = _Field(lambda e: e._log._io_role(e._pos) if e.is_buffer_layer else None)
    buffer_pass: _Field[int | None] = _Field(lambda e: 1 if e.is_buffer_layer else None)
    buffer_parent: str | None = None

    is_internally_initialized: _Field[bool] = _Field(lambda e: e._log._is_op(e._pos) and not e.has_parents)
    is_internally_terminated: _Field[bool] = _Field(lambda e: not e.has_children and not e.is_output_layer)

    @property
    def internally_initialized_ancestors(self) -> list[str]:
        log = self._log
        return _labels(
            log, [p for p in relations.ancestor_set(log, self._pos) if log._entry(p).is_internally_initialized]
        )

    has_internally_initialized_ancestor: _Field[bool] = _Field(lambda e: bool(e.internally_initialized_ancestors))

    @property
    def internally_initialized_parents(self) -> list[str]:
        log = self._log
        return _labels(log, [p for p in log._col("parents")[self._pos] if log._entry(p).is_internally_initialized])

    input_ancestors: _Field[list[str]] = _Field(lambda e: relations.ancestors(e._log, e._pos, inputs=True))
    has_input_ancestor: _Field[bool] = _Field(lambda e: bool(e.input_ancestors))
    output_descendants: _Field[list[str]] = _Field(lambda e: relations.ancestors(e._log, e._pos, inputs=False))
    is_output_ancestor: _Field[bool] = _Field(lambda e: bool(e.output_descendants))

    @property
    def min_distance_from_input(self) -> int | None:
        return relations.distance(self._log, self._pos, from_input=True, shortest=True)

    @property
    def max_distance_from_input(self) -> int | None:
        return relations.distance(self._log, self._pos, from_input=True, shortest=False)

    @property
    def min_distance_from_output(self) -> int | None:
        return relations.distance(self._log, self._pos, from_input=False, shortest=True)

    @property
    def max_distance_from_output(self) -> int | None:
        return relations.distance(self._log, self._pos, from_input=False, shortest=False)

    # conditionals (see log/conditionals.py) ------------------------------------------
    is_terminal_bool_layer: _Field[bool] = _Field(lambda e: conditionals.bool_info(e._log, e._pos) is not None)
    bool_is_branch: _Field[bool] = _Field(lambda e: bool((b := conditionals.bool_info(e._log, e._pos)) and b.is_branch))
    bool_context_kind: _Field[str | None] = _Field(
        lambda e: None if (b := conditionals.bool_info(e._log, e._pos)) is None else b.context_kind
    )
    bool_wrapper_kind: _Field[str | None] = _Field(
        lambda e: None if (b := conditionals.bool_info(e._log, e._pos)) is None else b.wrapper_kind
    )
    bool_conditional_id: _Field[int | None] = _Field(
        lambda e: None if (b := conditionals.bool_info(e._log, e._pos)) is None else b.conditional_id
    )
    in_cond_branch: _Field[bool] = _Field(lambda e: e._pos in conditionals.table(e._log).in_branch)
    conditional_branch_stack: _Field[list] = _Field(lambda e: conditionals.stack(e._log, e._pos))
    conditional_branch_depth: _Field[int] = _Field(lambda e: len(conditionals.stack(e._log, e._pos)))
    cond_branch_start_children: _Field[list] = _Field(lambda e: conditionals.start_children(e._log, e._pos))
    cond_branch_then_children: _Field[list] = _Field(lambda e: conditionals.children_of_arm(e._log, e._pos, "then"))
    cond_branch_elif_children: _Field[dict] = _Field(lambda e: conditionals.elif_children(e._log, e._pos))
    cond_branch_else_children: _Field[list] = _Field(lambda e: conditionals.children_of_arm(e._log, e._pos, "else"))
    cond_branch_children_by_cond: _Field[dict] = _Field(lambda e: conditionals.arm_children(e._log, e._pos))

    is_scalar_bool: _Field[bool] = _Field(lambda e: e.tensor_dtype == torch.bool and e.tensor_shape == ())

    @property
    def scalar_bool_value(self) -> bool | None:
        a = self.activation if self.is_scalar_bool else None
        return None if a is None else bool(a)

    # modules --------------------------------------------------------------------
    modules_entered_argnames: _Empty[dict] = _Empty(dict)
    module_entry_exit_threads_inputs: _Empty[list] = _Empty(list)
    module_entry_exit_thread_output: _Empty[list] = _Empty(list)

    containing_modules: _Field[list[str]] = _Field(lambda e: e._log._containing_modules(e._pos))

    @property
    def containing_module(self) -> str | None:
        mods = self.containing_modules
        return mods[-1] if mods else None

    module_passes_exited: _Field[list[str]] = _Field(lambda e: e._log._module_exits(e._pos))
    modules_exited: _Field[list[str]] = _Field(lambda e: [m.rsplit(":", 1)[0] for m in e.module_passes_exited])

    @property
    def module_passes_entered(self) -> list[str]:
        log = self._log
        mine = set(self.containing_modules)
        entered = [m for c in log._col("children")[self._pos] for m in log._containing_modules(c) if m not in mine]
        return list(dict.fromkeys(entered))

    @property
    def modules_entered(self) -> list[str]:
        return list(dict.fromkeys(m.rsplit(":", 1)[0] for m in self.module_passes_entered))

    is_submodule_input: _Field[bool] = _Field(lambda e: bool(e.module_passes_entered))
    is_submodule_output: _Field[bool] = _Field(lambda e: bool(e.module_passes_exited))
    is_computed_inside_submodule: _Field[bool] = _Field(lambda e: bool(e.containing_modules))
    module_nesting_depth: _Field[int] = _Field(lambda e: len(e.containing_modules))

    @property
    def leaf_module_pass(self) -> str | None:
        mods = self.containing_modules
        return mods[-1] if mods and mods[-1] in self.module_passes_exited else None

    is_leaf_module_output: _Field[bool] = _Field(lambda e: e.leaf_module_pass is not None)

    # methods --------------------------------------------------------------------
    def get_child_layers(self) -> list:
        return [self._log[c] for c in self.child_layers]

    def get_parent_layers(self) -> list:
        return [self._log[p] for p in self.parent_layers]

    def print_all_fields(self) -> None:
        for name in LAYER_PASS_LOG_FIELD_ORDER:
            try:
                v = getattr(self, name)
            except Exception as e:  # pragma: no cover - diagnostic printout
                v = f"<error: {e}>"
            print(f"{name}: {v if not isinstance(v, torch.Tensor) else tuple(v.shape)}")

    def copy(self) -> LayerPassLog:
        return _copy.copy(self)

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in MODEL_EXPORT_COLUMNS}

    # printing -----------------------------------------------------------------
    def __str__(self) -> str:
        log = self._log
        n_ops = log.num_operations
        if self.num_passes > 1:
            head = f"Layer {self.layer_label_no_pass} (pass {self.pass_num}/{self.num_passes}), "
        else:
            head = f"Layer {self.layer_label_no_pass}, "
        lines = [f"{head}operation {self.operation_num}/{n_ops}:"]
        act = self.activation
        shape = self.tensor_shape
        saved = "" if act is not None else " (not saved)"
        # TorchLens 2.15 prints "dype" here (a typo); this release prints "dtype" (see docs/api.md).
        lines.append(f"\tOutput tensor: shape={shape}, dtype={self.tensor_dtype}, size={self.tensor_memory_str}{saved}")
        if act is not None:
            lines.append("\t\t" + tensor_preview(act))
        lines.append("\tRelated Layers:")
        par, ch = self.parent_layers, self.child_layers
        sib, cop = self.sibling_layers, self.co_parent_layers
        lines.append("\t\t- parent layers: " + ", ".join(par) if par else "\t\t- no parent layers")
        lines.append("\t\t- child layers: " + ", ".join(ch) if ch else "\t\t- no child layers")
        lines.append(
            "\t\t- shares parents with layers: " + ", ".join(sib)
            if sib
            else "\t\t- shares parents with no other layers"
        )
        lines.append(
            "\t\t- shares children with layers: " + ", ".join(cop)
            if cop
            else "\t\t- shares children with no other layers"
        )
        anc = self.input_ancestors
        lines.append(
            "\t\t- descendent of input layers: " + ", ".join(anc)
            if anc
            else "\t\t- tensor was created de novo inside the model (not computed from input)"
        )
        desc = self.output_descendants
        lines.append(
            "\t\t- ancestor of output layers: " + ", ".join(desc)
            if desc
            else "\t\t- tensor is not an ancestor of the model output; it terminates within the model"
        )
        if self.uses_params:
            shapes = ", ".join(str(s) for s in self.parent_param_shapes)
            lines.append(
                f"\tParams: Computed from params with shape {shapes}; {self.num_params_total} params total "
                f"({human_readable_size(self.params_memory)})"
            )
        else:
            lines.append("\tParams: no params used")
        if not self.is_input_layer:
            lines.append(f"\tFunction: {self.func_name} (grad_fn: {self.grad_fn_name}) ")
            lines.append(f"\tComputed inside module: {self.containing_module or 'not computed inside a module'}")
        cfg = self.func_config
        if cfg:
            lines.append("\tConfig: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
        ft = self.func_time
        if ft is not None and not self.is_input_layer:
            lines.append(f"\tTime elapsed: {ft: .3E}s")
        exited = self.modules_exited
        lines.append("\tOutput of modules: " + (", ".join(exited) if exited else "none"))
        if self.is_leaf_module_output:
            lines.append(f"\tOutput of bottom-level module: {self.leaf_module_pass}")
        lines.append("\tLookup keys: " + ", ".join(str(k) for k in self.lookup_keys))
        return "\n".join(lines)

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerPassLog) and other._log is self._log and other._pos == self._pos

    def __hash__(self) -> int:
        return hash((id(self._log), self._pos))


class BufferLog(LayerPassLog):
    """A buffer source node: a LayerPassLog with buffer-specific properties (spec §4.5)."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return (self.buffer_address or "").rsplit(".", 1)[-1]

    @property
    def module_address(self) -> str:
        a = self.buffer_address or ""
        return a.rsplit(".", 1)[0] if "." in a else "self"

    def buffer_row(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in BUFFER_LOG_FIELD_ORDER}

    def __repr__(self) -> str:
        lines = [
            f"BufferLog: {self.buffer_address}",
            f"  shape: {list(self.tensor_shape)}",
            f"  dtype: {self.tensor_dtype}",
            f"  size: {self.tensor_memory_str}",
            f"  module: {self.module_address}",
            f"  pass: {self.buffer_pass}",
            f"  has_saved_activations: {self.has_saved_activations}",
        ]
        if self.has_gradient:
            lines.append("  has_gradient: True")
        lines.append(f"  layer_label: {self.layer_label}")
        return "\n".join(lines)
