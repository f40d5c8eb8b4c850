"""`RecordView`: per-position reads of one capture's records and the core's columns.

The base of `ModelLog`. Every read of a raw record field happens here, through the named field
indices of `_data`, so a record-schema change touches this file only. Positions (`pos`) index the
final, orphan-free node order the core returned; node ids (`nid`) index the capture's records,
with model outputs numbered after them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from .._data import (
    F_FUNC,
    F_KIND,
    F_LAYER_TYPE,
    F_MODULE_STACK,
    F_OUT_INDEX,
    F_PARAMS,
    F_PARENTS,
    F_ROLE,
    KIND_BUFFER,
    KIND_INPUT,
    KIND_OP,
    KIND_OUTPUT,
    NO_STR,
    raw_label,
    raw_type_counts,
)

if TYPE_CHECKING:
    from .._data import CaptureData, ParamInfo

T = TypeVar("T")


class RecordView:
    """Column and record access shared by every log object (positions in, plain values out)."""

    def __init__(self, data: CaptureData, fin: Any, saved: dict[int, torch.Tensor]) -> None:
        self._data = data
        self._fin = fin
        self._saved = saved
        # Activations of a lazily loaded or streamed bundle not read yet: node id -> LazyActivationRef.
        self._lazy: dict[int, Any] = {}
        # activation_postfunc results by node id (spec §2.5).
        self._transformed: dict[int, Any] = {}
        self._cols: dict[str, Any] = {}
        self._records = data.records
        self._n_records = len(self._records)
        self._node_ids: list[int] = fin.node_ids()
        # Positions cover the whole graph; `_kept` lists the ones a keep_unsaved_layers=False log
        # still shows (None: all). Internal tables work on every position, the public surface on these.
        self._n_pos = len(self._node_ids)
        self._kept: list[int] | None = None

    def __len__(self) -> int:
        return self._n_pos if self._kept is None else len(self._kept)

    def _positions(self) -> range | list[int]:
        """The positions the log shows, in execution order."""
        return range(self._n_pos) if self._kept is None else self._kept

    def _ordinal(self) -> dict[int, int]:
        """Shown position -> its 0-based index among the shown entries."""
        return self._cached("ordinal", lambda: {p: i for i, p in enumerate(self._positions())})

    def _visible(self, pos: int) -> bool:
        return self._kept is None or pos in self._ordinal()

    # ------------------------------------------------------------------ caches
    def _col(self, name: str) -> Any:
        """One of the core's `Finalized` columns, fetched once."""
        c = self._cols.get(name)
        if c is None:
            c = self._cols[name] = getattr(self._fin, name)()
        return c

    def _cached(self, key: str, build: Callable[[], T]) -> T:
        """A derived table, built on first use (keys are namespaced by the module that builds them)."""
        v = self._cols.get(key)
        if v is None:
            v = self._cols[key] = build()
        return v

    def _pos_of_nid(self) -> dict[int, int]:
        return self._cached("pos_of_nid", lambda: {n: p for p, n in enumerate(self._node_ids)})

    # ------------------------------------------------------------------ record fields
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
        return KIND_OUTPUT if nid >= self._n_records else self._records[nid][F_KIND]

    def _is_input(self, pos: int) -> bool:
        return self._kind(pos) == KIND_INPUT

    def _is_buffer(self, pos: int) -> bool:
        return self._kind(pos) == KIND_BUFFER

    def _is_op(self, pos: int) -> bool:
        return self._kind(pos) == KIND_OP

    def _field(self, pos: int, field: int) -> Any:
        """A field of the record behind a non-output position."""
        return self._records[self._node_ids[pos]][field]

    def _layer_type_of_record(self, nid: int) -> str:
        if nid >= self._n_records:
            return "output"
        return self._data.strings[self._records[nid][F_LAYER_TYPE]]

    def _layer_type(self, pos: int) -> str:
        return self._layer_type_of_record(self._node_ids[pos])

    def _func_name(self, pos: int) -> str:
        return "none" if self._is_output(pos) else self._data.strings[self._field(pos, F_FUNC)]

    def _out_index(self, pos: int) -> int:
        return -1 if self._is_output(pos) else self._field(pos, F_OUT_INDEX)

    def _stack_id(self, pos: int) -> int:
        return self._field(pos, F_MODULE_STACK)

    def _param_ids(self, pos: int) -> list[int]:
        return [] if self._is_output(pos) else self._field(pos, F_PARAMS)

    def _parent_nids(self, pos: int) -> list[int]:
        return self._field(pos, F_PARENTS)

    def _parents_with_repeats(self, pos: int) -> list[int]:
        """Parent positions in argument order, a tensor passed twice listed twice (2.15's `parent_layers`:
        `torch.cat([x, x])` has parents `[x, x]`); the graph columns hold each edge once."""
        if self._is_output(pos):
            return self._col("parents")[pos]
        pon = self._pos_of_nid()
        return [pon[n] for n in self._parent_nids(pos) if n in pon]

    def _io_role(self, pos: int) -> str | None:
        nid = self._node_ids[pos]
        if nid >= self._n_records:
            return self._data.strings[self._data.outputs[nid - self._n_records][1]]
        role = self._records[nid][F_ROLE]
        return None if role == NO_STR else self._data.strings[role]

    def _raw_label(self, pos: int) -> str:
        return self._raw_label_of_record(self._node_ids[pos])

    def _raw_label_of_record(self, nid: int) -> str:
        if nid >= self._n_records:
            return raw_label("output", KIND_OUTPUT, nid - self._n_records + 1, nid + 1)
        counts = self._cached("raw_type_counts", lambda: raw_type_counts(self._records))
        return raw_label(self._layer_type_of_record(nid), self._records[nid][F_KIND], counts[nid], nid + 1)

    def _last_output_pos(self) -> int:
        return self._cached(
            "last_output", lambda: next((p for p in range(self._n_pos - 1, -1, -1) if self._is_output(p)), -1)
        )

    # ------------------------------------------------------------------ tensor metadata
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
        return self._meta(pos)[2] if self._is_op(pos) else "none"

    # ------------------------------------------------------------------ saved values
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
        # One blob may back several entries (an op that returned its input): read it once.
        for other, r in list(self._lazy.items()):
            if r is ref:
                self._saved[other] = t
                del self._lazy[other]
        return t

    def _extra_data(self, pos: int, rolled: bool = False) -> dict:
        """The user's scratch dict of an entry (or of a whole layer when `rolled`)."""
        store = self._cached("extra_rolled" if rolled else "extra", dict)
        return store.setdefault(pos, {})

    # ------------------------------------------------------------------ params and modules
    def _params_of(self, pos: int) -> list[ParamInfo]:
        params = self._data.params
        return [params[p] for p in dict.fromkeys(self._param_ids(pos))]

    def _containing_modules(self, pos: int) -> list[str]:
        if self._is_output(pos):
            return []
        strings = self._data.strings
        return [f"{strings[a]}:{k}" for a, k in self._data.module_stacks[self._stack_id(pos)]]

    def _module_exits(self, pos: int) -> list[str]:
        if self._is_output(pos):
            # An output node copies its producer's metadata (spec §7.5 step 1): as in 2.15, it exits the
            # module passes its producer ran in.
            parents = self._col("parents")[pos]
            return self._containing_modules(parents[0]) if parents else []

        def build() -> dict[int, list[tuple[int, int]]]:
            by_node: dict[int, list[tuple[int, int]]] = {}
            for node, a, k in self._data.module_exits:
                by_node.setdefault(node, []).append((a, k))
            return by_node

        strings = self._data.strings
        return [f"{strings[a]}:{k}" for a, k in self._cached("exits", build).get(self._node_ids[pos], ())]

    def _module_num_passes(self) -> dict[str, int]:
        return {m.address: m.num_passes for m in self._data.modules}

    def _module_types(self) -> dict[str, str]:
        return {m.address: m.class_name for m in self._data.modules}

    def _module_params(self, addr: str) -> list[ParamInfo]:
        prefix = addr + "."
        return [p for p in self._data.params if p.address.startswith(prefix)]

    def _lookup_keys(self, pos: int) -> list[Any]:
        n = len(self)
        i = self._ordinal().get(pos, pos)
        keys: list[Any] = [i, i - n, *self._fin.lookup_keys(pos)]
        return sorted(keys, key=str)
