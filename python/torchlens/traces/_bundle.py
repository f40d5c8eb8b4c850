"""`bundle` and `TraceBundle`: several ModelLogs of one model, matched into one supergraph.

Matching (done in the Rust core, ``_core.supergraph``) is per layer pass: the k-th pass with
fingerprint F (``operation_equivalence_type``) in one trace's execution order is the same node
as the k-th pass with fingerprint F in every other trace. A recurrent layer run three times in
one trace and twice in another therefore shares its first two passes; the third is a node of
the first trace only. A node's canonical name is its pass label (``layer_label``) in the first
trace that has it, with ``@trace_name`` appended when another node already took that label.

Fingerprints of parameter-free ops hash their arguments' shapes, so traces of inputs with
different shapes match only on parameterised layers; compare traces of same-shaped inputs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .._native import core
from ..log.model_log import ModelLog
from ._metrics import divergence, metric_name, reduce_stack
from ._node import NodeView, check_direction, saved_activation, saved_gradient

if TYPE_CHECKING:
    from ..log.layer_pass_log import LayerPassLog


def bundle(
    traces: Sequence[ModelLog], names: Sequence[str] | None = None, groups: Sequence[str] | None = None
) -> TraceBundle:
    """Holds several ModelLogs of one model (by reference) and matches their layers.

    Args:
        traces: The logs (live or loaded with ``tl.load``, lazily or not), at least one.
        names: One unique name per trace; default ``trace_0``, ``trace_1``, ...
        groups: One group label per trace (e.g. ``"clean"``, ``"noisy"``), or None.

    Returns:
        The `TraceBundle`.

    Raises:
        ValueError: No traces, or ``names``/``groups`` of another length than ``traces``, or
            duplicate names.
        TypeError: An item of ``traces`` is not a ModelLog.
    """
    return TraceBundle(traces, names, groups)


class TraceBundle:
    """A supergraph over several traces (spec §12.7); see the module docstring for the matching.

    ``bundle[node]`` (canonical name, or index into ``nodes``) returns a `NodeView`.
    """

    def __init__(
        self, traces: Sequence[ModelLog], names: Sequence[str] | None = None, groups: Sequence[str] | None = None
    ) -> None:
        if isinstance(traces, ModelLog) or not isinstance(traces, Sequence):
            raise TypeError("traces must be a list of ModelLogs.")
        traces = list(traces)
        if not traces:
            raise ValueError("bundle needs at least one trace (got an empty list).")
        for i, t in enumerate(traces):
            if not isinstance(t, ModelLog):
                raise TypeError(
                    f"traces[{i}] is a {type(t).__name__}, not a ModelLog (log it with tl.log_forward_pass)."
                )
        if names is None:
            names = [f"trace_{i}" for i in range(len(traces))]
        names = [str(n) for n in names]
        if len(names) != len(traces):
            raise ValueError(f"got {len(names)} names for {len(traces)} traces.")
        if len(set(names)) != len(names):
            raise ValueError(f"trace names must be unique: {names}.")
        if groups is not None:
            groups = [str(g) for g in groups]
            if len(groups) != len(traces):
                raise ValueError(f"got {len(groups)} groups for {len(traces)} traces.")
        self.traces: list[ModelLog] = traces
        self.names: list[str] = names
        self.groups: list[str] | None = groups
        # The shown entries (a log of selected layers with keep_unsaved_layers=False shows only
        # those) and their column positions.
        self._entries: list[list[LayerPassLog]] = [t.layer_list for t in traces]
        self._cols: list[list[int]] = [[e._pos for e in ents] for ents in self._entries]
        fps = [[t._col("fingerprints")[p] for p in cols] for t, cols in zip(traces, self._cols, strict=True)]
        labels = [list(t.layer_labels) for t in traces]
        nodes, assignment = core.supergraph(fps, labels, names)
        self.nodes: list[str] = [n[0] for n in nodes]
        self._node_traces: list[list[int]] = [n[3] for n in nodes]
        self._assignment: list[list[int]] = assignment
        self._index = {name: i for i, name in enumerate(self.nodes)}
        # node -> {trace: position}
        self._positions: list[dict[int, int]] = [{} for _ in nodes]
        for ti, row in enumerate(assignment):
            for pos, n in enumerate(row):
                self._positions[n].setdefault(ti, pos)

    # ---- lookups ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"TraceBundle({len(self.traces)} traces, {len(self.nodes)} nodes, "
            f"{len(self.universal_nodes)} universal, shared_topology={self.is_shared_topology})"
        )

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __contains__(self, node: object) -> bool:
        return node in self._index

    def __getitem__(self, node: str | int) -> NodeView:
        return NodeView(self, self._node_index(node))

    def _node_index(self, node: str | int) -> int:
        if isinstance(node, int) and not isinstance(node, bool):
            if not -len(self.nodes) <= node < len(self.nodes):
                raise IndexError(f"node index {node} out of range ({len(self.nodes)} nodes).")
            return node % len(self.nodes)
        if isinstance(node, str) and node in self._index:
            return self._index[node]
        raise KeyError(f"{node!r} is not a node of this bundle (nodes are named by their first trace's labels).")

    def _node_positions(self, index: int) -> list[tuple[int, int]]:
        return sorted(self._positions[index].items())

    def _trace_index(self, trace: str | int | ModelLog) -> int:
        if isinstance(trace, ModelLog):
            for i, t in enumerate(self.traces):
                if t is trace:
                    return i
            raise ValueError("that ModelLog is not one of this bundle's traces.")
        if isinstance(trace, int) and not isinstance(trace, bool):
            if not 0 <= trace < len(self.traces):
                raise IndexError(f"trace index {trace} out of range ({len(self.traces)} traces).")
            return trace
        if isinstance(trace, str) and trace in self.names:
            return self.names.index(trace)
        raise KeyError(f"{trace!r} is not a trace of this bundle (names: {self.names}).")

    def _trace_name(self, trace: str | int | ModelLog) -> str:
        return self.names[self._trace_index(trace)]

    def entry(self, node: str | int, trace: str | int | ModelLog) -> LayerPassLog | None:
        """The trace's ``LayerPassLog`` for ``node``, or None when the trace lacks the node."""
        t = self._trace_index(trace)
        pos = self._positions[self._node_index(node)].get(t)
        return None if pos is None else self._entries[t][pos]

    # ---- topology --------------------------------------------------------------------------

    @property
    def universal_nodes(self) -> list[str]:
        """Nodes that every trace has, in node order."""
        n = len(self.traces)
        return [name for name, ts in zip(self.nodes, self._node_traces, strict=True) if len(ts) == n]

    def selective_nodes(self, group: str | None = None) -> list[str]:
        """Nodes missing from at least one trace; with ``group``, the nodes that some trace of
        that group has and no trace outside it has.

        Raises:
            ValueError: ``group`` given but the bundle has no groups, or an unknown group.
        """
        if group is None:
            n = len(self.traces)
            return [name for name, ts in zip(self.nodes, self._node_traces, strict=True) if len(ts) < n]
        members = set(self._group_members(group))
        return [name for name, ts in zip(self.nodes, self._node_traces, strict=True) if set(ts) <= members]

    def _group_members(self, group: str) -> list[int]:
        if self.groups is None:
            raise ValueError("this bundle has no groups (pass groups=[...] to tl.bundle).")
        members = [i for i, g in enumerate(self.groups) if g == group]
        if not members:
            raise ValueError(f"unknown group {group!r} (groups: {sorted(set(self.groups))}).")
        return members

    def edges(self) -> list[tuple[str, str]]:
        """Parent -> child node pairs, the union over the traces, in first-seen order."""
        seen: dict[tuple[int, int], None] = {}
        for t in range(len(self.traces)):
            for edge in self._trace_edge_list(t):
                seen.setdefault(edge, None)
        return [(self.nodes[a], self.nodes[b]) for a, b in seen]

    def _trace_edge_list(self, t: int) -> list[tuple[int, int]]:
        """(parent node, child node) per edge between shown entries of trace `t`."""
        row, cols = self._assignment[t], self._cols[t]
        index = {c: i for i, c in enumerate(cols)}
        parents = self.traces[t]._col("parents")
        return [(row[index[p]], row[i]) for i, c in enumerate(cols) for p in parents[c] if p in index]

    def _trace_edges(self, t: int) -> set[tuple[int, int]]:
        return set(self._trace_edge_list(t))

    @property
    def is_shared_topology(self) -> bool:
        """True when every trace has every node and the same edges between them."""
        if len(self.universal_nodes) != len(self.nodes):
            return False
        first = self._trace_edges(0)
        return all(self._trace_edges(t) == first for t in range(1, len(self.traces)))

    def assert_shared_topology(self) -> None:
        """Raises ValueError naming the nodes (or edges) that not every trace shares."""
        if self.is_shared_topology:
            return
        sel = self.selective_nodes()
        if sel:
            cov = {n: f"{self[n].coverage:.2f}" for n in sel[:20]}
            raise ValueError(f"the traces do not share one topology: {len(sel)} selective node(s), coverage {cov}.")
        raise ValueError("the traces have the same nodes but different edges between them.")

    def coverage(self, trace: str | int | ModelLog) -> float:
        """Fraction of the bundle's nodes that ``trace`` has."""
        t = self._trace_index(trace)
        return sum(1 for ts in self._node_traces if t in ts) / len(self.nodes) if self.nodes else 1.0

    @property
    def has_gradients(self) -> bool:
        """True when every trace holds gradients."""
        return all(bool(t.has_gradients) for t in self.traces)

    # ---- comparisons -----------------------------------------------------------------------

    def divergences(
        self, metric: str = "cosine", *, direction: str = "forward", reference: str | int | None = None
    ) -> dict[str, float]:
        """Node -> divergence (`NodeView.divergence`) for every node that the reference trace and
        at least one other trace have, each with the saved tensor, of equal shapes.

        Raises:
            ValueError: Unknown metric or direction, or no node can be compared (no trace saved
                activations, or gradients for ``direction="backward"``).
        """
        metric_name(metric)
        check_direction(direction)
        get = saved_activation if direction == "forward" else saved_gradient
        out: dict[str, float] = {}
        for i, name in enumerate(self.nodes):
            pos = self._positions[i]
            ref = self._trace_index(reference) if reference is not None else min(pos)
            if ref not in pos or len(pos) < 2:
                continue
            tensors = {t: get(self._entries[t][p]) for t, p in pos.items()}
            a = tensors[ref]
            others = [b for t, b in tensors.items() if t != ref and b is not None]
            if a is None or not others or any(tuple(b.shape) != tuple(a.shape) for b in others):
                continue
            out[name] = sum(divergence(a, b, metric) for b in others) / len(others)
        if not out:
            what = "activations" if direction == "forward" else "gradients"
            raise ValueError(
                f"no node has saved {what} in the reference trace and another trace (of one shape); "
                "log the traces with layers_to_save='all'"
                + (" and save_gradients=True, then run backward." if direction == "backward" else ".")
            )
        return out

    def most_changed(
        self,
        top_k: int | None = 10,
        metric: str = "cosine",
        *,
        direction: str = "forward",
        reference: str | int | None = None,
    ) -> list[tuple[str, float]]:
        """The nodes whose tensors differ most across the traces.

        Args:
            top_k: How many to return (None: all comparable nodes).
            metric: ``"cosine"``, ``"relative_l2"`` or ``"pearson"`` (see `NodeView.diff`).
            direction: ``"forward"`` (activations) or ``"backward"`` (gradients).
            reference: The trace the others are compared with; default, per node, the first
                trace that has it.

        Returns:
            ``(node, divergence)`` pairs, largest divergence first (ties in node order); a node's
            divergence is the mean over the non-reference traces of their divergence from the
            reference. NaN divergences are ranked last.
        """
        div = self.divergences(metric, direction=direction, reference=reference)
        order = {n: i for i, n in enumerate(self.nodes)}
        ranked = sorted(div.items(), key=lambda kv: (math.isnan(kv[1]), -_finite(kv[1]), order[kv[0]]))
        return ranked if top_k is None else ranked[:top_k]

    def aggregate(
        self, reduce: str = "mean", *, direction: str = "forward", group: str | None = None
    ) -> dict[str, torch.Tensor]:
        """Node -> the node's tensors reduced over the traces (`NodeView.aggregate`), for the nodes
        that every considered trace has with the saved tensor, of equal shapes.

        Args:
            reduce: ``mean``, ``sum``, ``std``, ``var``, ``min``, ``max`` or ``median``.
            direction: ``"forward"`` (activations) or ``"backward"`` (gradients).
            group: Only the traces of this group.
        """
        check_direction(direction)
        members = self._group_members(group) if group is not None else list(range(len(self.traces)))
        get = saved_activation if direction == "forward" else saved_gradient
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(self.nodes):
            pos = self._positions[i]
            if not all(t in pos for t in members):
                continue
            tensors = [get(self._entries[t][pos[t]]) for t in members]
            if any(x is None for x in tensors):
                continue
            if len({tuple(x.shape) for x in tensors if x is not None}) != 1:
                continue
            out[name] = reduce_stack(torch.stack([x.detach() for x in tensors if x is not None]), reduce)
        return out

    def show(self, vis_outpath: str | None = None, mode: str = "auto", **kwargs: Any) -> Any:
        """Draws the supergraph; see `show_bundle_graph`."""
        from ..viz._bundle_graph import show_bundle_graph

        return show_bundle_graph(self, vis_outpath, mode, **kwargs)


def _finite(v: float) -> float:
    return 0.0 if math.isnan(v) else v
