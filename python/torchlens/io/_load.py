"""Reading bundles: `load`. The core validates the directory, the manifest, the metadata and the
version policy (`_core.bundle_load`); this module maps the result to a `ModelLog` and reads the
activations (eagerly, or lazily through `LazyActivationRef`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .._errors import TorchLensIOError
from .._native import core as _core
from ..log import conditionals
from ..log.model_log import ModelLog
from ._grads import restore as restore_gradients
from ._ranks import is_rank_sharded
from ._refs import LazyActivationRef, LazyTensorDict
from ._save import IO_THREADS
from ._schema import build_log, capture_from_plain
from ._shards import read_shards

_NOTICE_CATEGORIES: dict[str, type[Warning]] = {"warning": UserWarning, "deprecation": DeprecationWarning}


def incomplete_siblings(target: Path) -> list[Path]:
    """The `{name}.tmp.*` directories next to `target`, oldest first."""
    parent = target.parent if str(target.parent) else Path(".")
    try:
        cands = [p for p in parent.glob(f"{target.name}.tmp.*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(cands, key=lambda p: p.stat().st_mtime)


def load(
    path: str | os.PathLike,
    *,
    lazy: bool = False,
    map_location: Any = "cpu",
    materialize_nested: bool = True,
) -> ModelLog:
    """Load a bundle written by `save` or by a streamed capture, without the model.

    Args:
        path: The bundle directory.
        lazy: Read only the manifest and metadata; activations are read by
            `entry.materialize_activation()` (until then `activation` is None), gradients on
            first access (`entry.gradient_ref` names the blob until then).
        map_location: Device for the loaded tensors.
        materialize_nested: Accepted for compatibility (bundles hold no nested tensors).

    Returns:
        A `ModelLog` that prints, indexes and renders like the original; for the bundle path of a
        `torch.distributed` capture (rank shards `rank_*/{name}` beside it), a lazy `ShardedLogs`
        over the ranks' logs (docs/scaling.md).

    Raises:
        TorchLensIOError: Missing, incomplete, truncated, corrupted, hostile or incompatible bundle.
    """
    target = Path(os.fspath(path))
    if is_rank_sharded(target):  # the bundle_path of a torch.distributed capture: one view over its rank shards
        from ._rank_logs import open_sharded_logs

        return open_sharded_logs(target, load, lazy=lazy, map_location=map_location)  # type: ignore[return-value]
    if not target.exists() and not target.is_symlink():
        inc = incomplete_siblings(target)
        if inc:
            raise TorchLensIOError(
                f"No bundle at {target}, but an incomplete capture was found at {inc[-1]} (interrupted or failed "
                f"streaming); call torchlens.recover_bundle({str(target)!r}) to turn what was written into a bundle"
            )
        raise TorchLensIOError(f"No bundle at {target}")
    with _gc_paused():  # thousands of fresh acyclic objects: collections would only cost time
        return _load(target, lazy, map_location)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (as it was before afterwards)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _load(target: Path, lazy: bool, map_location: Any) -> ModelLog:
    manifest, meta, extra, notices = _core.bundle_load(str(target), torch.__version__)
    for category, message in notices:
        warnings.warn(message, _NOTICE_CATEGORIES[category], stacklevel=3)
    if extra:
        where = "shards/" if manifest["io_format_version"] >= 2 else "blobs/"
        warnings.warn(
            f"bundle {target} has unexpected files in {where}: {', '.join(extra[:10])}", UserWarning, stacklevel=3
        )
    data = capture_from_plain(meta["capture"], meta["extras"])
    log = build_log(meta["model_name"], data, meta["info"])
    if meta["info"].get("conditionals"):
        try:
            conditionals.restore(log, meta["info"]["conditionals"])
        except (KeyError, TypeError, ValueError) as e:
            raise TorchLensIOError(f"invalid bundle metadata: conditionals ({type(e).__name__}: {e})") from e
    if len(log) != manifest["n_layers"]:
        raise TorchLensIOError(
            f"invalid bundle: manifest says {manifest['n_layers']} layers, metadata gives {len(log)}"
        )
    by_id = {t["blob_id"]: t for t in manifest["tensors"]}
    known = set(log._node_ids)
    refs: dict[int, LazyActivationRef] = {}
    transformed = LazyTensorDict(map_location)
    resolved = str(target.resolve())
    for pairs, dest in ((meta["activations"], log._lazy), (meta["transformed"], transformed)):
        for nid, bid in pairs:
            if nid not in known:
                raise TorchLensIOError(f"invalid bundle metadata: activation for unknown node {nid}")
            ref = refs.get(bid)
            if ref is None:
                ref = refs[bid] = make_ref(by_id[bid], resolved)
            dest[nid] = ref
    if transformed:
        log._transformed = transformed
    grads = restore_gradients(log, meta["info"], by_id, lambda t: make_ref(t, resolved), map_location)
    if not lazy:
        shards = {s["relative_path"]: (s["bytes"], s["data_start"]) for s in manifest["shards"]}
        _read_all([(log._lazy, log._saved), (transformed, transformed), *grads], map_location, shards)
    log._loaded_from_bundle = True
    log._bundle_path = str(target)
    return log


def make_ref(t: dict[str, Any], bundle_path: str) -> LazyActivationRef:
    """The lazy reference of one manifest tensor entry."""
    return LazyActivationRef(
        t["blob_id"],
        tuple(t["shape"]),
        t["dtype"],
        t["device_at_save"],
        bundle_path,
        t["relative_path"],
        t["kind"],
        t["sha256"],
        t.get("offset"),
    )


def _read_all(
    pairs: list[tuple[dict[int, Any], dict[int, Any]]], map_location: Any, shards: dict[str, tuple[int, int]]
) -> None:
    """Materialize every referenced tensor once (the reads release the GIL): format-2 tensors
    shard by shard, each shard in one sequential pass (`shards`: relative path -> (bytes,
    data_start)); format-1 blobs on a few threads.

    Each pair is (node id -> ref, where the tensors go); the refs are removed when the two differ."""
    unique = {ref.blob_id: ref for refs, _ in pairs for ref in dict.values(refs)}
    packed = [r for r in unique.values() if r.offset is not None]
    loaded = read_shards(packed, shards, map_location, IO_THREADS) if packed else {}
    unique = {k: r for k, r in unique.items() if r.offset is None}

    def read(ref: LazyActivationRef) -> torch.Tensor:
        try:
            return ref.materialize(map_location)
        except TorchLensIOError as e:
            if "checksum mismatch" in str(e):
                raise TorchLensIOError(f"Checksum mismatch for blob_id={ref.blob_id}") from None
            raise

    refs_sorted = sorted(unique.values(), key=lambda r: r.blob_id)
    if refs_sorted:
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            loaded.update(zip([r.blob_id for r in refs_sorted], pool.map(read, refs_sorted), strict=True))
    for refs, dest in pairs:
        for nid, ref in list(dict.items(refs)):
            dict.__setitem__(dest, nid, loaded[ref.blob_id])
        if refs is not dest:
            refs.clear()
