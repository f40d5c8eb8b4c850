"""Portable bundles: `save`, `load`, `recover_bundle`, `cleanup_tmp` and streaming capture.

The format is specified in `docs/bundle-format.md`. Nothing here unpickles or executes stored
content: metadata is JSON, tensors are single-tensor safetensors files, and the Rust core
(`torchlens._core`) validates the manifest and the metadata, checks sizes and checksums and does
all file I/O.

* `_save`: `save` and the commit shared by every writer.
* `_load`: `load`.
* `_stream`: `StreamSink`, the streaming writer used during capture.
* `_callback`: `CallbackSink`, streaming to a user callable (`activation_callback`).
* `_grad_stream`: `GradientStream`, gradients streamed to a bundle (`save_gradients_to`), and
  `finalize_gradient_bundle`.
* `_grads`: gradients in bundles (`info.gradients`, restoring them on load).
* `_recover`: `recover_bundle`, `cleanup_tmp`.
* `_refs`: `LazyActivationRef`, reading a blob, which tensors a blob can hold.
* `_schema`: `CaptureData` <-> `metadata.json`.
"""

from __future__ import annotations

from .._errors import TorchLensIOError
from ._callback import CallbackSink
from ._grad_stream import GradientStream, finalize_gradient_bundle
from ._load import load
from ._recover import cleanup_tmp, recover_bundle
from ._refs import LazyActivationRef
from ._save import save
from ._stream import StreamSink

__all__ = [
    "CallbackSink",
    "GradientStream",
    "LazyActivationRef",
    "StreamSink",
    "TorchLensIOError",
    "cleanup_tmp",
    "finalize_gradient_bundle",
    "load",
    "recover_bundle",
    "save",
]
