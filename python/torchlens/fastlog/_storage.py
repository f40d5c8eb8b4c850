"""Fastlog directory bundles: streaming writer, load and recovery (spec §10.8).

Payload files are safetensors files, written and read by the Rust core's one safetensors module
(the same as bundle blobs; see docs/bundle-format.md);
`fastlog_index.jsonl` gets one JSON line per retained record, appended only after that record's
blob is fully written, so an interrupted directory is readable up to its last complete line.
The bytes are copied out of the tensor under the GIL; hashing and file I/O happen on a writer
thread of the Rust core (`torchlens._core.FastlogWriter`), off the GIL. Nothing read from disk is
ever executed: only JSON and raw tensor bytes are parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import torch

from .._errors import TorchLensIOError
from .._native import core as _core
from ..io._refs import dtype_name, tensor_bytes
from ._types import BundleNotFinalizedError, RecoveryError

BUNDLE_FORMAT = "fastlog-directory"
FORMAT_VERSION = 1
INDEX = "fastlog_index.jsonl"
PARTIAL = "PARTIAL"
SHA_PLACEHOLDER = "@SHA256@"

# Dtypes a payload file can hold: the Rust core's one table (torch names).
_DTYPES = frozenset(_core.TENSOR_DTYPES)


class DiskStore:
    """Streams kept records into `{path}.tmp.{uuid}` and renames it to `path` on finalize."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.final = Path(path)
        if self.final.exists():
            raise FileExistsError(f"fastlog bundle path already exists: {self.final}")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.with_name(f"{self.final.name}.tmp.{uuid.uuid4().hex[:12]}")
        self.tmp.mkdir()
        (self.tmp / PARTIAL).write_text("fastlog bundle in progress\n")
        (self.tmp / "blobs").mkdir()
        self.writer = _core.FastlogWriter(str(self.tmp))
        self.n_blobs = 0
        self.closed = False

    def write(
        self, ctx_json: dict, spec_json: dict, payloads: list[tuple[str, torch.Tensor]], recorded_at: float
    ) -> dict[str, Any]:
        """Queue one record; returns its `metadata` entry (sha256 is filled in on disk only)."""
        meta: dict[str, Any] = {}
        if payloads:
            self.n_blobs += 1
            blob_id = self.n_blobs
            rel = f"blobs/{blob_id:010d}.safetensors"
            header_meta = [("format", "pt"), ("label", str(ctx_json.get("label")))]
            tensors = []
            chunks = []
            off = 0
            for key, t in payloads:
                name = dtype_name(t.dtype)
                if name not in _DTYPES:
                    raise TypeError(f"fastlog cannot write {t.dtype} tensors to disk")
                b = tensor_bytes(t)
                tensors.append((key, name, list(t.shape)))
                off += b.nbytes
                chunks.append(b)
            main = payloads[0][1]
            meta = {
                "blob_id": blob_id,
                "relative_path": rel,
                "sha256": SHA_PLACEHOLDER,
                "shape": list(main.shape),
                "dtype": str(main.dtype),
                "nbytes": off,
                "tensor_keys": [k for k, _ in payloads],
            }
            if len(payloads) > 1 or payloads[0][0].endswith("::transformed_activation"):
                tk, tt = payloads[-1]
                meta["transformed_activation_key"] = tk
                meta["transformed_activation_shape"] = list(tt.shape)
                meta["transformed_activation_dtype"] = str(tt.dtype)
            line = json.dumps({"ctx": ctx_json, "spec": spec_json, "metadata": meta, "recorded_at": recorded_at})
            self.writer.write(rel, tensors, header_meta, chunks, line)
            meta = dict(meta, sha256=None)  # the digest is computed by the writer thread, on disk only
        else:
            line = json.dumps({"ctx": ctx_json, "spec": spec_json, "metadata": meta, "recorded_at": recorded_at})
            self.writer.write("", [], [], [], line)
        return meta

    def finalize(self, metadata: dict[str, Any], pass_index: dict, label_index: dict) -> Path:
        self.writer.finish()
        self.closed = True
        d = self.tmp
        (d / "metadata.json").write_text(json.dumps(metadata, indent=1, default=str))
        (d / "pass_index.json").write_text(json.dumps({str(k): v for k, v in pass_index.items()}))
        (d / "label_index.json").write_text(json.dumps(label_index))
        manifest = {
            "bundle_format": BUNDLE_FORMAT,
            "format_version": FORMAT_VERSION,
            "n_records": metadata.get("n_records"),
            "n_blobs": self.n_blobs,
            "index": INDEX,
            "writer": "rust",
        }
        (d / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (d / PARTIAL).unlink()
        os.replace(d, self.final)
        return self.final

    def abort(self) -> None:
        """Stop writing; the temp directory stays (marked PARTIAL) for `recover()` / `cleanup_partial()`."""
        if not self.closed:
            self.closed = True
            try:
                self.writer.finish()
            except Exception:  # noqa: BLE001
                pass


# --------------------------------------------------------------------------- reading
def read_blob(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Parse one safetensors payload file (the core's reader) without executing anything from it."""
    try:
        _, tensors = _core.safetensors_read(str(path))
    except TorchLensIOError as e:  # truncated, malformed or unsupported: fastlog's readers expect ValueError
        raise ValueError(str(e)) from None
    out: dict[str, torch.Tensor] = {}
    for key, dtype, shape, data in tensors:
        t = torch.frombuffer(data, dtype=torch.uint8) if data else torch.empty(0, dtype=torch.uint8)
        out[key] = t.view(getattr(torch, dtype)).reshape(shape)
    return out


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise BundleNotFinalizedError(f"fastlog bundle file {path.name} is unreadable: {e}") from e


def scan_index(root: Path, *, strict: bool, verify: bool) -> tuple[list[dict], list[str]]:
    """Parse `fastlog_index.jsonl`; with `strict=False` drop bad lines / blobs and return warnings."""
    idx = root / INDEX
    if not idx.is_file():
        raise RecoveryError("no recoverable index")
    data = idx.read_bytes()
    warnings: list[str] = []
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail:
        if strict:
            raise BundleNotFinalizedError(f"fastlog index {idx} ends with a truncated line")
        warnings.append("truncated tail")
    entries: list[dict] = []
    for i, ln in enumerate(lines, 1):
        try:
            e = json.loads(ln)
            if not isinstance(e, dict) or not isinstance(e.get("ctx"), dict):
                raise ValueError("not a record object")
        except ValueError:
            if strict:
                raise BundleNotFinalizedError(f"fastlog index line {i} is malformed") from None
            warnings.append(f"malformed line {i}")
            continue
        meta = e.get("metadata") or {}
        rel = meta.get("relative_path") if isinstance(meta, dict) else None
        if rel:
            bp = (root / str(rel)).resolve()
            if root.resolve() not in bp.parents:
                warnings.append(f"malformed line {i}")
                continue
            bid = meta.get("blob_id")
            if not bp.is_file():
                if strict:
                    raise BundleNotFinalizedError(f"missing blob {bid}")
                warnings.append(f"missing blob {bid}")
                continue
            if verify and _sha(bp) != meta.get("sha256"):
                if strict:
                    raise BundleNotFinalizedError(f"hash mismatch {bid}")
                warnings.append(f"hash mismatch {bid}")
                continue
        entries.append(e)
    return entries, warnings


def find_partial(path: Path) -> Path | None:
    """The directory holding an interrupted recording destined for `path`, newest first."""
    if path.is_dir() and (path / INDEX).is_file():
        return path
    cands = sorted(path.parent.glob(f"{path.name}.tmp.*"), key=lambda p: p.stat().st_mtime, reverse=True)
    for c in cands:
        if (c / INDEX).is_file():
            return c
    return None


def cleanup_partial(path: str | os.PathLike, *, force: bool = False) -> list[str]:
    """Remove PARTIAL-marked fastlog directories at `path` or `{path}.tmp.*`; returns what was removed."""
    p = Path(path)
    removed: list[str] = []
    cands = [p, *sorted(p.parent.glob(f"{p.name}.tmp.*"))]
    for c in cands:
        if not c.is_dir():
            continue
        if (c / PARTIAL).exists() or (force and ".tmp." in c.name and not (c / "manifest.json").exists()):
            shutil.rmtree(c)
            removed.append(str(c))
    return removed
