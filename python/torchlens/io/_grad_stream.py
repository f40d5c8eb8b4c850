"""Gradient streaming (`save_gradients_to`, spec §1.2, §8.5, §14-15): each gradient a backward
pass sends to a kept layer is written to the bundle as it arrives (the core's writer threads);
the bundle is committed once the backward is done.

`log_forward_pass(..., save_gradients_to=P)` creates a `GradientStream` before the capture and
starts it on the finished log: it becomes the `GradientStore.sink`, called by the tensor hooks
with each stored gradient (and `gradient_postfunc` output). The commit is deferred until
`log_backward` / a backward inside `recording_backward` completes (`log/backward.py` calls
`store.sink.finalize(log)`), or until `log.finalize_gradient_bundle()` for plain `.backward()`
calls. When activations stream to the same bundle, their commit waits too (`StreamSink.seal`
now, `StreamSink.commit` at finalization); otherwise the bundle holds the capture's metadata
and the gradients.

Blob ids: after the activations' ids (`stride * (records + outputs) + 1` on), one per arrival,
so a second backward before finalization writes new blobs and the superseded ones are removed at
the commit. Each blob's header names its `kind`, `node`, arrival `seq` and `device`, so that
`recover_bundle` can rebuild the gradients of an interrupted run.
"""

from __future__ import annotations

import json
import os
import weakref
from pathlib import Path
from typing import Any

import torch

from .._capture.hot import paused as _paused
from .._native import core as _core
from ..log.model_log import ModelLog
from . import _shards
from ._grads import GRAD_KINDS, gradient_info
from ._load import make_ref
from ._refs import LazyTensorDict, dtype_name, tensor_bytes, unsupported_reason
from ._save import IO_THREADS, check_target, commit, info_of, mark_partial, tmp_name, written_entry
from ._schema import json_safe, metas_json, param_json, records_json
from ._stream import JOURNAL_FILE, STREAM_QUEUE_BYTES, StreamSink


class GradientStream:
    """Streams the gradients of one log to a bundle directory; `finalize` commits the bundle.

    Args:
        path: The bundle path (must not exist).
        keep: `keep_gradients_in_memory`: after the commit, keep the gradients in RAM (else the
            entries read them from the bundle on first access).
        with_activations: Activations stream to the same bundle (its `StreamSink` owns the
            directory and the commit).
    """

    def __init__(self, path: str | os.PathLike, keep: bool, with_activations: bool) -> None:
        self.target = Path(os.fspath(path))
        if not with_activations:
            check_target(self.target)  # before the capture; the activations' sink checks it otherwise
        self.keep = keep
        self.with_activations = with_activations
        self.act: StreamSink | None = None
        self.tmp: Path | None = None
        self.writer: Any = None
        self.next_id = 1
        self.seq = 0
        # kind -> node id -> (blob id, dtype, shape, device) of the latest arrival.
        self.blobs: dict[str, dict[int, tuple[int, str, tuple[int, ...], str]]] = {k: {} for k in GRAD_KINDS}
        self.obsolete: list[int] = []  # blobs superseded by a later backward
        self.skipped: dict[tuple[str, int], str] = {}  # (kind, node id) -> why it cannot be stored
        self.unsupported: list[dict[str, str]] = []  # manifest `unsupported_tensors`, set by `entries`
        self.known: frozenset[int] = frozenset()  # node ids of the log (hooks also see orphans)
        self._written: tuple[list[dict[str, Any]], dict[str, list[list[int]]]] = ([], {})  # set by `entries`
        self._store: Any = None  # weak reference to the GradientStore this stream is the sink of
        self.done = False

    # ------------------------------------------------------------------ start (end of the capture)
    def start(self, log: ModelLog, sink: Any) -> None:
        """Attach to the finished log. `sink` is the capture's activation sink (None, a callback
        sink, committed now, or the bundle's `StreamSink`, whose commit waits for the gradients)."""
        if self.with_activations:
            self.act = sink
            sink.seal(log, deferred=True)
            self.tmp = sink.tmp
            self.next_id = sink.stride * (log._n_records + len(log._data.outputs)) + 1
        else:
            if sink is not None:
                sink.commit(log)
            check_target(self.target)
            self.tmp = tmp_name(self.target)
            _shards.make_dirs(self.tmp)
        # Same layout as the directory's activations (format 2: new shards after theirs).
        self.writer = _core.StreamWriter(
            str(self.tmp), STREAM_QUEUE_BYTES, IO_THREADS, _shards.stream_shard_bytes(self.tmp)
        )
        self.known = frozenset(log._node_ids)
        if self.act is None:
            self._journal(log)
        store = log._grad_store
        if store is None:  # no layer keeps a gradient: nothing to wait for
            self.finalize(log)
        else:
            store.sink = self
            self._store = weakref.ref(store)

    def _journal(self, log: ModelLog) -> None:
        """The whole capture as a journal (header and one chunk), for `recover_bundle`."""
        data = log._data
        head = {
            "header": 1,
            "model_name": log.model_name,
            "info": json_safe({**info_of(log), "gradients": gradient_info(log, {})}),
            "modules": {m.address: m.class_name for m in data.modules},
            "params": [
                param_json(p.address, p.shape, p.dtype, p.numel, p.nbytes, p.requires_grad) for p in data.params
            ],
        }
        chunk = {
            "records_from": 0,
            "records": records_json(data.records),
            "meta_ids": list(data.meta_ids),
            "metas_from": 0,
            "metas": metas_json(data.metas),
            "strings_from": 0,
            "strings": list(data.strings),
            "stacks_from": 0,
            "module_stacks": [[list(p) for p in st] for st in data.module_stacks],
            "exits_from": 0,
            "module_exits": [list(e) for e in data.module_exits],
        }
        text = json.dumps(head) + "\n" + json.dumps(chunk, separators=(",", ":")) + "\n"
        self.writer.append(JOURNAL_FILE, text.encode())

    # ------------------------------------------------------------------ arrivals (tensor hooks)
    def __call__(self, nid: int, raw: torch.Tensor | None, transformed: Any) -> None:
        """One stored gradient (`GradientStore._store`): write its raw and transformed values."""
        if nid not in self.known:
            return
        for kind, v in (("gradient", raw), ("transformed_gradient", transformed)):
            if v is None:
                continue
            old = self.blobs[kind].pop(nid, None)
            if old is not None:
                self.obsolete.append(old[0])
            reason = unsupported_reason(v)
            if reason is not None:
                self.skipped[(kind, nid)] = reason
                continue
            self.skipped.pop((kind, nid), None)
            try:
                self.blobs[kind][nid] = self._submit(v, nid, kind)
            except BaseException as e:
                self.abort(f"{type(e).__name__}: {e}")
                raise

    def _submit(self, t: torch.Tensor, nid: int, kind: str) -> tuple[int, str, tuple[int, ...], str]:
        bid = self.next_id
        self.next_id += 1
        device = str(t.device)
        meta = [("kind", kind), ("node", str(nid)), ("seq", str(self.seq)), ("device", device)]
        self.seq += 1
        dtype = dtype_name(t.dtype)
        with _paused():  # a backward during another capture: these torch calls are not the model's
            buf = tensor_bytes(t)
        self.writer.submit(bid, dtype, list(t.shape), meta, buf)
        return bid, dtype, tuple(t.shape), device

    def abort(self, reason: str) -> None:
        """A write failed: mark the temp directory PARTIAL; later gradients stay in memory only."""
        self.done = True
        store = None if self._store is None else self._store()
        if store is not None and store.sink is self:
            store.sink = None
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if self.tmp is not None:
                mark_partial(self.tmp, reason)

    # ------------------------------------------------------------------ finalization
    def entries(self, log: ModelLog) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """Wait for the writes; the gradients' manifest entries and `info.gradients` (sets
        `self.unsupported`). Superseded blobs are deleted (format 2: their bytes stay in the
        shard, unlisted)."""
        written = {bid: (n, sha, shard, off) for bid, n, sha, shard, off in self.writer.finish()}
        labels = log._col("labels_w_pass")
        pos_of = log._pos_of_nid()
        tensors: list[dict[str, Any]] = []
        maps: dict[str, list[list[int]]] = {k: [] for k in GRAD_KINDS}
        for kind in GRAD_KINDS:
            for nid, (bid, dtype, shape, dev) in sorted(self.blobs[kind].items()):
                tensors.append(written_entry(bid, labels[pos_of[nid]], dtype, shape, dev, written[bid], kind))
                maps[kind].append([nid, bid])
        for bid in self.obsolete:  # in format 2 their bytes stay in the shard, unlisted
            if bid in written and not written[bid][2]:
                os.remove(self.tmp / f"blobs/{bid:010d}.safetensors")  # type: ignore[operator]
        self.unsupported = [
            {"label": labels[pos_of[nid]], "kind": kind, "reason": reason}
            for (kind, nid), reason in sorted(self.skipped.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        ]
        self._written = (tensors, maps)
        return tensors, gradient_info(log, maps)

    def finalize(self, log: ModelLog) -> str:
        """Commit the bundle with every gradient received so far; returns its path. Later
        gradients stay in memory only."""
        if self.done:
            raise ValueError(f"the gradient bundle {self.target} was already finalized or aborted")
        store = log._grad_store
        if store is not None and store.sink is self:
            store.sink = None
        self.done = True
        try:
            if self.act is not None:
                self.act.commit(log, grads=self)
            else:
                tensors, info = self.entries(log)
                commit(
                    self.tmp,  # type: ignore[arg-type]
                    self.target,
                    log.model_name,
                    log._data,
                    info_of(log),
                    [],
                    tensors,
                    self.unsupported,
                    len(log),
                    gradients=info,
                )
        except BaseException as e:
            if self.tmp is not None:
                mark_partial(self.tmp, f"{type(e).__name__}: {e}")
            raise
        if not self.keep and store is not None:
            self._refs_instead_of_tensors(log, store)
        return str(self.target)

    def _refs_instead_of_tensors(self, log: ModelLog, store: Any) -> None:
        """`keep_gradients_in_memory=False`: entries read their gradients from the committed bundle."""
        tensors, maps = self._written
        resolved = str(self.target.resolve())
        by_id = {t["blob_id"]: t for t in tensors}
        for nid, bid in maps["gradient"]:
            log._lazy_grads[nid] = make_ref(by_id[bid], resolved)
            store.grads.pop(nid, None)
        if maps["transformed_gradient"]:
            lazy = LazyTensorDict("cpu")
            dict.update(lazy, store.transformed)
            for nid, bid in maps["transformed_gradient"]:
                dict.__setitem__(lazy, nid, make_ref(by_id[bid], resolved))
            store.transformed = lazy


def finalize_gradient_bundle(log: ModelLog) -> str:
    """Commit the bundle that `save_gradients_to` streams this log's gradients to; returns its path.

    Raises:
        ValueError: The log has no gradient bundle waiting to be committed.
    """
    store = log._grad_store
    sink = None if store is None else store.sink
    if not isinstance(sink, GradientStream):
        raise ValueError(
            "This log has no gradient bundle waiting to be finalized: pass save_gradients_to= to "
            "log_forward_pass (the bundle is committed once, after the first recorded backward or this call)."
        )
    return sink.finalize(log)
