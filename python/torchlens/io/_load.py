"""Reading bundles: `load`. The core validates the directory, the manifest, the metadata and the
version policy (`_core.bundle_load`); this module maps the result to a `ModelLog` and reads the
activations (eagerly, or lazily through `LazyActivationRef`).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .._errors import TorchLensIOError
from .._native import core as _core
from ..log import conditionals
from ..log.model_log import ModelLog
from ._grads import restore as restore_gradients
from ._refs import LazyActivationRef, LazyTensorDict
from ._save import IO_THREADS
from ._schema import build_log, capture_from_plain

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
        A `ModelLog` that prints, indexes and renders like the original.

    Raises:
        TorchLensIOError: Missing, incomplete, truncated, corrupted, hostile or incompatible bundle.
    """
    target = Path(os.fspath(path))
    if not target.exists() and not target.is_symlink():
        inc = incomplete_siblings(target)
        if inc:
            raise TorchLensIOError(
                f"No bundle at {target}, but an incomplete capture was found at {inc[-1]} (interrupted or failed "
                f"streaming); call torchlens.recover_bundle({str(target)!r}) to turn what was written into a bundle"
            )
        raise TorchLensIOError(f"No bundle at {target}")
    manifest, meta, extra, notices = _core.bundle_load(str(target), torch.__version__)
    for category, message in notices:
        warnings.warn(message, _NOTICE_CATEGORIES[category], stacklevel=2)
    if extra:
        warnings.warn(
            f"bundle {target} has unexpected files in blobs/: {', '.join(extra[:10])}", UserWarning, stacklevel=2
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
        _read_all([(log._lazy, log._saved), (transformed, transformed), *grads], map_location)
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
    )


def _read_all(pairs: list[tuple[dict[int, Any], dict[int, Any]]], map_location: Any) -> None:
    """Materialize every referenced blob once, on a few threads (the reads release the GIL).

    Each pair is (node id -> ref, where the tensors go); the refs are removed when the two differ."""
    unique = {ref.blob_id: ref for refs, _ in pairs for ref in dict.values(refs)}

    def read(ref: LazyActivationRef) -> torch.Tensor:
        try:
            return ref.materialize(map_location)
        except TorchLensIOError as e:
            if "checksum mismatch" in str(e):
                raise TorchLensIOError(f"Checksum mismatch for blob_id={ref.blob_id}") from None
            raise

    refs_sorted = sorted(unique.values(), key=lambda r: r.blob_id)
    with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
        loaded = dict(zip([r.blob_id for r in refs_sorted], pool.map(read, refs_sorted), strict=True))
    for refs, dest in pairs:
        for nid, ref in list(dict.items(refs)):
            dict.__setitem__(dest, nid, loaded[ref.blob_id])
        if refs is not dest:
            refs.clear()
