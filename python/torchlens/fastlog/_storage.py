"""Fastlog directory bundles: streaming writer, load and recovery (spec §10.8).

Payload files are safetensors files (8-byte little-endian header length, JSON header, raw bytes);
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
import queue
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import torch

from ._types import BundleNotFinalizedError, RecoveryError

BUNDLE_FORMAT = "fastlog-directory"
FORMAT_VERSION = 1
INDEX = "fastlog_index.jsonl"
PARTIAL = "PARTIAL"
SHA_PLACEHOLDER = "@SHA256@"
MAX_HEADER = 100 * 1024 * 1024

_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_FROM_ST = {v: k for k, v in _ST_DTYPES.items()}


def _native_writer() -> Any:
    try:
        from .. import _core

        return getattr(_core, "FastlogWriter", None)
    except ImportError:  # pragma: no cover
        return None


class _PyWriter:
    """Fallback writer thread (used only when the Rust extension lacks `FastlogWriter`)."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.q: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.index = open(os.path.join(root, INDEX), "ab")  # noqa: SIM115
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is not None:
                continue
            rel, header, chunks, line = item
            try:
                h = hashlib.sha256()
                path = os.path.join(self.root, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                hb = header.encode()
                with open(path, "wb") as f:
                    for part in (len(hb).to_bytes(8, "little"), hb, *chunks):
                        h.update(part)
                        f.write(part)
                self.index.write(line.replace(SHA_PLACEHOLDER, h.hexdigest(), 1).encode() + b"\n")
                self.index.flush()
            except BaseException as e:  # noqa: BLE001
                self.error = e

    def write(self, rel: str, header: str, chunks: list, line: str) -> None:
        if self.error is not None:
            raise OSError(f"fastlog writer failed: {self.error}")
        self.q.put((rel, header, [bytes(c) for c in chunks], line))

    def finish(self) -> None:
        self.q.put(None)
        self.thread.join()
        self.index.close()
        if self.error is not None:
            raise OSError(f"fastlog writer failed: {self.error}")


def _tensor_bytes(t: torch.Tensor) -> Any:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.contiguous().reshape(-1)
    return t.view(torch.uint8).numpy()


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
        native = _native_writer()
        self.writer = native(str(self.tmp)) if native is not None else _PyWriter(str(self.tmp))
        self.native = native is not None
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
            header: dict[str, Any] = {"__metadata__": {"format": "pt", "label": str(ctx_json.get("label"))}}
            chunks = []
            off = 0
            for key, t in payloads:
                st = _ST_DTYPES.get(t.dtype)
                if st is None:
                    raise TypeError(f"fastlog cannot write {t.dtype} tensors to disk")
                b = _tensor_bytes(t)
                header[key] = {"dtype": st, "shape": list(t.shape), "data_offsets": [off, off + b.nbytes]}
                off += b.nbytes
                chunks.append(b)
            hs = json.dumps(header, separators=(",", ":"))
            hs += " " * (-len(hs.encode()) % 8)
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
            self.writer.write(rel, hs, chunks, line)
            meta = dict(meta, sha256=None)  # the digest is computed by the writer thread, on disk only
        else:
            line = json.dumps({"ctx": ctx_json, "spec": spec_json, "metadata": meta, "recorded_at": recorded_at})
            self.writer.write("", "", [], line)
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
            "writer": "rust" if self.native else "python",
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
    """Parse one safetensors payload file without executing anything from it."""
    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{p}: truncated safetensors header")
        n = int.from_bytes(raw, "little")
        if n > MAX_HEADER or 8 + n > size:
            raise ValueError(f"{p}: invalid safetensors header length {n}")
        header = json.loads(f.read(n))
        data = f.read()
    if not isinstance(header, dict):
        raise ValueError(f"{p}: safetensors header is not an object")
    out: dict[str, torch.Tensor] = {}
    for key, ent in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(ent, dict):
            raise ValueError(f"{p}: bad entry {key!r}")
        dt = _FROM_ST.get(ent.get("dtype"))
        shape = ent.get("shape")
        offs = ent.get("data_offsets")
        if dt is None or not isinstance(shape, list) or not isinstance(offs, list) or len(offs) != 2:
            raise ValueError(f"{p}: bad entry {key!r}")
        if not all(isinstance(s, int) and s >= 0 for s in shape):
            raise ValueError(f"{p}: bad shape for {key!r}")
        a, b = offs
        numel = 1
        for s in shape:
            numel *= s
        itemsize = torch.empty((), dtype=dt).element_size()
        if not (isinstance(a, int) and isinstance(b, int) and 0 <= a <= b <= len(data)) or b - a != numel * itemsize:
            raise ValueError(f"{p}: data offsets of {key!r} do not match its shape")
        buf = bytearray(data[a:b])
        t = torch.frombuffer(buf, dtype=torch.uint8) if buf else torch.empty(0, dtype=torch.uint8)
        out[key] = t.view(dt).reshape(shape)
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
