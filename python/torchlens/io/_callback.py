"""Streaming to a user callable: `StreamingOptions(activation_callback=...)` (deprecated flat form
`activation_sink=...`), spec §8.5.

The callback is called as `callback(label, tensor)` for every saved raw activation, in capture
order, as soon as the op has run. `tensor` is the saved copy (a clone, detached with
`detach_saved_tensors=True`, on `output_device` when one is set), the same object the log keeps as
that entry's `activation` when activations are retained. `label` is the raw label
(`"linear_1_2_raw"`; `"input_1_raw"`, `"buffer_1_raw"`) during a single exhaustive pass and the
pass-qualified final label (`"linear_1_1:1"`) during the saving pass of a layer selection. The
callback runs with logging paused (its torch calls are not recorded); an exception it raises
aborts the capture and propagates unchanged.
"""

from __future__ import annotations

from array import array
from typing import Any

import torch

from .._capture.hot import paused as _paused
from .._capture.hot import raw_clone as _raw_clone
from .._capture.hot import raw_detach as _raw_detach
from .._capture.strings import STRINGS
from .._data import F_KIND, F_LAYER_TYPE, raw_label, raw_type_counts


def raw_label_now(records: Any, nid: int) -> str:
    """The 2.15 raw label of node `nid` of a capture in progress (spec §5.2)."""
    return _format_raw(records[nid], raw_type_counts(records[: nid + 1])[nid], nid)


def _format_raw(rec: Any, typenum: int, nid: int) -> str:
    return raw_label(STRINGS[rec[F_LAYER_TYPE]], rec[F_KIND], typenum, nid + 1)


class CallbackSink:
    """The capture sink that hands each saved activation to a user callback (see the module doc)."""

    # The session must not keep its own reference to the op output: this sink stores its copy in
    # `session.saved` itself (when `retain`), so that the log and the callback share one tensor.
    keep = False
    # Only bundle streaming counts as "streaming" in a postfunc error message (as in 2.15).
    streaming_active = False

    def __init__(self, callback: Any, retain: bool, output_device: str = "same") -> None:
        if not callable(callback):
            raise TypeError(f"activation_callback must be callable, not {type(callback).__name__}.")
        self.callback = callback
        self.retain = retain
        self.device = None if output_device == "same" else torch.device(output_device)
        self.final_labels: dict[int, str] | None = None
        self._session: Any = None
        self._typenum = array("q")
        self._counts: dict[int, int] = {}

    def replay_labels(self, labels: dict[int, str]) -> None:
        """From now on, label node ids with these final labels (the saving pass of a selection)."""
        self.final_labels = labels

    def __call__(self, session: Any, t: torch.Tensor, nid: int) -> None:
        c = _raw_clone(t)
        if session.detach:
            c = _raw_detach(c)
        self._deliver(session, c, nid)

    def post(self, session: Any, raw: torch.Tensor | None, transformed: Any, nid: int) -> None:
        """A save with an activation postfunc: the callback gets the raw copy (none when it is not kept)."""
        if raw is not None:
            self._deliver(session, raw, nid)
        elif not self.retain:
            session.transformed.pop(nid, None)

    def _deliver(self, session: Any, c: torch.Tensor, nid: int) -> None:
        if self.device is not None and c.device != self.device:
            with _paused():
                c = c.to(self.device)
        if self.retain:
            session.saved[nid] = c
        else:
            session.saved.pop(nid, None)
            session.transformed.pop(nid, None)
        label = self._label(session, nid)
        with _paused():
            self.callback(label, c)

    def _label(self, session: Any, nid: int) -> str:
        final = self.final_labels
        if final is not None and nid in final:
            return final[nid]
        if session is not self._session:  # a new capture (e.g. the retry with copies)
            self._session = session
            self._typenum = array("q")
            self._counts = {}
        recs = session.records
        typenum, counts = self._typenum, self._counts
        for i in range(len(typenum), nid + 1):
            tid = recs[i][F_LAYER_TYPE]
            n = counts[tid] = counts.get(tid, 0) + 1
            typenum.append(n)
        return _format_raw(recs[nid], typenum[nid], nid)

    def abort(self, reason: str) -> None:
        """The capture failed: nothing to clean up (the callback has seen what was captured)."""

    def commit(self, log: Any) -> None:
        """The capture finished: nothing to write."""
