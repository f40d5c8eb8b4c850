"""Tensors of a bundle on disk: lazy references, reading a blob or a shard range, and what a
tensor file can hold.

Which dtypes a tensor file can hold is decided by the Rust core's one dtype table
(`_core.TENSOR_DTYPES`, torch names); Python only derives a dtype's name from torch itself.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._errors import TorchLensIOError
from .._native import core as _core

SUPPORTED_DTYPES = frozenset(_core.TENSOR_DTYPES)


def dtype_name(dtype: torch.dtype) -> str:
    """`torch.float32` -> `"float32"` (the name the core's dtype table and the manifest use)."""
    return str(dtype).removeprefix("torch.")


@functools.lru_cache(maxsize=256)
def torch_dtype(name: str) -> torch.dtype | None:
    """The torch dtype called `name`, or None when torch has no such dtype (memoized: a load
    asks for the same few names thousands of times)."""
    d = getattr(torch, name, None) if name.isidentifier() else None
    return d if isinstance(d, torch.dtype) else None


@dataclass(frozen=True)
class LazyActivationRef:
    """A tensor of a bundle that is read only when `materialize()` is called.

    In an io format 2 bundle `relative_path` names the tensor's shard and `offset` the first
    byte of its data there (None in format 1, where `relative_path` is its own blob file)."""

    blob_id: int
    shape: tuple[int, ...]
    dtype: str
    device_at_save: str
    source_bundle_path: str
    relative_path: str
    kind: str
    expected_sha256: str
    offset: int | None = None

    def materialize(self, map_location: Any = "cpu") -> torch.Tensor:
        """Read and checksum this tensor (format 2: only its byte range of the shard; format 1:
        its blob file); return the tensor on `map_location`."""
        if self.offset is not None:
            return read_range(self, map_location)
        return read_blob(
            Path(self.source_bundle_path) / self.relative_path,
            self.dtype,
            self.shape,
            self.expected_sha256,
            map_location,
        )


class LazyTensorDict(dict):
    """node id -> tensor, where values of a lazily loaded bundle are read on first `get`/`[]`."""

    def __init__(self, map_location: Any) -> None:
        super().__init__()
        self._map_location = map_location

    def __getitem__(self, key: Any) -> Any:
        v = super().__getitem__(key)
        if isinstance(v, LazyActivationRef):
            ref, v = v, v.materialize(self._map_location)
            for k, r in list(dict.items(self)):
                if r is ref:
                    dict.__setitem__(self, k, v)
        return v

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default


def read_blob(path: Path, dtype: str, shape: tuple[int, ...], sha: str | None, map_location: Any) -> torch.Tensor:
    """Read one bundle blob into a fresh CPU tensor (the core checks header and checksum)."""
    tdt = torch_dtype(dtype)
    if tdt is None or dtype not in SUPPORTED_DTYPES:
        raise TorchLensIOError(f"unsupported dtype {dtype!r} in {path}")
    t = torch.empty(tuple(shape), dtype=tdt)
    buf = t.reshape(-1).view(torch.uint8).numpy() if t.dim() else t.reshape(1).view(torch.uint8).numpy()
    _core.blob_read_into(str(path), dtype, list(shape), sha, buf)
    if map_location is not None and str(map_location) != "cpu":
        t = t.to(map_location)
    return t


def empty_for(dtype: str, shape: tuple[int, ...], where: Any) -> tuple[torch.Tensor, Any]:
    """A fresh CPU tensor of `dtype` / `shape` and a writable uint8 numpy view of its bytes."""
    tdt = torch_dtype(dtype)
    if tdt is None or dtype not in SUPPORTED_DTYPES:
        raise TorchLensIOError(f"unsupported dtype {dtype!r} in {where}")
    t = torch.empty(tuple(shape), dtype=tdt)
    return t, (t.reshape(-1) if t.dim() else t.reshape(1)).view(torch.uint8).numpy()


def read_range(ref: LazyActivationRef, map_location: Any) -> torch.Tensor:
    """Read one format-2 tensor: only its byte range of the shard is read; checksum verified."""
    path = Path(ref.source_bundle_path) / ref.relative_path
    t, buf = empty_for(ref.dtype, ref.shape, path)
    _core.shard_read_range(str(path), ref.offset, ref.expected_sha256, buf)
    if map_location is not None and str(map_location) != "cpu":
        t = t.to(map_location)
    return t


def unsupported_reason(t: Any) -> str | None:
    """Why `t` cannot be stored as a blob, or None when it can."""
    if not isinstance(t, torch.Tensor):
        return f"not a tensor ({type(t).__name__})"
    if type(t) not in (torch.Tensor, torch.nn.Parameter):
        return f"tensor subclass {type(t).__name__}"
    if t.layout != torch.strided:
        return f"layout {t.layout}"
    if t.is_quantized:
        return "quantized tensor"
    if t.is_nested:
        return "nested tensor"
    if t.device.type not in ("cpu", "cuda"):
        return f"device {t.device}"
    if dtype_name(t.dtype) not in SUPPORTED_DTYPES:
        return f"dtype {t.dtype}"
    return None


def tensor_bytes(t: torch.Tensor) -> Any:
    """A uint8 numpy array of the tensor's values in row-major order (CPU; a view when possible).

    Any strided tensor works: odd, zero (expanded) or size-1 strides, storage offsets, size-0 and
    0-d tensors, conjugate and negative views. The array may share memory with `t`, so the caller
    keeps `t` alive while the array is in use.
    """
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg()
    n = t.numel()
    if n == 0:
        return torch.empty(0, dtype=torch.uint8).numpy()
    if not t.is_contiguous():
        t = t.contiguous()
    # `is_contiguous()` ignores the stride of a size-1 dimension, so a contiguous tensor can carry
    # any stride there (GPT-2's `x[:, -1]` of a (1, 128) tensor has shape (1,) and stride 128), and
    # `reshape(-1)` keeps it; a byte view needs stride 1. The elements of a contiguous tensor are
    # consecutive from its storage offset, so give them stride 1 explicitly.
    return t.as_strided((n,), (1,)).view(torch.uint8).numpy()
