"""`torchlens.fastlog`: predicate-selected activation recording at near-forward speed (spec §10).

keep_op = lambda ctx: ctx.kind == "op" and ctx.layer_type == "relu"
recording = tl.fastlog.record(model, x, keep_op=keep_op)
print(recording.summary())
"""

from __future__ import annotations

from .._options import StreamingOptions
from ._dry_run import RecordingTrace, dry_run
from ._recorder import Recorder, RecordingOptions, record
from ._recording import Recording, load, recover
from ._storage import cleanup_partial, read_blob
from ._types import (
    ActivationRecord,
    BundleNotFinalizedError,
    CaptureSpec,
    ModuleStackFrame,
    PredicateError,
    PredicateFailure,
    RecordContext,
    RecordContextFieldError,
    RecorderStateError,
    RecordingConfigError,
    RecoveryError,
    TrainingModeConfigError,
)

__all__ = [
    "ActivationRecord",
    "BundleNotFinalizedError",
    "CaptureSpec",
    "ModuleStackFrame",
    "PredicateError",
    "PredicateFailure",
    "RecordContext",
    "RecordContextFieldError",
    "Recorder",
    "RecorderStateError",
    "Recording",
    "RecordingConfigError",
    "RecordingOptions",
    "RecordingTrace",
    "RecoveryError",
    "StreamingOptions",
    "TrainingModeConfigError",
    "cleanup_partial",
    "dry_run",
    "load",
    "read_blob",
    "record",
    "recover",
]
