"""io format 2: tensors packed into shard files (`shards/00001.safetensors`, ...).

Each shard is a standard safetensors file naming its tensors by their 10-digit blob id; the
manifest gives each tensor's shard, byte offset, length and the SHA-256 of its bytes, and lists
the shards (`relative_path`, `bytes`, `data_start`). The Rust core writes and reads them
(`_core.shard_write`, `shard_read_into`, `shard_read_range`, `shard_recover`) without the GIL.

`WRITE_FORMAT` selects what new bundles use: 2 (the default) or 1, the one-file-per-tensor
layout of earlier releases (kept to write compatibility fixtures; format 1 is always read).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from .._errors import TorchLensIOError
from .._native import core as _core
from ._refs import LazyActivationRef, dtype_name, empty_for, tensor_bytes

# The layout new bundles get (internal switch: 1 writes the one-file-per-tensor layout).
WRITE_FORMAT = 2
# Data bytes per shard before the next one starts (saves and streamed captures).
SHARD_BYTES = 512 << 20
# Header bytes a shard written by `save` may take (the core accepts up to 16 MiB).
_SHARD_HEADER_BUDGET = 8 << 20
SHARD_DIR = "shards"
_CHECKSUM = re.compile(r"checksum mismatch for blob_id=(\d+)")


def shard_path(index: int) -> str:
    return f"{SHARD_DIR}/{index:05d}.safetensors"


def packed(tmp: Path) -> bool:
    """Whether the bundle directory `tmp` is being written in format 2."""
    return (tmp / SHARD_DIR).is_dir()


def stream_shard_bytes(tmp: Path) -> int | None:
    """The `shard_bytes` of a `_core.StreamWriter` writing into `tmp` (None: one file per tensor)."""
    return SHARD_BYTES if packed(tmp) else None


def make_dirs(tmp: Path) -> None:
    """Create the temp bundle directory with the tensor directory of `WRITE_FORMAT`."""
    (tmp / (SHARD_DIR if WRITE_FORMAT >= 2 else "blobs")).mkdir(parents=True)


def entry(
    blob_id: int,
    label: str,
    dtype: str,
    shape: Any,
    device: str,
    shard: int,
    offset: int,
    length: int,
    sha: str,
    kind: str = "activation",
) -> dict[str, Any]:
    """One format-2 manifest tensor entry."""
    return {
        "blob_id": blob_id,
        "kind": kind,
        "label": label,
        "relative_path": shard_path(shard),
        "shard": shard,
        "offset": offset,
        "length": length,
        "backend": "safetensors",
        "shape": list(shape),
        "dtype": dtype,
        "device_at_save": device,
        "layout": "strided",
        "sha256": sha,
    }


def manifest_shards(tmp: Path) -> list[dict[str, Any]] | None:
    """The manifest's `shards` list for the directory `tmp` (None in format 1)."""
    if not packed(tmp):
        return None
    files = _core.shard_files(str(tmp))
    for want, (index, _, _) in enumerate(files, start=1):
        if index != want:
            raise TorchLensIOError(f"shard files of {tmp} are not numbered 1..{len(files)}")
    return [{"relative_path": shard_path(i), "bytes": n, "data_start": ds} for i, n, ds in files]


# --------------------------------------------------------------------------------------- writing
def _plan(items: list[tuple[int, str, int, str, str, torch.Tensor]]) -> Iterator[list[Any]]:
    """Consecutive groups of items that fit one shard (data and header budgets)."""
    group: list[Any] = []
    data = header = 0
    for it in items:
        t = it[5]
        n = t.numel() * t.element_size()
        h = 80 + 21 * t.dim()
        if group and (data + n > SHARD_BYTES or header + h > _SHARD_HEADER_BUDGET):
            yield group
            group, data, header = [], 0, 0
        group.append(it)
        data += n
        header += h
    if group:
        yield group


def write_tensors(tmp: Path, items: list[tuple[int, str, int, str, str, torch.Tensor]]) -> list[dict[str, Any]]:
    """Write `(blob_id, label, node id, kind, device, tensor)` items into shards of `tmp` (in this
    order, rolled over at `SHARD_BYTES`); returns their manifest entries."""
    groups = list(_plan(items))

    def one(index: int, group: list[Any]) -> list[dict[str, Any]]:
        bufs = [tensor_bytes(t) for *_, t in group]  # views of CPU tensors; copies of others
        specs = [(bid, dtype_name(t.dtype), list(t.shape), b) for (bid, *_, t), b in zip(group, bufs, strict=True)]
        _, _, placed = _core.shard_write(str(tmp), index, specs)
        return [
            entry(bid, label, dtype_name(t.dtype), t.shape, dev, index, off, n, sha, kind)
            for (bid, label, _, kind, dev, t), (_, off, n, sha) in zip(group, placed, strict=True)
        ]

    if len(groups) <= 1:
        return [e for i, g in enumerate(groups, start=1) for e in one(i, g)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(lambda ig: one(*ig), enumerate(groups, start=1)))
    return [e for p in parts for e in p]


# --------------------------------------------------------------------------------------- reading
def read_shards(
    refs: list[LazyActivationRef], shards: dict[str, tuple[int, int]], map_location: Any, threads: int
) -> dict[int, torch.Tensor]:
    """Eagerly read the format-2 `refs` (blob id -> tensor): each shard in one sequential pass,
    its header checked against the manifest (`shards`: relative path -> (bytes, data_start))."""
    by_shard: dict[str, list[LazyActivationRef]] = {}
    for r in refs:
        by_shard.setdefault(r.relative_path, []).append(r)

    def one(rel: str) -> dict[int, torch.Tensor]:
        group = by_shard[rel]
        info = shards.get(rel)
        if info is None:
            raise TorchLensIOError(f"invalid bundle: {rel} is not listed in the manifest")
        out: dict[int, torch.Tensor] = {}
        items = []
        for r in group:
            t, buf = empty_for(r.dtype, r.shape, rel)
            out[r.blob_id] = t
            items.append((r.blob_id, r.dtype, list(r.shape), r.offset, r.expected_sha256, buf))
        try:
            _core.shard_read_into(str(Path(group[0].source_bundle_path) / rel), info[0], info[1], items)
        except TorchLensIOError as e:
            m = _CHECKSUM.match(str(e))
            if m:
                raise TorchLensIOError(f"Checksum mismatch for blob_id={m.group(1)}") from None
            raise
        if map_location is not None and str(map_location) != "cpu":
            out = {k: v.to(map_location) for k, v in out.items()}
        return out

    loaded: dict[int, torch.Tensor] = {}
    run: Callable[[str], dict[int, torch.Tensor]] = one
    if len(by_shard) > 1 and threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for part in pool.map(run, sorted(by_shard)):
                loaded.update(part)
    else:
        for rel in sorted(by_shard):
            loaded.update(run(rel))
    return loaded
