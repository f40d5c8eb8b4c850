"""Writing bundles: `save`, and the commit (metadata, manifest, atomic rename) that streamed
captures and recovery share. New bundles use io format 2 (tensors packed into shards, `_shards`);
`_shards.WRITE_FORMAT = 1` writes the one-file-per-tensor layout of format 1.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .._data import CaptureData
from .._errors import TorchLensIOError
from .._native import core as _core
from ..log import conditionals
from ..log.model_log import ModelLog
from . import _shards
from ._grads import GRAD_KINDS, gradient_info, gradient_sources
from ._refs import LazyActivationRef, dtype_name, tensor_bytes, unsupported_reason
from ._schema import METADATA_SCHEMA, METADATA_VERSION, data_to_json, extras_to_json, json_safe

# Threads used by `save` and eager `load` (file work runs in Rust without the GIL).
IO_THREADS = min(4, os.cpu_count() or 1)

_ACT_KINDS = ("activation", "transformed_activation")


def _versions(fmt: int) -> dict[str, Any]:
    return {
        "io_format_version": fmt,
        "torchlens_version": _core.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle_format": "directory",
    }


def tmp_name(target: Path) -> Path:
    return target.with_name(f"{target.name}.tmp.{uuid.uuid4().hex}")


def mark_partial(tmp: Path, reason: str) -> None:
    try:
        (tmp / "PARTIAL").write_text("")
        (tmp / "REASON.txt").write_text(reason + "\n")
    except OSError:
        pass


def check_target(target: Path) -> None:
    _core.refuse_symlink(str(target), "bundle target")
    if target.exists():
        raise TorchLensIOError(f"Bundle path already exists: {target}")


def commit(
    tmp: Path,
    target: Path,
    model_name: str,
    data: CaptureData,
    info: dict[str, Any],
    activations: list[list[int]],
    tensors: list[dict[str, Any]],
    unsupported: list[dict[str, str]],
    n_layers: int,
    transformed: list[list[int]] | None = None,
    gradients: dict[str, Any] | None = None,
) -> None:
    """Write `metadata.json`, then the manifest (validated by the core, written last) and rename.

    `gradients` is the `info.gradients` object (`_grads.gradient_info`), None for none."""
    if gradients is not None:
        info = {**info, "gradients": gradients}
    meta = {
        "schema": METADATA_SCHEMA,
        "version": METADATA_VERSION,
        "model_name": model_name,
        "info": json_safe(info),
        "capture": data_to_json(data),
        "extras": extras_to_json(data),
        "activations": activations,
        "transformed": transformed or [],
    }
    nbytes, sha = _core.write_file(str(tmp / "metadata.json"), json.dumps(meta, separators=(",", ":")).encode())
    tensors = sorted(tensors, key=lambda e: e["blob_id"])
    shards = _shards.manifest_shards(tmp)  # None: format 1 (one file per tensor)
    manifest = {
        **_versions(1 if shards is None else 2),
        "n_layers": n_layers,
        "n_activation_blobs": sum(1 for t in tensors if t["kind"] in _ACT_KINDS),
        "n_gradient_blobs": sum(1 for t in tensors if t["kind"] in GRAD_KINDS),
        "n_auxiliary_blobs": sum(1 for t in tensors if t["kind"] not in _ACT_KINDS + GRAD_KINDS),
        "metadata": {"relative_path": "metadata.json", "format": "json", "bytes": nbytes, "sha256": sha},
        **({} if shards is None else {"shards": shards}),
        "tensors": tensors,
        "unsupported_tensors": unsupported,
    }
    _core.bundle_commit(str(tmp), str(target), manifest_text(manifest).encode())


_COMPACT = json.JSONEncoder(separators=(", ", ": "))


def _lines(items: list[dict[str, Any]]) -> str:
    """`items` encoded in one C-encoder call, then cut into one line per item: each item starts
    with the same key, and `}, {"key"` cannot occur inside an encoded string (its quote would be
    escaped)."""
    first = next(iter(items[0]), None)
    text = _COMPACT.encode(items)[1:-1]
    if first is None or any(next(iter(it), None) != first for it in items):
        return ",\n    ".join(map(_COMPACT.encode, items))
    key = json.dumps(first)
    return text.replace(f"}}, {{{key}", f"}},\n    {{{key}")


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as JSON: one top-level key per line and one tensor entry per line (the C
    encoder writes them; `indent=2` would go through the slow pure-Python one)."""
    lines = []
    for k, v in manifest.items():
        if isinstance(v, list) and v and k in ("tensors", "shards"):
            lines.append(f"  {json.dumps(k)}: [\n    {_lines(v)}\n  ]")
        else:
            lines.append(f"  {json.dumps(k)}: {_COMPACT.encode(v)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def written_entry(
    blob_id: int, label: str, dtype: str, shape: Any, device: str, written: tuple, kind: str
) -> dict[str, Any]:
    """The manifest entry of a tensor a `_core.StreamWriter` wrote: `written` is its
    `(bytes, sha256, shard, offset)` (shard 0: its own blob file, format 1)."""
    n, sha, shard, offset = written
    if shard:
        return _shards.entry(blob_id, label, dtype, shape, device, shard, offset, n, sha, kind)
    return entry(blob_id, label, dtype, shape, device, n, sha, kind)


def entry(
    blob_id: int, label: str, dtype: str, shape: Any, device: str, nbytes: int, sha: str, kind: str = "activation"
) -> dict[str, Any]:
    """One format-1 manifest tensor entry."""
    return {
        "blob_id": blob_id,
        "kind": kind,
        "label": label,
        "relative_path": f"blobs/{blob_id:010d}.safetensors",
        "backend": "safetensors",
        "shape": list(shape),
        "dtype": dtype,
        "device_at_save": device,
        "layout": "strided",
        "bytes": nbytes,
        "sha256": sha,
    }


def info_of(log: ModelLog) -> dict[str, Any]:
    return {
        "random_seed": log.random_seed_used,
        "time_forward": log.time_forward_pass,
        "time_core": log.time_postprocessing,
        "time_total": log.time_total,
        "layers_to_save": log.layers_to_save,
        "detect_loops": log.detect_loops,
        # keep_unsaved_layers=False: the node ids the log still shows (None: all of them).
        "kept_nids": None if log._kept is None else [log._node_ids[p] for p in log._kept],
        "conditionals": conditionals.to_json(log),  # located in the source here; it may not exist where loaded
    }


def save(
    model_log: ModelLog,
    path: str | os.PathLike,
    *,
    include_activations: bool = True,
    include_gradients: bool = True,
    include_captured_args: bool = False,
    include_rng_states: bool = False,
    strict: bool = True,
    overwrite: bool = False,
) -> None:
    """Write `model_log` as a portable bundle directory at `path` (see `docs/bundle-format.md`).

    Args:
        model_log: The log to save (fresh, streamed or loaded, lazily or not).
        path: Target directory; must not exist unless `overwrite=True`.
        include_activations: Store saved activations (else metadata only).
        include_gradients: Store the gradients (and `gradient_postfunc` outputs) that a backward
            pass left in the log, with their arrival order (else none are kept).
        include_captured_args: Accepted for compatibility (captured args are not recorded).
        include_rng_states: Accepted for compatibility (RNG states are not recorded).
        strict: Raise on a tensor the format cannot hold; False skips it and lists it.
        overwrite: Replace an existing bundle (moved aside and restored if the save fails).

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        TorchLensIOError: Unsupported tensor (strict), changed source bundle, or a write failure.
    """
    target = Path(os.fspath(path))
    _core.refuse_symlink(str(target), "bundle target")
    backup: Path | None = None
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"Bundle path already exists: {target}")
        backup = target.with_name(f"{target.name}.bak.{uuid.uuid4().hex}")
        os.rename(target, backup)
    tmp = tmp_name(target)
    try:
        _shards.make_dirs(tmp)
        _save_into(model_log, tmp, target, include_activations, include_gradients, strict)
    except BaseException as e:
        mark_partial(tmp, f"{type(e).__name__}: {e}")
        if backup is not None and not target.exists():
            os.rename(backup, target)
        if isinstance(e, TorchLensIOError | KeyboardInterrupt):
            raise
        raise TorchLensIOError(f"Failed to save bundle at {target}: {type(e).__name__}: {e}") from e
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _reread(ref: LazyActivationRef) -> torch.Tensor:
    """A tensor of a lazily loaded source bundle, read again (checksum verified)."""
    try:
        return ref.materialize("cpu")
    except TorchLensIOError as e:
        if "checksum mismatch" in str(e).lower():
            raise TorchLensIOError(
                "source bundle manifest has changed since load; materialize refs and retry"
            ) from None
        raise


def _copy_blob(ref: LazyActivationRef, dest: Path, blob_id: int, label: str, kind: str) -> dict[str, Any]:
    if ref.offset is not None:  # a tensor of a sharded source bundle gets its own file
        t = _reread(ref)
        out = write_tensor(t, dest, blob_id, label, -1, kind)
        return {**out, "device_at_save": ref.device_at_save}
    src = Path(ref.source_bundle_path) / ref.relative_path
    _core.refuse_symlink(str(src), "blob")
    _, _, _, nbytes, sha = _core.blob_scan(str(src))
    if sha != ref.expected_sha256:
        raise TorchLensIOError("source bundle manifest has changed since load; materialize refs and retry")
    shutil.copyfile(src, dest)
    return entry(blob_id, label, ref.dtype, ref.shape, ref.device_at_save, nbytes, sha, kind)


def write_tensor(t: torch.Tensor, dest: Path, blob_id: int, label: str, nid: int, kind: str) -> dict[str, Any]:
    """Write one tensor as blob `blob_id` at `dest`; returns its manifest entry."""
    dtype = dtype_name(t.dtype)
    buf = tensor_bytes(t)
    meta = [("kind", kind), ("label", label), ("node", str(nid))]
    nbytes, sha = _core.blob_write(str(dest), dtype, list(t.shape), meta, buf)
    return entry(blob_id, label, dtype, t.shape, str(t.device), nbytes, sha, kind)


def _save_into(
    log: ModelLog, tmp: Path, target: Path, include_activations: bool, include_gradients: bool, strict: bool
) -> None:
    labels = log._col("labels_w_pass")
    pos_of = {nid: p for p, nid in enumerate(log._node_ids)}
    maps: dict[str, list[list[int]]] = {k: [] for k in (*_ACT_KINDS, *GRAD_KINDS)}
    tensors: list[dict[str, Any]] = []
    unsupported: list[dict[str, str]] = []
    memo: dict[tuple[str, int], int] = {}
    jobs: list[Any] = []
    next_id = 1
    sources: list[tuple[str, dict[int, Any]]] = []
    if include_activations:
        acts = dict(log._lazy)
        acts.update({k: v for k, v in log._saved.items() if v is not None})
        sources.append(("activation", acts))
        sources.append(("transformed_activation", dict(getattr(log, "_transformed", None) or {})))
    if include_gradients:
        sources.extend(gradient_sources(log))
    sharded = _shards.packed(tmp)
    items: list[tuple[int, str, int, str, str, torch.Tensor]] = []
    for kind, mapping in sources:
        for nid in sorted(mapping):
            if nid not in pos_of:
                continue
            label = labels[pos_of[nid]]
            src = mapping[nid]
            key = (kind, id(src))
            if key in memo:
                maps[kind].append([nid, memo[key]])
                continue
            blob_id = next_id
            dest = None if sharded else tmp / f"blobs/{blob_id:010d}.safetensors"
            if isinstance(src, LazyActivationRef) and sharded:
                items.append((blob_id, label, nid, kind, src.device_at_save, _reread(src)))
            elif isinstance(src, LazyActivationRef):
                jobs.append((_copy_blob, (src, dest, blob_id, label, kind)))
            else:
                reason = unsupported_reason(src)
                if reason is not None:
                    if strict and isinstance(src, torch.Tensor):
                        raise TorchLensIOError(f"Unsupported tensor for bundle save at {label} ({kind}): {reason}")
                    unsupported.append({"label": label, "kind": kind, "reason": reason})
                    continue
                if sharded:
                    items.append((blob_id, label, nid, kind, str(src.device), src))
                else:
                    jobs.append((write_tensor, (src, dest, blob_id, label, nid, kind)))
            memo[key] = blob_id
            next_id += 1
            maps[kind].append([nid, blob_id])
    if items:  # format 2: packed into shards, each written in one sequential pass
        tensors.extend(_shards.write_tensors(tmp, items))
    # The Rust writes release the GIL: a few threads overlap checksumming, copies and disk I/O.
    if len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            tensors.extend(pool.map(lambda j: j[0](*j[1]), jobs))
    else:
        tensors.extend(j[0](*j[1]) for j in jobs)
    commit(
        tmp,
        target,
        log.model_name,
        log._data,
        info_of(log),
        maps["activation"],
        tensors,
        unsupported,
        len(log),
        transformed=maps["transformed_activation"],
        gradients=gradient_info(log, maps, include_gradients),
    )
