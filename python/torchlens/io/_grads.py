"""Gradients in bundles (spec §9, §14-15): which gradients a log holds, the `info.gradients`
object of `metadata.json`, and giving a loaded log its gradients back (eagerly or lazily).

Blobs are of kind `gradient` (the detached clone a tensor hook kept) and `transformed_gradient`
(the `gradient_postfunc` output). `info.gradients` maps node ids to them and records the arrival
order and the gradient options of the capture; the Rust core checks that each pair names a blob
of the right kind (`bundle/metadata.rs`), and `restore` checks the node ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._errors import TorchLensIOError
from ..log.gradients import GradientStore
from ..log.model_log import ModelLog
from ._refs import LazyActivationRef, LazyTensorDict

GRAD_KINDS = ("gradient", "transformed_gradient")


def gradient_sources(log: ModelLog) -> list[tuple[str, dict[int, Any]]]:
    """(kind, node id -> tensor or `LazyActivationRef`) of every gradient the log holds."""
    store = log._grad_store
    raw: dict[int, Any] = dict(log._lazy_grads)
    # `dict(...)` of a lazily loaded LazyTensorDict copies its refs without reading them.
    transformed: dict[int, Any] = {} if store is None else dict(store.transformed)
    if store is not None:
        raw.update(store.grads)
    return [("gradient", raw), ("transformed_gradient", transformed)]


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def gradient_info(log: ModelLog, maps: dict[str, list[list[int]]], include: bool = True) -> dict[str, Any] | None:
    """`info.gradients`: the options of the capture, the stored blobs and their arrival order
    (None for a log that never captured gradients: its metadata has no `gradients` key).

    `maps` holds the `[node id, blob id]` pairs written under each kind in `GRAD_KINDS`; the order
    keeps the nodes of the log's arrival order that got a blob."""
    if not log.save_gradients and log._grad_store is None and not log._lazy_grads:
        return None
    stored = {nid for kind in GRAD_KINDS for nid, _ in maps.get(kind, ())}
    store = log._grad_store
    order = [] if store is None or not include else [nid for nid in store.order if nid in stored]
    selection = log.gradients_to_save
    return {
        "save_gradients": bool(log.save_gradients),
        "gradients_to_save": selection if _jsonable(selection) else None,
        "gradients_to_save_repr": None if _jsonable(selection) else repr(selection),
        "save_raw_gradient": bool(log.save_raw_gradient),
        "gradient_postfunc_repr": log.gradient_postfunc_repr,
        "selected": None if store is None or store.selected is None else sorted(store.selected),
        "has_gradients": bool(order),
        "order": order,
        "gradient": maps.get("gradient", []) if include else [],
        "transformed_gradient": maps.get("transformed_gradient", []) if include else [],
    }


def _bad(what: str) -> TorchLensIOError:
    return TorchLensIOError(f"invalid bundle metadata: info.gradients {what}")


def _node_list(v: Any, known: set[int], what: str) -> list[int]:
    if type(v) is not list or not all(type(n) is int and n in known for n in v):
        raise _bad(f"{what} must list node ids of the capture")
    return v


def _pairs(v: Any, known: set[int], by_id: dict[int, dict[str, Any]], kind: str) -> list[tuple[int, int]]:
    ok = type(v) is list and all(type(p) in (list, tuple) and len(p) == 2 for p in v)
    if not ok or not all(type(n) is int and type(b) is int for n, b in v):
        raise _bad(f"{kind} must be a list of [node id, blob id] pairs")
    for nid, bid in v:
        if nid not in known:
            raise _bad(f"{kind} entry [{nid}, {bid}] names an unknown node")
        if by_id.get(bid, {}).get("kind") != kind:
            raise _bad(f"{kind} entry [{nid}, {bid}] refers to no {kind} blob")
    return [(n, b) for n, b in v]


def restore(
    log: ModelLog, info: dict[str, Any], by_id: dict[int, dict[str, Any]], make_ref: Any, map_location: Any
) -> list[tuple[dict[int, Any], dict[int, Any]]]:
    """Give a loaded log the gradient options and lazy gradient refs of `info.gradients`.

    Returns the (refs, destination) dicts that an eager load reads (see `_load._read_all`)."""
    g = info.get("gradients")
    if g is None:  # a bundle of a log without gradient capture (or written before gradients were saved)
        return []
    if type(g) is not dict:
        raise _bad("must be an object")
    known = set(log._node_ids)
    log.save_gradients = bool(g.get("save_gradients", False))
    log.gradients_to_save = g.get("gradients_to_save")
    log.save_raw_gradient = bool(g.get("save_raw_gradient", True))
    repr_ = g.get("gradient_postfunc_repr")
    log.gradient_postfunc_repr = repr_ if isinstance(repr_, str) else None
    grads = _pairs(g.get("gradient", []), known, by_id, "gradient")
    tgrads = _pairs(g.get("transformed_gradient", []), known, by_id, "transformed_gradient")
    if not log.save_gradients and not grads and not tgrads:
        return []
    store = GradientStore()
    selected = g.get("selected")
    store.selected = None if selected is None else frozenset(_node_list(selected, known, "selected"))
    order = _node_list(g.get("order", []), known, "order")
    refs: dict[int, LazyActivationRef] = {}

    def ref_of(bid: int) -> LazyActivationRef:
        r = refs.get(bid)
        if r is None:
            r = refs[bid] = make_ref(by_id[bid])
        return r

    for nid, bid in grads:
        log._lazy_grads[nid] = ref_of(bid)
    transformed = LazyTensorDict(map_location)
    for nid, bid in tgrads:
        transformed[nid] = ref_of(bid)
    store.transformed = transformed
    stored = set(log._lazy_grads) | set(transformed)
    store.order = [nid for nid in order if nid in stored]
    store.seen = set(store.order)
    log._grad_store = store
    log.has_gradients = bool(store.order)
    return [(log._lazy_grads, store.grads), (transformed, transformed)]


def recovered_gradients(
    found: list[tuple[int, str, int, dict[str, Any], Path | None]], base: Any, known: set[int]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Gradients of an interrupted gradient stream (`recover_bundle`): `found` lists (arrival
    seq, kind, node id, manifest entry, file or None in a shard) of each complete blob; `base` is the journal's
    `info.gradients` (the capture's options) or None; `known` the node ids of the recovered log
    (it has no output nodes). Keeps the latest blob of each (kind, node)
    and deletes the others; returns the manifest entries and `info.gradients` (None when there
    is neither)."""
    latest: dict[tuple[str, int], tuple[dict[str, Any], Path | None]] = {}
    first: dict[int, int] = {}
    for seq, kind, nid, ent, f in sorted(found, key=lambda x: x[0]):
        first.setdefault(nid, seq)
        old = latest.get((kind, nid))
        if old is not None and old[1] is not None:  # format 2 (no file): bytes stay in the shard
            old[1].unlink()
        latest[(kind, nid)] = (ent, f)
    if not latest and base is None:
        return [], None
    info = dict(base) if isinstance(base, dict) else {"save_gradients": True}
    if isinstance(info.get("selected"), list):
        info["selected"] = [n for n in info["selected"] if n in known]
    order = sorted(first, key=first.__getitem__)
    info["order"] = order
    info["has_gradients"] = bool(order)
    for kind in GRAD_KINDS:
        info[kind] = sorted([nid, ent["blob_id"]] for (k, nid), (ent, _) in latest.items() if k == kind)
    return [ent for ent, _ in latest.values()], info
