"""ModelLog features beyond the core facade: modules, params, buffers, exports, summary, validation.

A mixin so that model_log.py stays a thin facade; every table here is computed on first use and
cached in `self._cols` (keys starting with `x_`).
"""

from __future__ import annotations

from typing import Any

import torch

from ._export import frame, to_csv, to_json, to_parquet
from ._format import human_readable_size

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


class ModelLogExtras:
    """Mixin for ModelLog (see model_log.py for the core columns it reads)."""

    # Capture options (spec §2.5); api.py overwrites them per log.
    activation_postfunc: Any = None
    activation_postfunc_repr: str | None = None
    save_raw_activation = True
    save_function_args = False
    save_rng_states = False
    save_source_context = False
    num_context_lines = 7
    mark_input_output_distances = False
    detach_saved_tensors = False
    output_device = "same"
    train_mode = False
    save_gradients = False
    has_gradients = False
    logging_mode = "exhaustive"
    io_format_version = 1
    keep_unsaved_layers = True
    _transformed: dict = {}
    _rng_before_forward: Any = None
    _source_model_ref: Any = None

    _cols: dict
    _data: Any

    def _x(self, key: str, build: Any) -> Any:
        v = self._cols.get(key)
        if v is None:
            v = self._cols[key] = build()
        return v

    # ------------------------------------------------------------------ per-entry data
    def _pos_of_nid(self) -> dict[int, int]:
        return self._x("x_pos_of_nid", lambda: {n: p for p, n in enumerate(self._node_ids)})  # type: ignore[attr-defined]

    def _extra_data_for(self, pos: int) -> dict:
        store = self._x("x_extra", dict)
        return store.setdefault(pos, {})

    def _transformed_for(self, pos: int) -> Any:
        return self._transformed.get(self._node_ids[pos]) if self._transformed else None  # type: ignore[attr-defined]

    def _equivalents(self) -> dict[str, list[str]]:
        def build() -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            labels = self._col("labels")  # type: ignore[attr-defined]
            for p, fp in enumerate(self._col("fingerprints")):  # type: ignore[attr-defined]
                out.setdefault(fp, []).append(labels[p])
            return out

        return self._x("x_equiv", build)

    def _arg_locs(self, pos: int) -> dict[str, dict]:
        from ._capture.session import ParentRef

        locs: dict[str, dict] = {"args": {}, "kwargs": {}}
        if self._is_output(pos):  # type: ignore[attr-defined]
            parents = self._col("parents")[pos]  # type: ignore[attr-defined]
            if parents:
                locs["args"][0] = self._col("labels")[parents[0]]  # type: ignore[attr-defined]
            return locs
        nid = self._node_ids[pos]  # type: ignore[attr-defined]
        labels = self._col("labels")  # type: ignore[attr-defined]
        pon = self._pos_of_nid()
        fa = self._data.func_args.get(nid)
        if fa is not None:
            for kind, container in (("args", fa[1]), ("kwargs", fa[2])):
                items = enumerate(container) if kind == "args" else container.items()
                for k, v in items:
                    if isinstance(v, ParentRef) and v.nid in pon:
                        locs[kind][k] = labels[pon[v.nid]]
                    elif type(v) in (list, tuple, dict):
                        sub = v.items() if type(v) is dict else enumerate(v)
                        for j, w in sub:
                            if isinstance(w, ParentRef) and w.nid in pon:
                                locs[kind][(k, j)] = labels[pon[w.nid]]
            return locs
        rec = self._records[nid]  # type: ignore[attr-defined]
        parents = [p for p in rec[7] if p in pon]
        toks = list(self._data.toks[nid]) if nid < len(self._data.toks) else []
        kw: dict = {}
        if (
            toks
            and isinstance(toks[-1], tuple)
            and toks[-1]
            and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in toks[-1])
        ):
            kw = dict(toks.pop())
        it = iter(parents)
        for i, t in enumerate(toks):
            if isinstance(t, torch.Size):
                n = next(it, None)
                if n is not None:
                    locs["args"][i] = labels[pon[n]]
            elif isinstance(t, tuple):
                for j, u in enumerate(t):
                    if isinstance(u, torch.Size):
                        n = next(it, None)
                        if n is not None:
                            locs["args"][(i, j)] = labels[pon[n]]
        for k, t in kw.items():
            if isinstance(t, torch.Size):
                n = next(it, None)
                if n is not None:
                    locs["kwargs"][k] = labels[pon[n]]
        return locs

    def _ancestor_set(self, pos: int) -> list[int]:
        parents = self._col("parents")  # type: ignore[attr-defined]
        seen: set[int] = set()
        stack = list(parents[pos])
        while stack:
            q = stack.pop()
            if q not in seen:
                seen.add(q)
                stack.extend(parents[q])
        return sorted(seen)

    def _root_ancestors(self, pos: int) -> list[str]:
        parents = self._col("parents")  # type: ignore[attr-defined]
        labels = self._col("labels")  # type: ignore[attr-defined]
        anc = self._ancestor_set(pos) + [pos]
        return [labels[q] for q in sorted(set(anc)) if not parents[q]]

    def _distances(self) -> tuple:
        def build() -> tuple:
            n = len(self._node_ids)  # type: ignore[attr-defined]
            parents = self._col("parents")  # type: ignore[attr-defined]
            children = self._col("children")  # type: ignore[attr-defined]
            imin: list = [None] * n
            imax: list = [None] * n
            for p in range(n):
                if self._kind(p) == 0 and not self._is_output(p):  # type: ignore[attr-defined]
                    imin[p] = imax[p] = 0
                    continue
                ds = [q for q in parents[p] if imin[q] is not None]
                if ds:
                    imin[p] = min(imin[q] for q in ds) + 1
                    imax[p] = max(imax[q] for q in ds) + 1
            omin: list = [None] * n
            omax: list = [None] * n
            for p in range(n - 1, -1, -1):
                if self._is_output(p):  # type: ignore[attr-defined]
                    omin[p] = omax[p] = 0
                    continue
                ds = [q for q in children[p] if omin[q] is not None]
                if ds:
                    omin[p] = min(omin[q] for q in ds) + 1
                    omax[p] = max(omax[q] for q in ds) + 1
            return imin, imax, omin, omax

        return self._x("x_dist", build)

    def _distance(self, pos: int, which: str, fn: Any) -> int | None:
        if not self.mark_input_output_distances:
            return None
        imin, imax, omin, omax = self._distances()
        if which == "in":
            return (imin if fn is min else imax)[pos]
        return (omin if fn is min else omax)[pos]

    def _children_versions(self) -> dict[int, dict[str, Any]]:
        from ._capture.session import ParentRef

        def build() -> dict[int, dict[str, Any]]:
            out: dict[int, dict[str, Any]] = {}
            pon = self._pos_of_nid()
            labels = self._col("labels")  # type: ignore[attr-defined]
            for nid, fa in self._data.func_args.items():
                if fa is None or nid not in pon:
                    continue
                stack = [fa[1], fa[2]]
                while stack:
                    v = stack.pop()
                    if isinstance(v, ParentRef):
                        pp = pon.get(v.nid)
                        if pp is None:
                            continue
                        # Captured values equal to the saved activation were dropped after capture.
                        if v.value is not None and v.nid in self._saved:  # type: ignore[attr-defined]
                            out.setdefault(pp, {})[labels[pon[nid]]] = v.value
                    elif type(v) in (list, tuple):
                        stack.extend(v)
                    elif type(v) is dict:
                        stack.extend(v.values())
            return out

        return self._x("x_versions", build)

    # ------------------------------------------------------------------ params
    def _param_users(self) -> dict[int, list[str]]:
        def build() -> dict[int, list[str]]:
            out: dict[int, list[str]] = {}
            labels = self._col("labels")  # type: ignore[attr-defined]
            for pos in range(len(self._node_ids)):  # type: ignore[attr-defined]
                if self._is_output(pos):  # type: ignore[attr-defined]
                    continue
                for p in dict.fromkeys(self._records[self._node_ids[pos]][6]):  # type: ignore[attr-defined]
                    out.setdefault(p, []).append(labels[pos])
            return out

        return self._x("x_param_users", build)

    def _param_links(self) -> dict[int, set[str]]:
        def build() -> dict[int, set[str]]:
            out: dict[int, set[str]] = {}
            params = self._data.params
            for pos in range(len(self._node_ids)):  # type: ignore[attr-defined]
                if self._is_output(pos):  # type: ignore[attr-defined]
                    continue
                ids = set(self._records[self._node_ids[pos]][6])  # type: ignore[attr-defined]
                for p in ids:
                    out.setdefault(p, set()).update(params[q].address for q in ids if q != p)
            return out

        return self._x("x_param_links", build)

    @property
    def param_logs(self) -> Any:
        from ._objects import ParamAccessor, ParamLog

        return self._x("x_params", lambda: ParamAccessor([ParamLog(self, i) for i in range(len(self._data.params))]))  # type: ignore[arg-type]

    @property
    def params(self) -> Any:
        return self.param_logs

    @property
    def total_param_tensors(self) -> int:
        return len(self._data.params)

    @property
    def total_params_trainable(self) -> int:
        return sum(p.numel for p in self._used_params() if p.requires_grad)  # type: ignore[attr-defined]

    @property
    def total_params_frozen(self) -> int:
        return sum(p.numel for p in self._used_params() if not p.requires_grad)  # type: ignore[attr-defined]

    @property
    def layers_with_params(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for _, users in sorted(self._param_users().items()):
            out.setdefault(users[0], [])
            for u in users:
                if u not in out[users[0]]:
                    out[users[0]].append(u)
        return out

    # ------------------------------------------------------------------ buffers
    @property
    def buffers(self) -> Any:
        from ._objects import BufferAccessor

        return BufferAccessor([self._entry(p) for p in range(len(self)) if self._kind(p) == 1])  # type: ignore[attr-defined]

    @property
    def buffer_num_passes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for b in self.buffers:
            out[b.buffer_address] = out.get(b.buffer_address, 0) + 1
        return out

    # ------------------------------------------------------------------ modules
    def _stack_labels(self) -> list[list[str]]:
        def build() -> list[list[str]]:
            strings = self._data.strings
            return [[f"{strings[a]}:{k}" for a, k in st] for st in self._data.module_stacks]

        return self._x("x_stack_labels", build)

    def _module_pass_positions(self) -> dict[str, list[int]]:
        def build() -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            sl = self._stack_labels()
            for pos in range(len(self._node_ids)):  # type: ignore[attr-defined]
                if self._is_output(pos):  # type: ignore[attr-defined]
                    continue
                for lab in sl[self._records[self._node_ids[pos]][5]]:  # type: ignore[attr-defined]
                    out.setdefault(lab, []).append(pos)
            return out

        return self._x("x_mpp", build)

    def _module_positions(self) -> dict[str, list[int]]:
        def build() -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            for lab, ps in self._module_pass_positions().items():
                out.setdefault(lab.rsplit(":", 1)[0], []).extend(ps)
            return {k: sorted(set(v)) for k, v in out.items()}

        return self._x("x_mp", build)

    def _module_pass_outputs(self) -> dict[str, list[int]]:
        def build() -> dict[str, list[int]]:
            out: dict[str, list[int]] = {}
            strings = self._data.strings
            pon = self._pos_of_nid()
            for node, a, k in self._data.module_exits:
                if node in pon:
                    out.setdefault(f"{strings[a]}:{k}", []).append(pon[node])
            return out

        return self._x("x_mpo", build)

    def _module_call_tree(self) -> tuple[dict[str, str], dict[str, list[str]]]:
        def build() -> tuple:
            parent: dict[str, str] = {}
            children: dict[str, list[str]] = {}
            for st in self._stack_labels():
                for i, lab in enumerate(st):
                    par = st[i - 1] if i else "self:1"
                    parent.setdefault(lab, par)
                    kids = children.setdefault(par, [])
                    if lab not in kids:
                        kids.append(lab)
            return parent, children

        return self._x("x_tree", build)

    def _module_nesting_depths(self) -> dict[str, int]:
        def build() -> dict[str, int]:
            out: dict[str, int] = {"self": 0}
            for st in self._stack_labels():
                for i, lab in enumerate(st):
                    a = lab.rsplit(":", 1)[0]
                    out[a] = min(out.get(a, i + 1), i + 1)
            return out

        return self._x("x_depths", build)

    def _module_addresses_all(self) -> list[str]:
        return [m.address for m in self._data.modules]

    @property
    def modules(self) -> Any:
        from ._objects import ModuleAccessor, ModuleLog

        def build() -> Any:
            mods = [ModuleLog(self, "self", self.model_name, 1, ["self"])]  # type: ignore[attr-defined]
            for m in self._data.modules:
                mods.append(ModuleLog(self, m.address, m.class_name, m.num_passes, m.all_addresses))
            return ModuleAccessor(self, mods)

        return self._x("x_modules", build)

    @property
    def root_module(self) -> Any:
        return self.modules["self"]

    @property
    def layers(self) -> Any:
        from ._objects import LayerAccessor

        return LayerAccessor(self)

    # ------------------------------------------------------------------ misc fields
    @property
    def layer_dict_main_keys(self) -> dict[str, Any]:
        return {e.layer_label: e for e in self}  # type: ignore[attr-defined]

    @property
    def layer_dict_all_keys(self) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for e in self:  # type: ignore[attr-defined]
            for k in e.lookup_keys:
                out.setdefault(k, e)
        return out

    @property
    def internally_initialized_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_initialized]  # type: ignore[attr-defined]

    @property
    def internally_terminated_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_terminated]  # type: ignore[attr-defined]

    @property
    def internally_terminated_bool_layers(self) -> list[str]:
        return [e.layer_label for e in self if e.is_internally_terminated and e.tensor_dtype == torch.bool]  # type: ignore[attr-defined]

    @property
    def unlogged_layers(self) -> list[str]:
        return []

    @property
    def layers_with_saved_gradients(self) -> list[str]:
        return []

    @property
    def equivalent_operations(self) -> dict[str, set[str]]:
        return {k: set(v) for k, v in self._equivalents().items()}

    @property
    def time_logging(self) -> float:
        return self.time_total - self.time_forward_pass  # type: ignore[attr-defined]

    @property
    def time_function_calls(self) -> float:
        return float(sum(self._data.func_times or ()))

    @property
    def total_activation_memory_str(self) -> str:
        return human_readable_size(self.total_activation_memory)  # type: ignore[attr-defined]

    @property
    def saved_activation_memory_str(self) -> str:
        return human_readable_size(self.saved_activation_memory)  # type: ignore[attr-defined]

    @property
    def total_params_memory_str(self) -> str:
        return human_readable_size(self.total_params_memory)  # type: ignore[attr-defined]

    @property
    def total_flops_forward(self) -> int:
        return sum(f for e in self if (f := e.flops_forward) is not None)  # type: ignore[attr-defined]

    @property
    def total_flops_backward(self) -> int:
        return sum(f for e in self if (f := e.flops_backward) is not None)  # type: ignore[attr-defined]

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
            if callable(v):
                continue
            print(f"{name}: {v!r:.200}")

    # ------------------------------------------------------------------ exports
    def to_pandas(self) -> Any:
        """One row per layer pass, columns as in spec §13 (dtypes and shapes as strings)."""
        if not getattr(self, "_pass_finished", True):
            raise RuntimeError("to_pandas() is only available after the forward pass has finished.")
        rows = []
        for e in self:  # type: ignore[attr-defined]
            r = e.row()
            r["conditional_branch_stack"] = ",".join(f"cond_{c}:{k}" for c, k in r["conditional_branch_stack"])
            rows.append(r)
        df = frame(rows, MODEL_EXPORT_COLUMNS)
        df["bool_conditional_id"] = df["bool_conditional_id"].astype("Int64")
        return df

    def to_csv(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as CSV (no index)."""
        to_csv(self.to_pandas(), path, **kw)

    def to_parquet(self, path: Any, **kw: Any) -> None:
        """Write `to_pandas()` as parquet (requires pyarrow)."""
        to_parquet(self.to_pandas(), path, **kw)

    def to_json(self, path: Any, *, orient: str = "records", **kw: Any) -> None:
        """Write `to_pandas()` as JSON records."""
        to_json(self.to_pandas(), path, orient=orient, **kw)

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
        from ._summary import summary

        return summary(
            self, preset or level, fields or columns, mode, show_ops or bool(include_ops), max_rows, print_to
        )

    def validate_forward_pass(
        self, ground_truth_output_tensors: list[torch.Tensor], verbose: bool = False, validate_metadata: bool = True
    ) -> bool:
        """Replay every op from its parents' saved activations and compare (spec §11.2)."""
        from ._validate import validate_log

        return validate_log(self, ground_truth_output_tensors, verbose, validate_metadata)

    def validate_saved_activations(self, *args: Any, **kwargs: Any) -> bool:
        """Deprecated alias of `validate_forward_pass`."""
        from ._options import warn_deprecated

        warn_deprecated("validate_saved_activations", "validate_forward_pass")
        return self.validate_forward_pass(*args, **kwargs)

    def check_metadata_invariants(self) -> bool:
        """Check the log's internal consistency (spec §11.3); raises MetadataInvariantError."""
        from ._validate import check_metadata_invariants

        return check_metadata_invariants(self)

    def cleanup(self) -> None:
        """Drop saved tensors and cached tables."""
        self._saved.clear()  # type: ignore[attr-defined]
        self._cols.clear()
        self._transformed = {}
        self._data.func_args = {}
