"""`ModelLog`: the user-facing result of `log_forward_pass`, a facade over the core's columns."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ._format import compact_count, human_readable_size
from ._model_extras import ModelLogExtras
from .layer_log import LayerLog, LayerPassLog

if TYPE_CHECKING:
    from ._data import CaptureData, ParamInfo

_SEED_LABEL = re.compile(r"^(input|output|buffer)_(\d+)_(\d+)$")


class ModelLog(ModelLogExtras):
    """Log of one forward pass: every tensor computed, its metadata and (optionally) its value."""

    def __init__(
        self, model_name: str, data: CaptureData, fin: Any, saved: dict[int, torch.Tensor], info: dict
    ) -> None:
        self.model_name = model_name
        self._data = data
        self._fin = fin
        self._saved = saved
        # Activations of a lazily loaded or streamed bundle not read yet: node id -> LazyActivationRef.
        self._lazy: dict[int, Any] = {}
        self._loaded_from_bundle = False
        self._bundle_path: str | None = None
        self._cols: dict[str, Any] = {}
        self._entries: dict[int, LayerPassLog] = {}
        self._records = data.records
        self._n_records = len(self._records)
        self._node_ids: list[int] = fin.node_ids()
        self.random_seed_used: int = info["random_seed"]
        self.time_forward_pass: float = info["time_forward"]
        self.time_total: float = info["time_total"]
        self.time_postprocessing: float = info["time_core"]
        self.layers_to_save = info["layers_to_save"]
        self.detect_loops: bool = info["detect_loops"]
        self._pass_finished = True
        self._layer_logs: dict[str, LayerLog] | None = None

    # ------------------------------------------------------------------ columns
    def _col(self, name: str) -> Any:
        c = self._cols.get(name)
        if c is None:
            c = self._cols[name] = getattr(self._fin, name)()
        return c

    def _node_id(self, pos: int) -> int:
        return self._node_ids[pos]

    def _record_index(self, pos: int) -> int:
        """Index of the record behind a position (outputs map to their producer)."""
        nid = self._node_ids[pos]
        if nid >= self._n_records:
            return self._data.outputs[nid - self._n_records][0]
        return nid

    def _is_output(self, pos: int) -> bool:
        return self._node_ids[pos] >= self._n_records

    def _kind(self, pos: int) -> int:
        nid = self._node_ids[pos]
        return 3 if nid >= self._n_records else self._records[nid][0]

    def _last_output_pos(self) -> int:
        for pos in range(len(self._node_ids) - 1, -1, -1):
            if self._is_output(pos):
                return pos
        return -1

    @property
    def _cap_strings(self) -> list[str]:
        return self._data.strings

    def _layer_type(self, pos: int) -> str:
        if self._is_output(pos):
            return "output"
        return self._cap_strings[self._records[self._node_ids[pos]][2]]

    def _func_name(self, pos: int) -> str:
        if self._is_output(pos):
            return "none"
        return self._cap_strings[self._records[self._node_ids[pos]][1]]

    def _out_index(self, pos: int) -> int:
        if self._is_output(pos):
            return -1
        return self._records[self._node_ids[pos]][4]

    def _io_role(self, pos: int) -> str | None:
        nid = self._node_ids[pos]
        if nid >= self._n_records:
            return self._cap_strings[self._data.outputs[nid - self._n_records][1]]
        role = self._records[nid][8]
        return None if role == 0xFFFFFFFF else self._cap_strings[role]

    def _raw_label(self, pos: int) -> str:
        nid = self._node_ids[pos]
        return f"{self._layer_type(pos)}_{nid + 1}_raw"

    def _meta(self, pos: int) -> tuple[tuple[int, ...], torch.dtype, str]:
        d = self._data
        return d.metas[d.meta_ids[self._record_index(pos)]]

    def _shape(self, pos: int) -> tuple[int, ...]:
        return self._meta(pos)[0]

    def _dtype(self, pos: int) -> torch.dtype:
        return self._meta(pos)[1]

    def _memory(self, pos: int) -> int:
        n = 1
        for d in self._shape(pos):
            n *= d
        dt = self._dtype(pos)
        size = torch.empty((), dtype=dt).element_size() if not dt.is_complex else 2 * torch.finfo(dt).bits // 8
        return n * size

    def _grad_fn_name(self, pos: int) -> str | None:
        if self._is_output(pos):
            return None
        if self._kind(pos) in (0, 1):
            return "none"
        return self._meta(pos)[2]

    def _activation(self, pos: int) -> torch.Tensor | None:
        return self._saved.get(self._node_ids[pos])

    def _has_saved(self, nid: int) -> bool:
        return nid in self._saved or nid in self._lazy or nid in self._transformed

    def _materialize(self, pos: int, map_location: Any = "cpu") -> torch.Tensor | None:
        nid = self._node_ids[pos]
        t = self._saved.get(nid)
        if t is not None:
            return t
        ref = self._lazy.get(nid)
        if ref is None:
            return None
        t = ref.materialize(map_location)
        for other, r in list(self._lazy.items()):
            if r is ref:
                self._saved[other] = t
                del self._lazy[other]
        return t

    # ------------------------------------------------------------------ bundles
    def save(self, path: Any, **kwargs: Any) -> None:
        """Write this log as a portable bundle (see `torchlens.save`)."""
        from ._io import save

        save(self, path, **kwargs)

    @staticmethod
    def load(path: Any, **kwargs: Any) -> ModelLog:
        """Load a portable bundle (see `torchlens.load`)."""
        from ._io import load

        return load(path, **kwargs)

    def _params_of(self, pos: int) -> list[ParamInfo]:
        if self._is_output(pos):
            return []
        params = self._data.params
        seen: list[int] = []
        for p in self._records[self._node_ids[pos]][6]:
            if p not in seen:
                seen.append(p)
        return [params[p] for p in seen]

    def _module_name(self, addr: str, k: int) -> str:
        return f"{addr}:{k}"

    def _containing_modules(self, pos: int) -> list[str]:
        if self._is_output(pos):
            return []
        stack = self._data.module_stacks[self._records[self._node_ids[pos]][5]]
        strings = self._cap_strings
        return [f"{strings[a]}:{k}" for a, k in stack]

    def _module_exits(self, pos: int) -> list[str]:
        ex = self._exits_by_node
        strings = self._cap_strings
        return [f"{strings[a]}:{k}" for a, k in ex.get(self._node_ids[pos], ())]

    @property
    def _exits_by_node(self) -> dict[int, list[tuple[int, int]]]:
        c = self._cols.get("_exits")
        if c is None:
            c = {}
            for node, a, k in self._data.module_exits:
                c.setdefault(node, []).append((a, k))
            self._cols["_exits"] = c
        return c

    def _ancestors(self, pos: int, inputs: bool) -> list[str]:
        key = "_anc_in" if inputs else "_anc_out"
        table = self._cols.get(key)
        if table is None:
            table = self._flood(inputs)
            self._cols[key] = table
        labels = self._col("labels")
        return [labels[p] for p in sorted(table[pos])]

    def _flood(self, inputs: bool) -> list[frozenset[int]]:
        n = len(self._node_ids)
        parents = self._col("parents")
        children = self._col("children")
        result: list[frozenset[int]] = [frozenset()] * n
        order = range(n) if inputs else range(n - 1, -1, -1)
        src = parents if inputs else children
        for pos in order:
            acc: set[int] = set()
            if (inputs and self._kind(pos) == 0) or (not inputs and self._is_output(pos)):
                acc.add(pos)
            for q in src[pos]:
                acc |= result[q]
            result[pos] = frozenset(acc)
        return result

    def _lookup_keys(self, pos: int) -> list[Any]:
        n = len(self._node_ids)
        keys: list[Any] = [pos, pos - n, *self._fin.lookup_keys(pos)]
        return sorted(keys, key=str)

    def _entry(self, pos: int) -> LayerPassLog:
        e = self._entries.get(pos)
        if e is None:
            if self._kind(pos) == 1:
                from ._objects import BufferLog

                e = self._entries[pos] = BufferLog(self, pos)
            else:
                e = self._entries[pos] = LayerPassLog(self, pos)
        return e

    # ------------------------------------------------------------------ public
    def __len__(self) -> int:
        return len(self._node_ids)

    def __iter__(self) -> Iterator[LayerPassLog]:
        for pos in range(len(self._node_ids)):
            yield self._entry(pos)

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
        return [labels[p] for p in range(len(self)) if self._kind(p) == 0]

    @property
    def output_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._is_output(p)]

    @property
    def buffer_layers(self) -> list[str]:
        labels = self._col("labels")
        return [labels[p] for p in range(len(self)) if self._kind(p) == 1]

    @property
    def orphan_layers(self) -> list[str]:
        return [f"{self._layer_type_of_record(n)}_{n + 1}_raw" for n in self._fin.removed()]

    def _layer_type_of_record(self, nid: int) -> str:
        if nid >= self._n_records:
            return "output"
        return self._cap_strings[self._records[nid][2]]

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

    def _used_params(self) -> list[ParamInfo]:
        used: dict[int, ParamInfo] = {}
        params = self._data.params
        for pos in range(len(self)):
            if self._is_output(pos):
                continue
            for p in self._records[self._node_ids[pos]][6]:
                used.setdefault(p, params[p])
        return [used[k] for k in sorted(used)]

    @property
    def total_params(self) -> int:
        return sum(p.numel for p in self._used_params())

    @property
    def total_params_memory(self) -> int:
        return sum(p.nbytes for p in self._used_params())

    @property
    def total_param_layers(self) -> int:
        groups = self._col("layer_groups")
        return len({groups[p] for p in range(len(self)) if self._params_of(p)})

    @property
    def module_addresses(self) -> list[str]:
        return [m.address for m in self._data.modules]

    def _module_num_passes(self) -> dict[str, int]:
        return {m.address: m.num_passes for m in self._data.modules}

    def _module_types(self) -> dict[str, str]:
        return {m.address: m.class_name for m in self._data.modules}

    def _module_params(self, addr: str) -> list[ParamInfo]:
        prefix = addr + "."
        return [p for p in self._data.params if p.address.startswith(prefix)]

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

        Returns:
            The DOT source.
        """
        from ._viz import build_dot, render

        src = build_dot(self, vis_mode, vis_nesting_depth, direction, show_buffer_layers, vis_graph_overrides)
        render(src, vis_outpath, vis_fileformat, vis_save_only)
        return src

    def to_dot(self, vis_mode: str = "unrolled", vis_nesting_depth: int = 1000, direction: str = "bottomup") -> str:
        """DOT source of the graph without rendering it."""
        from ._viz import build_dot

        return build_dot(self, vis_mode, vis_nesting_depth, direction)

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
    def _module_tree_lines(self) -> list[str]:
        strings = self._cap_strings
        stacks = self._data.module_stacks
        passes = self._module_num_passes()
        children: dict[tuple, list[tuple[int, int]]] = {}
        for st in stacks[1:]:
            parent = tuple(st[-2]) if len(st) > 1 else ()
            children.setdefault(parent, []).append(tuple(st[-1]))

        def name(node: tuple[int, int]) -> str:
            addr = strings[node[0]]
            return f"{addr}:{node[1]}" if passes.get(addr, 1) > 1 else addr

        lines: list[str] = []

        def walk(node: tuple, level: int) -> None:
            kids = children.get(node, [])
            if not kids:
                return
            indent = "\t\t" + "    " * level
            if level == 0 or any(children.get(c) for c in kids):
                for c in kids:
                    lines.append(indent + name(c))
                    walk(c, level + 1)
            else:
                names = [name(c) for c in kids]
                chunks = [names[i : i + 8] for i in range(0, len(names), 8)]
                for i, ch in enumerate(chunks):
                    lines.append(indent + ", ".join(ch) + (", " if i < len(chunks) - 1 else ""))

        walk((), 0)
        return lines

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
        s.append("\tModule Hierarchy:" + "".join("\n" + ln for ln in self._module_tree_lines()))
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
