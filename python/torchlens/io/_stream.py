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
from . import _shards
from ._callback import raw_label_now
from ._load import make_ref
from ._ranks import finish_shard
from ._refs import LazyActivationRef, LazyTensorDict, dtype_name, tensor_bytes, unsupported_reason
from ._save import IO_THREADS, check_target, commit, info_of, mark_partial, tmp_name, written_entry
from ._schema import json_safe, metas_json, param_json, records_json

# Bytes of streamed tensors that may wait for the writer thread before the forward pass blocks.
STREAM_QUEUE_BYTES = 128 << 20
JOURNAL_EVERY = 64
JOURNAL_FILE = "journal.jsonl"


class StreamSink:
    """Receives each saved tensor during capture and streams it to a temp bundle directory."""

    # A postfunc error message says whether bundle streaming was on (`Session._save_post`).
    streaming_active = True

    def __init__(
        self, target: str | os.PathLike, keep: bool, model_name: str, info: dict[str, Any], postfunc: bool = False
    ) -> None:
        self.target = Path(os.fspath(target))
        check_target(self.target)
        self.tmp = tmp_name(self.target)
        _shards.make_dirs(self.tmp)
        self.keep = keep
        self.writer = _core.StreamWriter(
            str(self.tmp), STREAM_QUEUE_BYTES, IO_THREADS, _shards.stream_shard_bytes(self.tmp)
        )
        self.nodes: dict[int, tuple[str, tuple[int, ...], str]] = {}
        # Node id -> (dtype, shape, device) of its activation_postfunc output (`post`).
        self.tnodes: dict[int, tuple[str, tuple[int, ...], str]] = {}
        # Blob ids: node + 1, or with a postfunc 2 * node + 1 (raw) and 2 * node + 2 (transformed).
        self.stride = 2 if postfunc else 1
        self._session: Any = None
        self._offsets = [0, 0, 0, 0, 0]
        self._jnext = 0
        self.model_name = model_name
        self.info = info
        # Set by `seal`: (manifest entries, metadata maps) of the activations written.
        self.sealed: tuple[list[dict[str, Any]], dict[str, list[list[int]]]] | None = None

    def __call__(self, session: Any, t: torch.Tensor, nid: int) -> None:
        if session is not self._session:
            self._start(session)
        self.nodes[nid] = self._submit(t, nid, nid * self.stride + 1, "activation")
        self._journal_due(session, nid)

    def post(self, session: Any, raw: torch.Tensor | None, transformed: Any, nid: int) -> None:
        """A save with an activation postfunc: stream the raw copy (when kept) and the postfunc's output."""
        if session is not self._session:
            self._start(session)
        if not isinstance(transformed, torch.Tensor):
            raise TorchLensIOError(
                "Streaming save requires activation_postfunc outputs to be torch.Tensor instances, but layer "
                f"{raw_label_now(session.records, nid)} produced {type(transformed).__name__}."
            )
        if raw is not None:
            self.nodes[nid] = self._submit(raw, nid, nid * self.stride + 1, "activation")
        self.tnodes[nid] = self._submit(transformed, nid, nid * self.stride + 2, "transformed_activation")
        if not self.keep:
            session.saved.pop(nid, None)
            session.transformed.pop(nid, None)
        self._journal_due(session, nid)

    def streamed(self, nid: int) -> bool:
        """Whether node `nid`'s value (raw or transformed) went to the bundle."""
        return nid in self.nodes or nid in self.tnodes

    def stream_output(self, session: Any, raw: torch.Tensor | None, transformed: Any, nid: int) -> None:
        """An output node's own value (its producer's went stale) when nothing is kept in memory."""
        if transformed is None:
            if raw is not None:
                self.nodes[nid] = self._submit(raw, nid, nid * self.stride + 1, "activation")
        else:
            self.post(session, raw, transformed, nid)

    def _submit(self, t: torch.Tensor, nid: int, blob_id: int, kind: str) -> tuple[str, tuple[int, ...], str]:
        reason = unsupported_reason(t)
        if reason is not None:
            raise TorchLensIOError(f"Unsupported tensor for streaming at node {nid} ({kind}): {reason}")
        dtype = dtype_name(t.dtype)
        shape = tuple(t.shape)
        device = str(t.device)
        meta = [("kind", kind), ("node", str(nid)), ("device", device)]
        with _paused():  # the torch calls below must not be recorded
            buf = tensor_bytes(t)
        self.writer.submit(blob_id, dtype, list(shape), meta, buf)
        return dtype, shape, device

    def _journal_due(self, session: Any, nid: int) -> None:
        if nid >= self._jnext:
            self.journal(session)
            self._jnext = nid + JOURNAL_EVERY

    def replay_labels(self, labels: dict[int, str]) -> None:
        """Bundles label blobs with the final labels at commit; nothing to do before the saving pass."""

    def _start(self, session: Any) -> None:
        self._session = session
        # A retried capture starts the journal over (new header, chunks from offset 0).
        self._offsets = [0, 0, 0, 0, 0]
        self._jnext = 0
        self.nodes.clear()
        self.tnodes.clear()
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

    def seal(self, log: ModelLog, deferred: bool = False) -> None:
        """Finish the activation writes of the finished capture and list them (`self.sealed`:
        manifest entries and metadata maps); blobs of nodes removed as orphans are deleted.
        `deferred`: the commit waits for streamed gradients, so the journal gets the capture's
        last nodes too and, with `retain_in_memory=False`, the entries' refs point into the
        temp directory meanwhile."""
        try:
            n_rec = log._n_records
            self._own_output_values(log, n_rec)
            if deferred and self._session is not None:
                self.journal(self._session)
            written = {bid: (n, sha, shard, off) for bid, n, sha, shard, off in self.writer.finish()}
            labels = log._col("labels_w_pass")
            tensors = []
            maps: dict[str, list[list[int]]] = {"activation": [], "transformed_activation": []}
            kinds = (("activation", self.nodes, 1), ("transformed_activation", self.tnodes, 2))
            for pos, nid in enumerate(log._node_ids):
                own = nid < n_rec or nid in self.nodes or nid in self.tnodes
                src = nid if own else log._data.outputs[nid - n_rec][0]
                for kind, nodes, k in kinds:
                    bid = src * self.stride + k
                    if src in nodes and bid in written:
                        maps[kind].append([nid, bid])  # an output shares its producer's blob
                        if nid == src:
                            dtype, shape, dev = nodes[src]
                            tensors.append(written_entry(bid, labels[pos], dtype, shape, dev, written[bid], kind))
            listed = {t["blob_id"] for t in tensors}
            for bid in list(written):
                # A saved node removed as an orphan is not part of the bundle (in format 2 its
                # bytes stay in the shard, unlisted).
                if bid not in listed and not written[bid][2]:
                    os.remove(self.tmp / f"blobs/{bid:010d}.safetensors")
        except BaseException as e:
            mark_partial(self.tmp, f"{type(e).__name__}: {e}")
            raise
        self.sealed = (tensors, maps)
        if deferred and not self.keep:
            self._refs_instead_of_tensors(log, tensors, maps, self.tmp)

    def commit(self, log: ModelLog, grads: Any = None) -> None:
        """Write metadata and manifest for the finished capture and rename the bundle into place.

        `grads` (a deferred commit, see `_grad_stream.GradientStream`) adds the streamed
        gradients: `grads.entries(log)` gives their manifest entries and `info.gradients`."""
        if self.sealed is None:
            self.seal(log)
        tensors, maps = self.sealed
        try:
            grad_tensors, grad_info = grads.entries(log) if grads is not None else ([], None)
            commit(
                self.tmp,
                self.target,
                log.model_name,
                log._data,
                info_of(log),
                maps["activation"],
                [*tensors, *grad_tensors],
                [] if grads is None else grads.unsupported,
                len(log),
                transformed=maps["transformed_activation"],
                gradients=grad_info,
            )
        except BaseException as e:
            mark_partial(self.tmp, f"{type(e).__name__}: {e}")
            raise
        if not self.keep:
            self._refs_instead_of_tensors(log, tensors, maps, self.target)
        finish_shard(self.target, "bundle")  # under torch.distributed: barrier, rank 0 writes ranks.json

    def _own_output_values(self, log: ModelLog, n_rec: int) -> None:
        """An output whose producer's value went stale (written through a view before the return)
        holds the returned tensor itself: stream it as the output's own blob."""
        for k, out in enumerate(log._data.outputs):
            nid, src = n_rec + k, out[0]
            for store, nodes, j, kind in (
                (log._saved, self.nodes, 1, "activation"),
                (log._transformed, self.tnodes, 2, "transformed_activation"),
            ):
                v = store.get(nid)
                if isinstance(v, torch.Tensor) and v is not store.get(src):
                    nodes[nid] = self._submit(v, nid, nid * self.stride + j, kind)

    def _refs_instead_of_tensors(
        self, log: ModelLog, tensors: list[dict[str, Any]], maps: dict[str, list[list[int]]], where: Path
    ) -> None:
        """`retain_in_memory=False`: entries get lazy references into the bundle directory `where`."""
        resolved = str(where.resolve())
        by_id = {t["blob_id"]: t for t in tensors}
        refs: dict[int, LazyActivationRef] = {}
        for nid, bid in maps["activation"]:
            ref = refs.get(bid)
            if ref is None:
                ref = refs[bid] = make_ref(by_id[bid], resolved)
            log._lazy[nid] = ref
            log._saved.pop(nid, None)
        if maps["transformed_activation"]:
            transformed = LazyTensorDict("cpu")  # read on first access, like a lazy load
            for nid, bid in maps["transformed_activation"]:
                ref = refs.get(bid)
                if ref is None:
                    ref = refs[bid] = make_ref(by_id[bid], resolved)
                transformed[nid] = ref
            log._transformed = transformed
