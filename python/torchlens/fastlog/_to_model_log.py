"""`Recording.to_model_log`: a `ModelLog` of one recorded pass with the kept payloads as activations.

The graph comes from one metadata-only `log_forward_pass` of the same model and input (buffers and
RNG states restored afterwards, so the model is left as found). Each kept tensor record is matched
to its node through the fastlog events rebuilt from that log (`_preview_events`: same raw label,
layer type and shape); its payload becomes the node's saved activation (and its transformed
payload the node's transformed activation). A record that matches no event means the model
computed a different graph for this input: `ValueError`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..log.build import metadata_log
from ._preview_events import rebuild_events
from ._state import model_state_kept
from ._storage import read_blob


def _payloads(recording: Any, rec: Any) -> tuple[Tensor | None, Tensor | None]:
    """(activation, transformed activation) of a record: RAM, loaded disk payloads, or read from its blob."""
    act = rec.ram_payload if rec.ram_payload is not None else rec.disk_payload
    tr = rec.transformed_ram_payload if rec.transformed_ram_payload is not None else rec.transformed_disk_payload
    rel = (rec.metadata or {}).get("relative_path") if isinstance(rec.metadata, dict) else None
    if (act is None or tr is None) and rel and recording.bundle_path:
        blob = read_blob(Path(recording.bundle_path) / rel)
        label = rec.ctx.label
        for key, t in blob.items():
            if key.endswith("::activation") and act is None and key.rsplit("::", 1)[0] in (label, rec.ctx.raw_label):
                act = t
            elif key.endswith("::transformed_activation") and tr is None:
                tr = t
    return act, tr


def _metadata_log(model: nn.Module, input_args: Any, input_kwargs: dict | None) -> Any:
    with model_state_kept(model):
        return metadata_log(model, input_args, input_kwargs)


def recording_to_model_log(
    recording: Any,
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    *,
    pass_index: int = 1,
) -> Any:
    """A `ModelLog` of `model` on the input of recorded pass `pass_index`, its kept payloads as activations."""
    if pass_index not in recording.by_pass:
        raise ValueError(f"to_model_log: the recording has no pass {pass_index} (passes: {sorted(recording.by_pass)})")
    log = _metadata_log(model, input_args, input_kwargs)
    events = {pe.raw_label: pe for pe in rebuild_events(log) if pe.kind not in ("module_enter", "module_exit")}
    orphans: list[str] = []
    for i in recording.by_pass[pass_index]:
        rec = recording.records[i]
        ctx = rec.ctx
        if ctx.kind in ("module_enter", "module_exit"):
            continue
        raw = ctx.raw_label
        pe = events.get(raw)
        shape = ctx.tensor_shape
        if (
            pe is None
            or pe.ev[3] != ctx.layer_type
            or (pe.entry is not None and shape is not None and tuple(pe.entry.tensor_shape or ()) != tuple(shape))
        ):
            got = "nothing" if pe is None else f"{pe.ev[3]} {tuple(pe.entry.tensor_shape or ()) if pe.entry else ''}"
            raise ValueError(
                f"to_model_log: recorded {raw} ({ctx.layer_type}, shape {shape}) does not match the graph "
                f"log_forward_pass computes for this model and input ({raw} there: {got}); pass the model and "
                "the input of the recorded pass"
            )
        if pe.entry is None:
            orphans.append(raw)
            continue
        act, tr = _payloads(recording, rec)
        nid = log._node_ids[pe.entry._pos]
        if isinstance(act, Tensor):
            log._saved[nid] = act
        if isinstance(tr, Tensor):
            log._transformed[nid] = tr
    if orphans:
        warnings.warn(
            f"to_model_log: {len(orphans)} kept record(s) have no node in the log (tensors log_forward_pass "
            f"removes as orphans, e.g. {orphans[0]}); they are not attached",
            RuntimeWarning,
            stacklevel=3,
        )
    return log
