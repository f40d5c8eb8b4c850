"""`LayerPassLog` (one executed operation) and `LayerLog` (all passes of one layer).

Both are thin views over the columns the Rust core returned; nothing is computed until a field
is read, so iterating a large log stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._format import human_readable_size, tensor_preview
from ._layer_extras import LayerLogExtras, LayerPassExtras

if TYPE_CHECKING:
    import torch

    from .model_log import ModelLog

_PER_PASS_FIELDS = frozenset(
    """activation tensor transformed_activation has_saved_activations func_call_stack func_time
    operation_num pass_num creation_order lookup_keys layer_label_w_pass layer_label_w_pass_short
    captured_args captured_kwargs gradient transformed_gradient has_gradient func_rng_states""".split()
)


class LayerPassLog(LayerPassExtras):
    """One pass of one layer: a single tensor produced during the forward pass."""

    __slots__ = ("_log", "_pos")

    def __init__(self, log: ModelLog, pos: int) -> None:
        self._log = log
        self._pos = pos

    # identity ---------------------------------------------------------------
    @property
    def layer_label(self) -> str:
        return self._log._col("labels")[self._pos]

    @property
    def layer_label_short(self) -> str:
        return self._log._col("labels_short")[self._pos]

    @property
    def layer_label_no_pass(self) -> str:
        return self._log._col("labels_no_pass")[self._pos]

    @property
    def layer_label_no_pass_short(self) -> str:
        return self.layer_label_w_pass_short.rsplit(":", 1)[0]

    @property
    def layer_label_w_pass(self) -> str:
        return self._log._col("labels_w_pass")[self._pos]

    @property
    def layer_label_w_pass_short(self) -> str:
        return self._log._col("labels_w_pass_short")[self._pos]

    @property
    def tensor_label_raw(self) -> str:
        return self._log._raw_label(self._pos)

    @property
    def layer_type(self) -> str:
        return self._log._layer_type(self._pos)

    @property
    def layer_type_num(self) -> int:
        return self._log._col("layer_type_nums")[self._pos]

    @property
    def layer_total_num(self) -> int:
        return self._log._col("layer_total_nums")[self._pos]

    @property
    def pass_num(self) -> int:
        return self._log._col("pass_nums")[self._pos]

    @property
    def num_passes(self) -> int:
        return self._log._col("num_passes")[self._pos]

    @property
    def operation_num(self) -> int:
        return self._log._col("operation_nums")[self._pos]

    @property
    def creation_order(self) -> int:
        return self._log._node_id(self._pos) + 1

    @property
    def lookup_keys(self) -> list[Any]:
        return self._log._lookup_keys(self._pos)

    @property
    def operation_equivalence_type(self) -> str:
        return self._log._col("fingerprints")[self._pos]

    # tensor -------------------------------------------------------------------
    @property
    def activation(self) -> torch.Tensor | None:
        return self._log._activation(self._pos)

    tensor = activation

    @property
    def has_saved_activations(self) -> bool:
        return self._log._has_saved(self._log._node_ids[self._pos])

    @property
    def activation_ref(self) -> Any:
        """The `LazyActivationRef` of a lazily loaded or streamed activation not read yet, else None."""
        return self._log._lazy.get(self._log._node_ids[self._pos])

    def materialize_activation(self, map_location: Any = "cpu") -> torch.Tensor | None:
        """Read this entry's activation from its bundle (if lazy) and return it; None if never saved."""
        return self._log._materialize(self._pos, map_location)

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return self._log._shape(self._pos)

    @property
    def tensor_dtype(self) -> torch.dtype:
        return self._log._dtype(self._pos)

    @property
    def tensor_memory(self) -> int:
        return self._log._memory(self._pos)

    @property
    def tensor_memory_str(self) -> str:
        return human_readable_size(self.tensor_memory)

    # function -----------------------------------------------------------------
    @property
    def func_name(self) -> str:
        return self._log._func_name(self._pos)

    @property
    def grad_fn_name(self) -> str | None:
        return self._log._grad_fn_name(self._pos)

    @property
    def is_part_of_iterable_output(self) -> bool:
        return self._log._out_index(self._pos) >= 0

    @property
    def iterable_output_index(self) -> int | None:
        i = self._log._out_index(self._pos)
        return i if i >= 0 else None

    # graph --------------------------------------------------------------------
    @property
    def parent_layers(self) -> list[str]:
        labels = self._log._col("labels")
        return [labels[p] for p in self._log._col("parents")[self._pos]]

    @property
    def child_layers(self) -> list[str]:
        labels = self._log._col("labels")
        return [labels[c] for c in self._log._col("children")[self._pos]]

    @property
    def has_parents(self) -> bool:
        return bool(self._log._col("parents")[self._pos])

    @property
    def has_children(self) -> bool:
        return bool(self._log._col("children")[self._pos])

    @property
    def sibling_layers(self) -> list[str]:
        labels = self._log._col("labels")
        parents = self._log._col("parents")
        children = self._log._col("children")
        out: list[str] = []
        for p in parents[self._pos]:
            for c in children[p]:
                if c != self._pos and not self._log._is_output(c) and labels[c] not in out:
                    out.append(labels[c])
        return out

    @property
    def co_parent_layers(self) -> list[str]:
        labels = self._log._col("labels")
        parents = self._log._col("parents")
        children = self._log._col("children")
        out: list[str] = []
        for c in children[self._pos]:
            for p in parents[c]:
                if p != self._pos and labels[p] not in out:
                    out.append(labels[p])
        return out

    @property
    def is_input_layer(self) -> bool:
        return self._log._kind(self._pos) == 0

    @property
    def is_buffer_layer(self) -> bool:
        return self._log._kind(self._pos) == 1

    @property
    def is_output_layer(self) -> bool:
        return self._log._is_output(self._pos)

    @property
    def is_final_output(self) -> bool:
        return self._log._is_output(self._pos) and self._pos == self._log._last_output_pos()

    @property
    def io_role(self) -> str | None:
        return self._log._io_role(self._pos)

    @property
    def buffer_address(self) -> str | None:
        return self._log._io_role(self._pos) if self.is_buffer_layer else None

    @property
    def is_internally_initialized(self) -> bool:
        return self._log._kind(self._pos) == 2 and not self.has_parents

    @property
    def is_internally_terminated(self) -> bool:
        return not self.has_children and not self.is_output_layer

    @property
    def input_ancestors(self) -> list[str]:
        return self._log._ancestors(self._pos, inputs=True)

    @property
    def has_input_ancestor(self) -> bool:
        return bool(self.input_ancestors)

    @property
    def output_descendants(self) -> list[str]:
        return self._log._ancestors(self._pos, inputs=False)

    @property
    def is_output_ancestor(self) -> bool:
        return bool(self.output_descendants)

    # params -------------------------------------------------------------------
    @property
    def parent_param_shapes(self) -> list[tuple[int, ...]]:
        return [p.shape for p in self._log._params_of(self._pos)]

    @property
    def parent_param_addresses(self) -> list[str]:
        return [p.address for p in self._log._params_of(self._pos)]

    @property
    def num_params_total(self) -> int:
        return sum(p.numel for p in self._log._params_of(self._pos))

    @property
    def params_memory(self) -> int:
        return sum(p.nbytes for p in self._log._params_of(self._pos))

    @property
    def uses_params(self) -> bool:
        return bool(self._log._params_of(self._pos))

    # modules ------------------------------------------------------------------
    @property
    def containing_modules(self) -> list[str]:
        return self._log._containing_modules(self._pos)

    @property
    def containing_module(self) -> str | None:
        mods = self.containing_modules
        return mods[-1] if mods else None

    @property
    def module_passes_exited(self) -> list[str]:
        return self._log._module_exits(self._pos)

    @property
    def modules_exited(self) -> list[str]:
        return [m.rsplit(":", 1)[0] for m in self.module_passes_exited]

    @property
    def is_submodule_output(self) -> bool:
        return bool(self.module_passes_exited)

    @property
    def is_computed_inside_submodule(self) -> bool:
        return bool(self.containing_modules)

    @property
    def module_nesting_depth(self) -> int:
        return len(self.containing_modules)

    @property
    def leaf_module_pass(self) -> str | None:
        mods = self.containing_modules
        exits = self.module_passes_exited
        if mods and mods[-1] in exits:
            return mods[-1]
        return None

    @property
    def is_leaf_module_output(self) -> bool:
        return self.leaf_module_pass is not None

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


class LayerLog(LayerLogExtras):
    """All passes of one layer (the rolled view)."""

    __slots__ = ("_log", "_positions")

    def __init__(self, log: ModelLog, positions: list[int]) -> None:
        self._log = log
        self._positions = positions

    @property
    def passes(self) -> dict[int, LayerPassLog]:
        return {i + 1: self._log._entry(p) for i, p in enumerate(self._positions)}

    @property
    def pass_labels(self) -> list[str]:
        return [self._log._entry(p).layer_label_w_pass for p in self._positions]

    @property
    def num_passes(self) -> int:
        return len(self._positions)

    @property
    def layer_label(self) -> str:
        return self._log._entry(self._positions[0]).layer_label_no_pass

    @property
    def layer_label_short(self) -> str:
        return self._log._entry(self._positions[0]).layer_label_no_pass_short

    @property
    def parent_layers(self) -> list[str]:
        out: list[str] = []
        for p in self._positions:
            for lab in self._log._entry(p).parent_layers:
                lab = lab.split(":")[0]
                if lab not in out:
                    out.append(lab)
        return out

    @property
    def child_layers(self) -> list[str]:
        out: list[str] = []
        for p in self._positions:
            for lab in self._log._entry(p).child_layers:
                lab = lab.split(":")[0]
                if lab not in out:
                    out.append(lab)
        return out

    def __len__(self) -> int:
        return len(self._positions)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if len(self._positions) == 1:
            return getattr(self._log._entry(self._positions[0]), name)
        if name in _PER_PASS_FIELDS:
            raise ValueError(
                f"Layer '{self.layer_label}' has {len(self._positions)} passes. Access '{name}' on a specific "
                f"pass: log['{self.layer_label}'].passes[1].{name}"
            )
        first = self._log._entry(self._positions[0])
        if hasattr(type(first), name):
            return getattr(first, name)
        raise AttributeError(name)

    def __str__(self) -> str:
        first = self._log._entry(self._positions[0])
        n = len(self._positions)
        lines = [f"Layer {self.layer_label}:" + (f" ({n} passes)" if n > 1 else "")]
        lines.append(
            f"\tOutput tensor: shape={first.tensor_shape}, dtype={first.tensor_dtype}, size={first.tensor_memory_str}"
        )
        if not first.is_input_layer:
            lines.append(f"\tFunction: {first.func_name} (grad_fn: {first.grad_fn_name})")
        cfg = first.func_config
        if cfg:
            lines.append("\tConfig: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
        if first.containing_module:
            lines.append(f"\tComputed inside module: {first.containing_module}")
        if first.uses_params:
            shapes = ", ".join(str(s) for s in first.parent_param_shapes)
            lines.append(
                f"\tParams: {shapes}; {first.num_params_total} total ({human_readable_size(first.params_memory)})"
            )
        lines.append("\tRelated Layers:")
        lines.append("\t\t- parents: " + (", ".join(self.parent_layers) or "none"))
        lines.append("\t\t- children: " + (", ".join(self.child_layers) or "none"))
        if n > 1:
            lines.append("\tPasses: " + ", ".join(self.pass_labels))
        return "\n".join(lines)

    __repr__ = __str__
