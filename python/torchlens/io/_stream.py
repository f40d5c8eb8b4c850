"""Streaming capture: each saved tensor goes to a temp bundle directory while the forward pass
runs (the core's writer threads), with a journal of the capture metadata for crash recovery.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .._capture.hot import paused as _paused
from .._errors import TorchLensIOError
from .._native import core as _core
from ..log.model_log import ModelLog
from ._load import make_ref
from ._refs import LazyActivationRef, dtype_name, tensor_bytes, unsupported_reason
from ._save import IO_THREADS, check_target, commit, entry, info_of, mark_partial, tmp_name
from ._schema import json_safe, metas_json, param_json, records_json

# Bytes of streamed tensors that may wait for the writer thread before the forward pass blocks.
STREAM_QUEUE_BYTES = 128 << 20
JOURNAL_EVERY = 64
JOURNAL_FILE = "journal.jsonl"


class StreamSink:
    """Receives each saved tensor during capture and streams it to a temp bundle directory."""

    def __init__(self, target: str | os.PathLike, keep: bool, model_name: str, info: dict[str, Any]) -> None:
        self.target = Path(os.fspath(target))
        check_target(self.target)
        self.tmp = tmp_name(self.target)
        (self.tmp / "blobs").mkdir(parents=True)
        self.keep = keep
        self.writer = _core.StreamWriter(str(self.tmp), STREAM_QUEUE_BYTES, IO_THREADS)
        self.nodes: dict[int, tuple[str, tuple[int, ...], str]] = {}
        self._session: Any = None
        self._offsets = [0, 0, 0, 0, 0]
        self._jnext = 0
        self.model_name = model_name
        self.info = info

    def __call__(self, session: Any, t: torch.Tensor, nid: int) -> None:
        if session is not self._session:
            self._start(session)
        reason = unsupported_reason(t)
        if reason is not None:
            raise TorchLensIOError(f"Unsupported tensor for streaming at node {nid} (activation): {reason}")
        dtype = dtype_name(t.dtype)
        shape = tuple(t.shape)
        device = str(t.device)
        meta = [("kind", "activation"), ("node", str(nid)), ("device", device)]
        with _paused():  # the torch calls below must not be recorded
            buf = tensor_bytes(t)
        self.writer.submit(nid + 1, dtype, list(shape), meta, buf)
        self.nodes[nid] = (dtype, shape, device)
        if nid >= self._jnext:
            self.journal(session)
            self._jnext = nid + JOURNAL_EVERY

    def _start(self, session: Any) -> None:
        self._session = session
        self._offsets = [0, 0, 0, 0, 0]
        self.nodes.clear()
        modules: dict[str, str] = {}
        prep = session.prepared
        plan = getattr(prep, "plan", None)
        if plan is not None:
            for i, m in enumerate(plan.modules):
                modules[plan.addresses[id(m)]] = plan.module_types[i]
        params = [
            param_json(addr, p.shape, p.dtype, p.numel(), p.numel() * p.element_size(), bool(p.requires_grad))
            for addr, p in session.params
        ]
        head = {
            "header": 1,
            "model_name": self.model_name,
            "info": json_safe(self.info),
            "modules": modules,
            "params": params,
        }
        self.writer.append(JOURNAL_FILE, (json.dumps(head) + "\n").encode())

    def journal(self, session: Any) -> None:
        """Append the capture metadata recorded since the last call (for crash recovery)."""
        from .._capture.strings import STRINGS

        o = self._offsets
        recs = session.records
        chunk = {
            "records_from": o[0],
            "records": records_json(recs[o[0] :]),
            "meta_ids": list(session.meta_ids[o[0] :]),
            "metas_from": o[1],
            "metas": metas_json(session.metas[o[1] :]),
            "strings_from": o[2],
            "strings": STRINGS[o[2] :],
            "stacks_from": o[3],
            "module_stacks": [[list(p) for p in st] for st in session.module_stacks[o[3] :]],
            "exits_from": o[4],
            "module_exits": [list(e) for e in session.module_exits[o[4] :]],
        }
        self._offsets = [
            len(recs),
            len(session.metas),
            len(STRINGS),
            len(session.module_stacks),
            len(session.module_exits),
        ]
        self.writer.append(JOURNAL_FILE, (json.dumps(chunk, separators=(",", ":")) + "\n").encode())

    def abort(self, reason: str) -> None:
        try:
            self.writer.close()
        finally:
            mark_partial(self.tmp, reason)

    def commit(self, log: ModelLog) -> None:
        """Write metadata and manifest for the finished capture and rename the bundle into place."""
        try:
            written = {bid: (n, sha) for bid, n, sha in self.writer.finish()}
            labels = log._col("labels_w_pass")
            n_rec = log._n_records
            tensors = []
            activations = []
            for pos, nid in enumerate(log._node_ids):
                src = nid if nid < n_rec else log._data.outputs[nid - n_rec][0]
                if src in self.nodes and (src + 1) in written:
                    activations.append([nid, src + 1])
                    if nid == src:
                        dtype, shape, dev = self.nodes[src]
                        n, sha = written[src + 1]
                        tensors.append(entry(src + 1, labels[pos], dtype, shape, dev, n, sha))
            listed = {t["blob_id"] for t in tensors}
            for bid in list(written):
                if bid not in listed:  # a saved node removed as an orphan: not part of the bundle
                    os.remove(self.tmp / f"blobs/{bid:010d}.safetensors")
            commit(self.tmp, self.target, log.model_name, log._data, info_of(log), activations, tensors, [], len(log))
        except BaseException as e:
            mark_partial(self.tmp, f"{type(e).__name__}: {e}")
            raise
        if not self.keep:
            resolved = str(self.target.resolve())
            by_id = {t["blob_id"]: t for t in tensors}
            refs: dict[int, LazyActivationRef] = {}
            for nid, bid in activations:
                ref = refs.get(bid)
                if ref is None:
                    ref = refs[bid] = make_ref(by_id[bid], resolved)
                log._lazy[nid] = ref
                log._saved.pop(nid, None)
