"""Portable bundles: `save`, `load`, `recover_bundle`, `cleanup_tmp` and streaming capture.

The format is specified in `docs/bundle-format.md`. Nothing here unpickles or executes stored
content: metadata is JSON, tensors are safetensors files (io format 2: packed into shards; format
1, still read: one file per tensor), and the Rust core
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
* `_ranks`: rank shards under `torch.distributed` (`rank_{RR}/{name}`, the `ranks.json` index);
  `_rank_logs`: `ShardedLogs`, what `load` returns for such a path (docs/scaling.md).
* `_refs`: `LazyActivationRef`, reading a blob or a shard range, which tensors a file can hold.
* `_shards`: io format 2, tensors packed into shard files (writing, eager reads, `WRITE_FORMAT`).
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
