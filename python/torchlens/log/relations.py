"""Relations between entries derived from the graph: ancestry, distances, argument positions.

Each table is built once per log on first use and kept in the log's column cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from .._data import ParentRef
from .func_call import arg_tokens

if TYPE_CHECKING:
    from .model_log import ModelLog


def _flood(log: ModelLog, inputs: bool) -> list[frozenset[int]]:
    """Per position, the inputs it descends from (or the outputs it feeds), in one linear sweep."""
    n = log._n_pos
    src = log._col("parents") if inputs else log._col("children")
    result: list[frozenset[int]] = [frozenset()] * n
    for pos in range(n) if inputs else range(n - 1, -1, -1):
        acc: set[int] = set()
        if (inputs and log._is_input(pos)) or (not inputs and log._is_output(pos)):
            acc.add(pos)
        for q in src[pos]:
            acc |= result[q]
        result[pos] = frozenset(acc)
    return result


def ancestors(log: ModelLog, pos: int, inputs: bool) -> list[str]:
    """Labels of the input layers `pos` descends from (`inputs`), or of the outputs it feeds."""
    table = log._cached("rel.inputs" if inputs else "rel.outputs", lambda: _flood(log, inputs))
    labels = log._col("labels")
    return [labels[p] for p in sorted(table[pos])]


def ancestor_set(log: ModelLog, pos: int) -> list[int]:
    parents = log._col("parents")
    seen: set[int] = set()
    stack = list(parents[pos])
    while stack:
        q = stack.pop()
        if q not in seen:
            seen.add(q)
            stack.extend(parents[q])
    return sorted(seen)


def root_ancestors(log: ModelLog, pos: int) -> list[str]:
    parents = log._col("parents")
    labels = log._col("labels")
    anc = [*ancestor_set(log, pos), pos]
    return [labels[q] for q in sorted(set(anc)) if not parents[q]]


def _sweep(order: range, seeds: Any, nbrs: list) -> tuple[list, list]:
    """Shortest and longest hop counts from the seed nodes, visiting `order` (a topological order
    for `nbrs`, the edges walked backwards)."""
    lo: list = [None] * len(nbrs)
    hi: list = [None] * len(nbrs)
    for p in order:
        if seeds(p):
            lo[p] = hi[p] = 0
            continue
        ds = [q for q in nbrs[p] if lo[q] is not None]
        if ds:
            lo[p] = min(lo[q] for q in ds) + 1
            hi[p] = max(hi[q] for q in ds) + 1
    return lo, hi


def _distances(log: ModelLog) -> tuple[list, list, list, list]:
    n = log._n_pos
    imin, imax = _sweep(range(n), log._is_input, log._col("parents"))
    omin, omax = _sweep(range(n - 1, -1, -1), log._is_output, log._col("children"))
    return imin, imax, omin, omax


def distance(log: ModelLog, pos: int, from_input: bool, shortest: bool) -> int | None:
    """Shortest/longest path length from any input (or to any output); None unless requested."""
    if not log.mark_input_output_distances:
        return None
    imin, imax, omin, omax = log._cached("rel.distances", lambda: _distances(log))
    if from_input:
        return (imin if shortest else imax)[pos]
    return (omin if shortest else omax)[pos]


def equivalents(log: ModelLog) -> dict[str, list[str]]:
    """Operation fingerprint -> labels of every entry with that fingerprint."""

    def build() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        labels = log._col("labels")
        for p, fp in enumerate(log._col("fingerprints")):
            out.setdefault(fp, []).append(labels[p])
        return out

    return log._cached("rel.equivalents", build)


def arg_locs(log: ModelLog, pos: int) -> dict[str, dict]:
    """Where each parent entered the call: {"args": {index: label}, "kwargs": {name: label}}."""
    locs: dict[str, dict] = {"args": {}, "kwargs": {}}
    labels = log._col("labels")
    if log._is_output(pos):
        parents = log._col("parents")[pos]
        if parents:
            locs["args"][0] = labels[parents[0]]
        return locs
    nid = log._node_id(pos)
    pon = log._pos_of_nid()
    fa = log._data.func_args.get(nid)
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
    # Without captured arguments, tensor arguments are known only as shape tokens, in call order.
    it = iter([p for p in log._parent_nids(pos) if p in pon])
    positional, keyword = arg_tokens(log, pos)
    for i, t in enumerate(positional):
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
    for k, t in keyword.items():
        if isinstance(t, torch.Size):
            n = next(it, None)
            if n is not None:
                locs["kwargs"][k] = labels[pon[n]]
    return locs


def children_versions(log: ModelLog) -> dict[int, dict[str, Any]]:
    """Position -> {child label: the value the child saw}, for parents changed in place before a child ran."""

    def build() -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        pon = log._pos_of_nid()
        labels = log._col("labels")
        for nid, fa in log._data.func_args.items():
            if fa is None or nid not in pon:
                continue
            stack = [fa[1], fa[2]]
            while stack:
                v = stack.pop()
                if isinstance(v, ParentRef):
                    pp = pon.get(v.nid)
                    # Captured values equal to the saved activation were dropped after capture.
                    if pp is not None and v.value is not None and v.nid in log._saved:
                        out.setdefault(pp, {})[labels[pon[nid]]] = v.value
                elif type(v) in (list, tuple):
                    stack.extend(v)
                elif type(v) is dict:
                    stack.extend(v.values())
        # An output node holds the returned tensor; when that differs from its parent's saved value
        # (changed in place through another alias after the op ran), the parent records it (spec §8.1).
        parents = log._col("parents")
        for pos in range(len(labels)):
            if log._is_output(pos) and parents[pos]:
                q = parents[pos][0]
                mine, theirs = log._saved.get(log._node_ids[pos]), log._saved.get(log._node_ids[q])
                if mine is not None and theirs is not None and mine is not theirs:
                    out.setdefault(q, {})[labels[pos]] = mine
        return out

    return log._cached("rel.versions", build)
