"""`LayerLog`: all passes of one layer (the rolled view, spec §3.3).

Fields that are the same on every pass read through to the first pass; per-pass fields raise
on multi-pass layers (ask a specific pass); the rest are the aggregates below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._format import human_readable_size
from .layer_pass_log import LayerPassLog

if TYPE_CHECKING:
    from .model_log import ModelLog

_PER_PASS_FIELDS = frozenset(
    """activation tensor transformed_activation has_saved_activations func_call_stack func_time
    operation_num pass_num creation_order lookup_keys layer_label_w_pass layer_label_w_pass_short
    captured_args captured_kwargs gradient transformed_gradient has_gradient func_rng_states""".split()
)


def _no_pass(label: str) -> str:
    return label.split(":")[0]


class LayerLog:
    """All passes of one layer (the rolled view)."""

    __slots__ = ("_log", "_positions")

    def __init__(self, log: ModelLog, positions: list[int]) -> None:
        self._log = log
        self._positions = positions

    @property
    def passes(self) -> dict[int, LayerPassLog]:
        nums = self._log._col("pass_nums")
        return {nums[p]: self._log._entry(p) for p in self._positions}

    @property
    def pass_labels(self) -> list[str]:
        return [self._log._entry(p).layer_label_w_pass for p in self._positions]

    @property
    def num_passes(self) -> int:
        # Passes of the layer in the whole graph (a keep_unsaved_layers=False log may show fewer).
        return self._log._col("num_passes")[self._positions[0]]

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

    def _passes_list(self) -> list[LayerPassLog]:
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

    # conditionals (log/conditionals.py), aggregated as 2.15 does ---------------------------
    @property
    def in_cond_branch(self) -> bool:
        """Whether some pass ran inside an `if` arm (2.15's aggregate: a non-empty branch stack)."""
        return any(e.conditional_branch_stack for e in self._passes_list())

    @property
    def conditional_branch_stacks(self) -> list[list]:
        out: list[list] = []
        for e in self._passes_list():
            if e.conditional_branch_stack not in out:
                out.append(e.conditional_branch_stack)
        return out

    @property
    def conditional_branch_stack_passes(self) -> dict[tuple, list[int]]:
        """{branch stack (as a tuple): the pass numbers that ran under it}."""
        out: dict[tuple, list[int]] = {}
        for e in self._passes_list():
            out.setdefault(tuple(tuple(x) for x in e.conditional_branch_stack), []).append(e.pass_num)
        return out

    @property
    def is_terminal_bool_layer(self) -> bool:
        return any(e.is_terminal_bool_layer for e in self._passes_list())

    @property
    def cond_branch_start_children(self) -> list[str]:
        return self._union("cond_branch_start_children")

    @property
    def cond_branch_then_children(self) -> list[str]:
        return self._union("cond_branch_then_children")

    @property
    def cond_branch_else_children(self) -> list[str]:
        return self._union("cond_branch_else_children")

    @property
    def cond_branch_elif_children(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for e in self._passes_list():
            for k, labels in e.cond_branch_elif_children.items():
                got = out.setdefault(k, [])
                got.extend(lab for lab in map(_no_pass, labels) if lab not in got)
        return out

    @property
    def cond_branch_children_by_cond(self) -> dict[int, dict[str, list[str]]]:
        out: dict[int, dict[str, list[str]]] = {}
        for e in self._passes_list():
            for cid, arms in e.cond_branch_children_by_cond.items():
                for arm, labels in arms.items():
                    got = out.setdefault(cid, {}).setdefault(arm, [])
                    got.extend(lab for lab in map(_no_pass, labels) if lab not in got)
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
        return self._log._extra_data(self._positions[0], rolled=True)

    @property
    def autograd_saved_bytes(self) -> int | None:
        """Sum over the passes (None if no pass had a grad_fn)."""
        return self._sum_passes("autograd_saved_bytes")

    @property
    def autograd_saved_tensor_count(self) -> int | None:
        return self._sum_passes("autograd_saved_tensor_count")

    def _sum_passes(self, name: str) -> int | None:
        vals = [v for e in self._passes_list() if (v := getattr(e, name)) is not None]
        return sum(vals) if vals else None

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
