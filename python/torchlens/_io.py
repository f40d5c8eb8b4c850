"""Portable bundles: `save`, `load`, `recover_bundle`, `cleanup_tmp` and streaming capture.

The format is specified in `docs/bundle-format.md`. Nothing here unpickles or executes stored
content: metadata is JSON, tensors are single-tensor safetensors files, and the Rust core
(`torchlens._core`) validates the manifest, checks sizes and checksums and does all file I/O.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import _core
from ._capture.hot import paused as _paused
from ._data import CaptureData, ModuleInfo, ParamInfo

if TYPE_CHECKING:
    from .model_log import ModelLog

TorchLensIOError = _core.TorchLensIOError
METADATA_SCHEMA = "torchlens-capture"
METADATA_VERSION = 1
# Bytes of streamed tensors that may wait for the writer thread before the forward pass blocks.
STREAM_QUEUE_BYTES = 128 << 20
JOURNAL_EVERY = 64
# Threads used by `save` and eager `load` (file work runs in Rust without the GIL).
IO_THREADS = min(4, os.cpu_count() or 1)

_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "int8": torch.int8,
    "int16": torch.int16,
    "int32": torch.int32,
    "int64": torch.int64,
    "uint8": torch.uint8,
    "bool": torch.bool,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
# Every torch dtype by name, for tensor metadata (metas may describe tensors a bundle cannot hold).
_ALL_DTYPES: dict[str, torch.dtype] = {
    str(v).removeprefix("torch."): v for v in vars(torch).values() if isinstance(v, torch.dtype)
}


# ---------------------------------------------------------------------------------------- lazy refs
@dataclass(frozen=True)
class LazyActivationRef:
    """A tensor of a bundle that is read only when `materialize()` is called."""

    blob_id: int
    shape: tuple[int, ...]
    dtype: str
    device_at_save: str
    source_bundle_path: str
    relative_path: str
    kind: str
    expected_sha256: str

    def materialize(self, map_location: Any = "cpu") -> torch.Tensor:
        """Open, checksum, decode and close this blob; return the tensor on `map_location`."""
        return _read_blob(
            Path(self.source_bundle_path) / self.relative_path,
            self.dtype,
            self.shape,
            self.expected_sha256,
            map_location,
        )


class _LazyTensorDict(dict):
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


def _read_blob(path: Path, dtype: str, shape: tuple[int, ...], sha: str | None, map_location: Any) -> torch.Tensor:
    tdt = _DTYPES.get(dtype)
    if tdt is None:
        raise TorchLensIOError(f"unsupported dtype {dtype!r} in {path}")
    t = torch.empty(tuple(shape), dtype=tdt)
    buf = t.reshape(-1).view(torch.uint8).numpy() if t.dim() else t.reshape(1).view(torch.uint8).numpy()
    _core.blob_read_into(str(path), dtype, list(shape), sha, buf)
    if map_location is not None and str(map_location) != "cpu":
        t = t.to(map_location)
    return t


# ---------------------------------------------------------------------------------------- tensors
def _unsupported_reason(t: Any) -> str | None:
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
    if t.dtype not in _DTYPE_NAMES:
        return f"dtype {t.dtype}"
    return None


def _tensor_bytes(t: torch.Tensor) -> Any:
    """A uint8 numpy view of the tensor's contiguous CPU bytes (kept alive by the caller)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    t = t.resolve_conj().resolve_neg().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy()


def _device_str(t: torch.Tensor) -> str:
    return str(t.device)


# ---------------------------------------------------------------------------------------- metadata
def _json_safe(v: Any, depth: int = 0) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, list | tuple) and depth < 8:
        return [_json_safe(x, depth + 1) for x in v]
    if isinstance(v, dict) and depth < 8:
        return {str(k): _json_safe(x, depth + 1) for k, x in v.items()}
    return f"<scrubbed:{type(v).__name__}>"


def _data_to_json(data: CaptureData) -> dict[str, Any]:
    return {
        "strings": list(data.strings),
        "records": [[*r[:6], list(r[6]), list(r[7]), r[8]] for r in data.records],
        "meta_ids": list(data.meta_ids),
        "metas": [[list(s), str(d).removeprefix("torch."), g] for s, d, g in data.metas],
        "module_stacks": [[list(p) for p in st] for st in data.module_stacks],
        "module_exits": [list(e) for e in data.module_exits],
        "module_passes": [list(p) for p in data.module_passes],
        "outputs": [list(o) for o in data.outputs],
        "modules": [
            {
                "address": m.address,
                "class_name": m.class_name,
                "num_passes": m.num_passes,
                "all_addresses": m.all_addresses,
            }
            for m in data.modules
        ],
        "params": [
            {
                "address": p.address,
                "shape": list(p.shape),
                "dtype": str(p.dtype).removeprefix("torch."),
                "numel": p.numel,
                "nbytes": p.nbytes,
                "requires_grad": p.requires_grad,
            }
            for p in data.params
        ],
    }


class _Bad(Exception):
    pass


# ---------------------------------------------------------------- per-node extras (optional fields)
class _CodeStub:
    """Stands in for a code object of a loaded bundle (file, name, first line, docstring)."""

    __slots__ = ("co_filename", "co_name", "co_firstlineno", "co_qualname", "co_consts")

    def __init__(self, filename: str, name: str, firstlineno: int, qualname: str, doc: str | None) -> None:
        self.co_filename = filename
        self.co_name = name
        self.co_firstlineno = firstlineno
        self.co_qualname = qualname
        self.co_consts = (doc,) if doc is not None else ()


def _enc_tok(v: Any, depth: int = 0) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    if isinstance(v, torch.Size):
        return {"size": list(v)}
    if isinstance(v, tuple | list) and depth < 20:
        return {"t": [_enc_tok(x, depth + 1) for x in v]}
    return {"repr": str(v)}


def _dec_tok(v: Any, depth: int = 0) -> Any:
    if v is None or type(v) in (bool, int, float, str):
        return v
    if type(v) is dict and len(v) == 1 and depth < 20:
        if "size" in v:
            return torch.Size(_ints(v["size"], "toks size"))
        if "t" in v:
            return tuple(_dec_tok(x, depth + 1) for x in _list(v["t"], "toks"))
        if "repr" in v:
            return _str(v["repr"], "toks repr")
    raise _Bad("toks: unexpected token")


def _extras_to_json(data: CaptureData) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ft = getattr(data, "func_times", None)
    if isinstance(ft, dict):
        out["func_times"] = {"by_node": [[int(k), float(v)] for k, v in ft.items()]}
    elif ft is not None:
        out["func_times"] = {"list": [float(v) for v in ft]}
    toks = getattr(data, "toks", None)
    if isinstance(toks, list) and toks:
        out["toks"] = [_enc_tok(t) for t in toks]
    if getattr(data, "site_ids", None) is not None:
        codes: dict[Any, int] = {}
        code_rows: list[list[Any]] = []

        def frame(fr: Any) -> list[int]:
            co, line = fr
            i = codes.get(co)
            if i is None:
                i = codes[co] = len(code_rows)
                consts = getattr(co, "co_consts", ())
                doc = consts[0] if consts and isinstance(consts[0], str) else None
                code_rows.append(
                    [
                        str(co.co_filename),
                        str(co.co_name),
                        int(co.co_firstlineno),
                        str(getattr(co, "co_qualname", co.co_name)),
                        doc,
                    ]
                )
            return [i, int(line)]

        out["sites"] = [[frame(fr) for fr in site] for site in data.sites]
        out["site_ids"] = list(data.site_ids)
        out["stack_sites"] = list(data.stack_sites)
        out["stack_parent"] = list(data.stack_parent)
        out["caller_site"] = None if data.caller_site is None else frame(data.caller_site)
        out["codes"] = code_rows
    return out


def _extras_from_json(d: Any, data: CaptureData) -> None:
    if d is None:
        return
    if type(d) is not dict:
        raise _Bad("extras must be an object")
    ftd = d.get("func_times")
    if type(ftd) is dict and "list" in ftd:
        vals = _list(ftd["list"], "func_times")
        if any(type(v) not in (int, float) for v in vals):
            raise _Bad("func_times must hold numbers")
        data.func_times = [float(v) for v in vals]
    elif type(ftd) is dict and "by_node" in ftd:
        ft = {}
        for e in _list(ftd["by_node"], "func_times"):
            e = _list(e, "func_times entry")
            if len(e) != 2 or type(e[0]) is not int or type(e[1]) not in (int, float):
                raise _Bad("func_times entries must be [node, seconds]")
            ft[e[0]] = float(e[1])
        data.func_times = ft
    elif ftd is not None:
        raise _Bad("func_times must be an object")
    if "toks" in d:
        data.toks = [_dec_tok(t) for t in _list(d["toks"], "toks")]
    if "site_ids" in d:
        codes = []
        for row in _list(d.get("codes"), "codes"):
            row = _list(row, "codes entry")
            if len(row) != 5 or not (row[4] is None or type(row[4]) is str):
                raise _Bad("codes entries must have 5 fields")
            codes.append(
                _CodeStub(
                    _str(row[0], "code file"),
                    _str(row[1], "code name"),
                    _int(row[2], "code line"),
                    _str(row[3], "code qualname"),
                    row[4],
                )
            )

        def frame(fr: Any) -> tuple[Any, int]:
            fr = _ints(fr, "frame")
            if len(fr) != 2 or not 0 <= fr[0] < len(codes):
                raise _Bad("frame out of range")
            return (codes[fr[0]], fr[1])

        sites = [tuple(frame(f) for f in _list(s, "sites entry")) for s in _list(d.get("sites"), "sites")]
        site_ids = _ints(d.get("site_ids"), "site_ids")
        stack_sites = _ints(d.get("stack_sites"), "stack_sites")
        stack_parent = _ints(d.get("stack_parent"), "stack_parent")
        if any(not 0 <= s < len(sites) for s in [*site_ids, *stack_sites]):
            raise _Bad("site id out of range")
        if any(not 0 <= p < len(stack_parent) for p in stack_parent):
            raise _Bad("stack_parent out of range")
        caller = d.get("caller_site")
        data.sites = sites
        data.site_ids = site_ids
        data.stack_sites = stack_sites
        data.stack_parent = stack_parent
        data.caller_site = None if caller is None else frame(caller)


def _int(v: Any, what: str) -> int:
    if type(v) is not int:
        raise _Bad(f"{what} must be an int")
    return v


def _ints(v: Any, what: str) -> list[int]:
    if type(v) is not list:
        raise _Bad(f"{what} must be a list")
    for x in v:
        if type(x) is not int:
            raise _Bad(f"{what} must hold ints")
    return v


def _str(v: Any, what: str) -> str:
    if type(v) is not str:
        raise _Bad(f"{what} must be a string")
    return v


def _list(v: Any, what: str) -> list:
    if type(v) is not list:
        raise _Bad(f"{what} must be a list")
    return v


def _dtype(name: Any, what: str) -> torch.dtype:
    d = _ALL_DTYPES.get(_str(name, what))
    if d is None:
        raise _Bad(f"{what}: unknown dtype {name!r}")
    return d


def _data_from_json(d: Any) -> CaptureData:
    if type(d) is not dict:
        raise _Bad("capture data must be an object")
    strings = _list(d.get("strings"), "strings")
    for s in strings:
        _str(s, "strings entries")
    ns = len(strings)
    records = []
    for i, r in enumerate(_list(d.get("records"), "records")):
        r = _list(r, f"records[{i}]")
        if len(r) != 9:
            raise _Bad(f"records[{i}] must have 9 fields")
        head = [_int(x, f"records[{i}]") for x in r[:6]]
        if not 0 <= head[3] < 1 << 64:
            raise _Bad(f"records[{i}]: arg_hash out of range")
        records.append(
            (
                *head,
                tuple(_ints(r[6], f"records[{i}].params")),
                tuple(_ints(r[7], f"records[{i}].parents")),
                _int(r[8], f"records[{i}].role"),
            )
        )
    metas = []
    for i, m in enumerate(_list(d.get("metas"), "metas")):
        m = _list(m, f"metas[{i}]")
        if len(m) != 3:
            raise _Bad(f"metas[{i}] must have 3 fields")
        metas.append((tuple(_ints(m[0], f"metas[{i}].shape")), _dtype(m[1], f"metas[{i}]"), _str(m[2], f"metas[{i}]")))
    meta_ids = _ints(d.get("meta_ids"), "meta_ids")
    if len(meta_ids) != len(records) or any(not 0 <= x < len(metas) for x in meta_ids):
        raise _Bad("meta_ids must have one valid entry per record")
    stacks = []
    for i, st in enumerate(_list(d.get("module_stacks"), "module_stacks")):
        pairs = []
        for p in _list(st, f"module_stacks[{i}]"):
            p = _ints(p, f"module_stacks[{i}]")
            if len(p) != 2 or not 0 <= p[0] < ns:
                raise _Bad(f"module_stacks[{i}]: bad entry")
            pairs.append((p[0], p[1]))
        stacks.append(pairs)

    def triples(key: str, n: int) -> list[tuple]:
        out = []
        for i, e in enumerate(_list(d.get(key), key)):
            e = _ints(e, f"{key}[{i}]")
            if len(e) != n:
                raise _Bad(f"{key}[{i}] must have {n} ints")
            out.append(tuple(e))
        return out

    exits = triples("module_exits", 3)
    passes = triples("module_passes", 2)
    outputs = triples("outputs", 3)
    for e in exits:
        if not (0 <= e[0] < len(records) and 0 <= e[1] < ns):
            raise _Bad("module_exits: id out of range")
    modules = []
    for i, m in enumerate(_list(d.get("modules"), "modules")):
        if type(m) is not dict:
            raise _Bad(f"modules[{i}] must be an object")
        alls = [_str(a, "all_addresses") for a in _list(m.get("all_addresses"), "all_addresses")]
        modules.append(
            ModuleInfo(
                _str(m.get("address"), "address"),
                _str(m.get("class_name"), "class_name"),
                _int(m.get("num_passes"), "num_passes"),
                alls,
            )
        )
    params = []
    for i, p in enumerate(_list(d.get("params"), "params")):
        if type(p) is not dict:
            raise _Bad(f"params[{i}] must be an object")
        rg = p.get("requires_grad")
        if type(rg) is not bool:
            raise _Bad(f"params[{i}].requires_grad must be a bool")
        params.append(
            ParamInfo(
                _str(p.get("address"), "address"),
                tuple(_ints(p.get("shape"), "shape")),
                _dtype(p.get("dtype"), f"params[{i}]"),
                _int(p.get("numel"), "numel"),
                _int(p.get("nbytes"), "nbytes"),
                rg,
                None,
            )
        )
    for i, r in enumerate(records):
        if not 0 <= r[5] < len(stacks):
            raise _Bad(f"records[{i}]: module stack out of range")
        if any(not 0 <= p < len(params) for p in r[6]):
            raise _Bad(f"records[{i}]: parameter id out of range")
    return CaptureData(strings, records, meta_ids, metas, stacks, exits, passes, outputs, modules, params)


def _build_log(model_name: str, data: CaptureData, info: dict[str, Any]) -> ModelLog:
    from .model_log import ModelLog

    try:
        fin = _core.finalize(*data.core_inputs(), bool(info.get("detect_loops", True)))
    except (ValueError, TypeError, OverflowError, IndexError) as e:
        raise TorchLensIOError(f"invalid bundle metadata: the capture records are inconsistent ({e})") from None
    full = {
        "random_seed": info.get("random_seed", 0),
        "time_forward": info.get("time_forward", 0.0),
        "time_core": info.get("time_core", 0.0),
        "time_total": info.get("time_total", 0.0),
        "layers_to_save": info.get("layers_to_save", "all"),
        "detect_loops": bool(info.get("detect_loops", True)),
    }
    return ModelLog(model_name, data, fin, {}, full)


# ---------------------------------------------------------------------------------------- writing
def _versions() -> dict[str, Any]:
    return {
        "io_format_version": _core.IO_FORMAT_VERSION,
        "torchlens_version": _core.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": f"{sys.platform}-{platform.machine()}",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "bundle_format": "directory",
    }


def _tmp_name(target: Path) -> Path:
    return target.with_name(f"{target.name}.tmp.{uuid.uuid4().hex}")


def _mark_partial(tmp: Path, reason: str) -> None:
    try:
        (tmp / "PARTIAL").write_text("")
        (tmp / "REASON.txt").write_text(reason + "\n")
    except OSError:
        pass


def _commit(
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
) -> None:
    meta = {
        "schema": METADATA_SCHEMA,
        "version": METADATA_VERSION,
        "model_name": model_name,
        "info": _json_safe(info),
        "capture": _data_to_json(data),
        "extras": _extras_to_json(data),
        "activations": activations,
        "transformed": transformed or [],
    }
    nbytes, sha = _core.write_file(str(tmp / "metadata.json"), json.dumps(meta, separators=(",", ":")).encode())
    tensors = sorted(tensors, key=lambda e: e["blob_id"])
    manifest = {
        **_versions(),
        "n_layers": n_layers,
        "n_activation_blobs": sum(1 for t in tensors if t["kind"] in _ACT_KINDS),
        "n_gradient_blobs": sum(1 for t in tensors if t["kind"] in _GRAD_KINDS),
        "n_auxiliary_blobs": sum(1 for t in tensors if t["kind"] not in _ACT_KINDS + _GRAD_KINDS),
        "metadata": {"relative_path": "metadata.json", "format": "json", "bytes": nbytes, "sha256": sha},
        "tensors": tensors,
        "unsupported_tensors": unsupported,
    }
    _core.bundle_commit(str(tmp), str(target), json.dumps(manifest, indent=2).encode())


_ACT_KINDS = ("activation", "transformed_activation")
_GRAD_KINDS = ("gradient", "transformed_gradient")


def _entry(
    blob_id: int, label: str, dtype: str, shape: Any, device: str, nbytes: int, sha: str, kind: str = "activation"
) -> dict[str, Any]:
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


def _info_of(log: ModelLog) -> dict[str, Any]:
    return {
        "random_seed": log.random_seed_used,
        "time_forward": log.time_forward_pass,
        "time_core": log.time_postprocessing,
        "time_total": log.time_total,
        "layers_to_save": log.layers_to_save,
        "detect_loops": log.detect_loops,
    }


def _check_target(target: Path) -> None:
    _core.refuse_symlink(str(target), "bundle target")
    if target.exists():
        raise TorchLensIOError(f"Bundle path already exists: {target}")


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
        include_gradients: Accepted for compatibility (gradients are not captured in this release).
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
    tmp = _tmp_name(target)
    try:
        (tmp / "blobs").mkdir(parents=True)
        _save_into(model_log, tmp, target, include_activations, strict)
    except BaseException as e:
        _mark_partial(tmp, f"{type(e).__name__}: {e}")
        if backup is not None and not target.exists():
            os.rename(backup, target)
        if isinstance(e, TorchLensIOError | KeyboardInterrupt):
            raise
        raise TorchLensIOError(f"Failed to save bundle at {target}: {type(e).__name__}: {e}") from e
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _copy_blob(ref: LazyActivationRef, dest: Path, blob_id: int, label: str, kind: str) -> dict[str, Any]:
    src = Path(ref.source_bundle_path) / ref.relative_path
    _core.refuse_symlink(str(src), "blob")
    _, _, _, nbytes, sha = _core.blob_scan(str(src))
    if sha != ref.expected_sha256:
        raise TorchLensIOError("source bundle manifest has changed since load; materialize refs and retry")
    shutil.copyfile(src, dest)
    return _entry(blob_id, label, ref.dtype, ref.shape, ref.device_at_save, nbytes, sha, kind)


def _write_tensor(t: torch.Tensor, dest: Path, blob_id: int, label: str, nid: int, kind: str) -> dict[str, Any]:
    dtype = _DTYPE_NAMES[t.dtype]
    buf = _tensor_bytes(t)
    meta = [("kind", kind), ("label", label), ("node", str(nid))]
    nbytes, sha = _core.blob_write(str(dest), dtype, list(t.shape), meta, buf)
    return _entry(blob_id, label, dtype, t.shape, _device_str(t), nbytes, sha, kind)


def _save_into(log: ModelLog, tmp: Path, target: Path, include_activations: bool, strict: bool) -> None:
    labels = log._col("labels_w_pass")
    pos_of = {nid: p for p, nid in enumerate(log._node_ids)}
    maps: dict[str, list[list[int]]] = {"activation": [], "transformed_activation": []}
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
            dest = tmp / f"blobs/{blob_id:010d}.safetensors"
            if isinstance(src, LazyActivationRef):
                jobs.append((_copy_blob, (src, dest, blob_id, label, kind)))
            else:
                reason = _unsupported_reason(src)
                if reason is not None:
                    if strict and isinstance(src, torch.Tensor):
                        raise TorchLensIOError(f"Unsupported tensor for bundle save at {label} ({kind}): {reason}")
                    unsupported.append({"label": label, "kind": kind, "reason": reason})
                    continue
                jobs.append((_write_tensor, (src, dest, blob_id, label, nid, kind)))
            memo[key] = blob_id
            next_id += 1
            maps[kind].append([nid, blob_id])
    # The Rust writes release the GIL: a few threads overlap checksumming, copies and disk I/O.
    if len(jobs) > 1:
        with ThreadPoolExecutor(max_workers=IO_THREADS) as pool:
            tensors.extend(pool.map(lambda j: j[0](*j[1]), jobs))
    else:
        tensors.extend(j[0](*j[1]) for j in jobs)
    _commit(
        tmp,
        target,
        log.model_name,
        log._data,
        _info_of(log),
        maps["activation"],
        tensors,
        unsupported,
        len(log),
        transformed=maps["transformed_activation"],
    )


# ---------------------------------------------------------------------------------------- loading
def _incomplete_siblings(target: Path) -> list[Path]:
    parent = target.parent if str(target.parent) else Path(".")
    try:
        cands = [p for p in parent.glob(f"{target.name}.tmp.*") if p.is_dir() and not p.is_symlink()]
    except OSError:
        return []
    return sorted(cands, key=lambda p: p.stat().st_mtime)


def _version_policy(manifest: dict[str, Any]) -> None:
    theirs = str(manifest.get("torch_version", ""))
    ours = torch.__version__
    if theirs != ours:
        try:
            ta = [int(x) for x in theirs.split("+")[0].split(".")[:2]]
            oa = [int(x) for x in ours.split("+")[0].split(".")[:2]]
        except ValueError:
            raise TorchLensIOError(
                f"bundle was written with torch {theirs!r}, which cannot be compared with torch {ours}"
            ) from None
        if ta[0] != oa[0]:
            raise TorchLensIOError(f"bundle was written with torch {theirs}; torch {ours} has another major version")
        if ta[1:] != oa[1:]:
            warnings.warn(
                f"bundle was written with torch {theirs}, loading with torch {ours}", UserWarning, stacklevel=3
            )
    tl_theirs = str(manifest.get("torchlens_version", ""))
    try:
        newer = tuple(int(x) for x in tl_theirs.split(".")[:3]) > tuple(
            int(x) for x in _core.__version__.split(".")[:3]
        )
    except ValueError:
        newer = tl_theirs != _core.__version__
    if newer:
        warnings.warn(f"bundle was written by a newer torchlens ({tl_theirs})", UserWarning, stacklevel=3)
    if int(manifest["io_format_version"]) < _core.IO_FORMAT_VERSION:
        warnings.warn("bundle uses an older io format version", DeprecationWarning, stacklevel=3)


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
            `entry.materialize_activation()` (until then `activation` is None).
        map_location: Device for the loaded tensors.
        materialize_nested: Accepted for compatibility (bundles hold no nested tensors).

    Returns:
        A `ModelLog` that prints, indexes and renders like the original.

    Raises:
        TorchLensIOError: Missing, incomplete, truncated, corrupted, hostile or incompatible bundle.
    """
    target = Path(os.fspath(path))
    if not target.exists() and not target.is_symlink():
        inc = _incomplete_siblings(target)
        if inc:
            raise TorchLensIOError(
                f"No bundle at {target}, but an incomplete capture was found at {inc[-1]} (interrupted or failed "
                f"streaming); call torchlens.recover_bundle({str(target)!r}) to turn what was written into a bundle"
            )
        raise TorchLensIOError(f"No bundle at {target}")
    text, meta_bytes, extra = _core.bundle_open(str(target))
    manifest = json.loads(text)
    _version_policy(manifest)
    by_id = {t["blob_id"]: t for t in manifest["tensors"]}
    if extra:
        shas = {t["sha256"] for t in manifest["tensors"]}
        for name in extra:
            p = target / "blobs" / name
            if p.is_file() and not p.is_symlink():
                try:
                    sha = _core.blob_scan(str(p))[4]
                except TorchLensIOError:
                    sha = None
                if sha in shas:
                    raise TorchLensIOError(f"unexpected file blobs/{name} duplicates a listed blob")
        warnings.warn(
            f"bundle {target} has unexpected files in blobs/: {', '.join(extra[:10])}", UserWarning, stacklevel=2
        )
    try:
        meta = json.loads(meta_bytes)
    except (ValueError, RecursionError) as e:
        raise TorchLensIOError(f"invalid bundle metadata: not valid JSON ({e})") from None
    try:
        if type(meta) is not dict or meta.get("schema") != METADATA_SCHEMA:
            raise _Bad(f"schema must be {METADATA_SCHEMA!r}")
        version = meta.get("version")
        if type(version) is not int or version > METADATA_VERSION or version < 1:
            raise _Bad(f"unsupported metadata version {version!r}")
        data = _data_from_json(meta.get("capture"))
        _extras_from_json(meta.get("extras"), data)
        info = meta.get("info")
        if type(info) is not dict:
            raise _Bad("info must be an object")
        model_name = _str(meta.get("model_name"), "model_name")
        acts = []
        for a in _list(meta.get("activations"), "activations"):
            a = _ints(a, "activations entries")
            if len(a) != 2 or a[1] not in by_id or by_id[a[1]]["kind"] != "activation":
                raise _Bad(f"activation entry {a} refers to no activation blob")
            acts.append((a[0], a[1]))
        trans = []
        for a in _list(meta.get("transformed", []), "transformed"):
            a = _ints(a, "transformed entries")
            if len(a) != 2 or a[1] not in by_id or by_id[a[1]]["kind"] != "transformed_activation":
                raise _Bad(f"transformed entry {a} refers to no transformed_activation blob")
            trans.append((a[0], a[1]))
        if manifest["n_layers"] != 0 and not isinstance(info.get("random_seed", 0), int):
            raise _Bad("info.random_seed must be an int")
    except (_Bad, RecursionError) as e:
        raise TorchLensIOError(f"invalid bundle metadata: {e}") from None
    log = _build_log(model_name, data, info)
    if len(log) != manifest["n_layers"]:
        raise TorchLensIOError(
            f"invalid bundle: manifest says {manifest['n_layers']} layers, metadata gives {len(log)}"
        )
    known = set(log._node_ids)
    refs: dict[int, LazyActivationRef] = {}
    transformed = _LazyTensorDict(map_location)
    for pairs, dest in ((acts, log._lazy), (trans, transformed)):
        for nid, bid in pairs:
            if nid not in known:
                raise TorchLensIOError(f"invalid bundle metadata: activation for unknown node {nid}")
            t = by_id[bid]
            ref = refs.get(bid)
            if ref is None:
                ref = refs[bid] = LazyActivationRef(
                    bid,
                    tuple(t["shape"]),
                    t["dtype"],
                    t["device_at_save"],
                    str(target.resolve()),
                    t["relative_path"],
                    t["kind"],
                    t["sha256"],
                )
            dest[nid] = ref
    if transformed:
        log._transformed = transformed
    if not lazy:
        unique = {ref.blob_id: ref for ref in [*log._lazy.values(), *transformed.values()]}

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
        for nid, ref in log._lazy.items():
            log._saved[nid] = loaded[ref.blob_id]
        log._lazy.clear()
        for nid, ref in list(transformed.items()):
            transformed[nid] = loaded[ref.blob_id]
    log._loaded_from_bundle = True
    log._bundle_path = str(target)
    return log


# ---------------------------------------------------------------------------------------- streaming
class StreamSink:
    """Receives each saved tensor during capture and streams it to a temp bundle directory."""

    def __init__(self, target: str | os.PathLike, keep: bool, model_name: str, info: dict[str, Any]) -> None:
        self.target = Path(os.fspath(target))
        _check_target(self.target)
        self.tmp = _tmp_name(self.target)
        (self.tmp / "blobs").mkdir(parents=True)
        self.keep = keep
        self.writer = _core.StreamWriter(str(self.tmp), STREAM_QUEUE_BYTES, IO_THREADS)
        self.nodes: dict[int, tuple[str, tuple[int, ...], str]] = {}
        self._session: Any = None
        self._offsets = [0, 0, 0, 0, 0]
        self._jnext = 0
        self.model_name = model_name
        self.info = info

    def __call__(self, session: Any, t: torch.Tensor, nid: int) -> None:
        if session is not self._session:
            self._start(session)
        reason = _unsupported_reason(t)
        if reason is not None:
            raise TorchLensIOError(f"Unsupported tensor for streaming at node {nid} (activation): {reason}")
        dtype = _DTYPE_NAMES[t.dtype]
        shape = tuple(t.shape)
        meta = [("kind", "activation"), ("node", str(nid)), ("device", _device_str(t))]
        with _paused():  # the torch calls below must not be recorded
            buf = _tensor_bytes(t)
        self.writer.submit(nid + 1, dtype, list(shape), meta, buf)
        self.nodes[nid] = (dtype, shape, _device_str(t))
        if nid >= self._jnext:
            self.journal(session)
            self._jnext = nid + JOURNAL_EVERY

    def _start(self, session: Any) -> None:
        self._session = session
        self._offsets = [0, 0, 0, 0, 0]
        self.nodes.clear()
        modules: dict[str, str] = {}
        params: list[dict[str, Any]] = []
        prep = session.prepared
        plan = getattr(prep, "plan", None)
        if plan is not None:
            for i, m in enumerate(plan.modules):
                modules[plan.addresses[id(m)]] = plan.module_types[i]
        for addr, p in session.params:
            params.append(
                {
                    "address": addr,
                    "shape": list(p.shape),
                    "dtype": str(p.dtype).removeprefix("torch."),
                    "numel": p.numel(),
                    "nbytes": p.numel() * p.element_size(),
                    "requires_grad": bool(p.requires_grad),
                }
            )
        head = {
            "header": 1,
            "model_name": self.model_name,
            "info": _json_safe(self.info),
            "modules": modules,
            "params": params,
        }
        self.writer.append("journal.jsonl", (json.dumps(head) + "\n").encode())

    def journal(self, session: Any) -> None:
        """Append the capture metadata recorded since the last call (for crash recovery)."""
        from ._capture.strings import STRINGS

        o = self._offsets
        recs = session.records
        chunk = {
            "records_from": o[0],
            "records": [[*r[:6], list(r[6]), list(r[7]), r[8]] for r in recs[o[0] :]],
            "meta_ids": list(session.meta_ids[o[0] :]),
            "metas_from": o[1],
            "metas": [[list(s), str(d).removeprefix("torch."), g] for s, d, g in session.metas[o[1] :]],
            "strings_from": o[2],
            "strings": STRINGS[o[2] :],
            "stacks_from": o[3],
            "module_stacks": [[list(p) for p in st] for st in session.module_stacks[o[3] :]],
            "exits_from": o[4],
            "module_exits": [list(e) for e in session.module_exits[o[4] :]],
        }
        self._offsets = [
            len(recs),
            len(session.metas),
            len(STRINGS),
            len(session.module_stacks),
            len(session.module_exits),
        ]
        self.writer.append("journal.jsonl", (json.dumps(chunk, separators=(",", ":")) + "\n").encode())

    def abort(self, reason: str) -> None:
        try:
            self.writer.close()
        finally:
            _mark_partial(self.tmp, reason)

    def commit(self, log: ModelLog) -> None:
        """Write metadata and manifest for the finished capture and rename the bundle into place."""
        try:
            written = {bid: (n, sha) for bid, n, sha in self.writer.finish()}
            labels = log._col("labels_w_pass")
            n_rec = log._n_records
            tensors = []
            activations = []
            for pos, nid in enumerate(log._node_ids):
                src = nid if nid < n_rec else log._data.outputs[nid - n_rec][0]
                if src in self.nodes and (src + 1) in written:
                    activations.append([nid, src + 1])
                    if nid == src:
                        dtype, shape, dev = self.nodes[src]
                        n, sha = written[src + 1]
                        tensors.append(_entry(src + 1, labels[pos], dtype, shape, dev, n, sha))
            listed = {t["blob_id"] for t in tensors}
            for bid in list(written):
                if bid not in listed:  # a saved node removed as an orphan: not part of the bundle
                    os.remove(self.tmp / f"blobs/{bid:010d}.safetensors")
            _commit(self.tmp, self.target, log.model_name, log._data, _info_of(log), activations, tensors, [], len(log))
        except BaseException as e:
            _mark_partial(self.tmp, f"{type(e).__name__}: {e}")
            raise
        if not self.keep:
            resolved = str(self.target.resolve())
            by_id = {t["blob_id"]: t for t in tensors}
            refs: dict[int, LazyActivationRef] = {}
            for nid, bid in activations:
                t = by_id[bid]
                ref = refs.get(bid)
                if ref is None:
                    ref = refs[bid] = LazyActivationRef(
                        bid,
                        tuple(t["shape"]),
                        t["dtype"],
                        t["device_at_save"],
                        resolved,
                        t["relative_path"],
                        "activation",
                        t["sha256"],
                    )
                log._lazy[nid] = ref
                log._saved.pop(nid, None)


# ---------------------------------------------------------------------------------------- recovery
def _find_incomplete(path: Path) -> tuple[Path, Path]:
    name = path.name
    base, sep, tail = name.rpartition(".tmp.")
    if sep and len(tail) == 32 and path.is_dir():
        return path, path.with_name(base)
    inc = [p for p in _incomplete_siblings(path) if (p / "journal.jsonl").exists()]
    if not inc:
        raise TorchLensIOError(f"nothing to recover for {path}: no incomplete capture ({name}.tmp.*) with a journal")
    return inc[-1], path


def recover_bundle(path: str | os.PathLike) -> str:
    """Turn the temp directory of an interrupted streamed capture into a valid bundle.

    Args:
        path: The bundle path the capture was streaming to, or its `{name}.tmp.{hex}` directory.

    Returns:
        The path of the recovered bundle (the original target path). Its log holds the operations
        recorded up to the last journal chunk, with the activations that were fully written; it
        has no output layers.

    Raises:
        TorchLensIOError: Nothing to recover, or the journal is unreadable.
    """
    p = Path(os.fspath(path))
    if (p / "manifest.json").exists():
        return str(p)
    tmp, target = _find_incomplete(p)
    _core.refuse_symlink(str(tmp), "bundle directory")
    _check_target(target)
    jpath = tmp / "journal.jsonl"
    _core.refuse_symlink(str(jpath), "journal")
    head: dict[str, Any] | None = None
    cols: dict[str, list] = {
        "records": [],
        "meta_ids": [],
        "metas": [],
        "strings": [],
        "module_stacks": [],
        "module_exits": [],
    }
    try:
        lines = jpath.read_bytes().split(b"\n")
    except OSError as e:
        raise TorchLensIOError(f"cannot read journal {jpath}: {e}") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            break  # a line cut short by the crash: everything before it is usable
        if type(doc) is not dict:
            raise TorchLensIOError(f"invalid journal {jpath}")
        if "header" in doc:
            head = doc
            continue
        try:
            for key, off in (
                ("records", "records_from"),
                ("metas", "metas_from"),
                ("strings", "strings_from"),
                ("module_stacks", "stacks_from"),
                ("module_exits", "exits_from"),
            ):
                k = _int(doc[off], off)
                cols[key][k:] = _list(doc[key], key)
            r0 = _int(doc["records_from"], "records_from")
            cols["meta_ids"][r0:] = _list(doc["meta_ids"], "meta_ids")
        except (KeyError, _Bad) as e:
            raise TorchLensIOError(f"invalid journal {jpath}: {e}") from None
    if head is None:
        raise TorchLensIOError(f"nothing to recover in {tmp}: the journal has no header")
    records = cols["records"]
    n = len(records)
    stacks = cols["module_stacks"] or [[]]
    strings = cols["strings"]
    passes: dict[int, int] = {}
    for st in stacks:
        for a, k in st if type(st) is list else ():
            if type(a) is int and type(k) is int:
                passes[a] = max(passes.get(a, 0), k)
    classes = head.get("modules") if type(head.get("modules")) is dict else {}
    modules = []
    for a, k in sorted(passes.items()):
        addr = strings[a] if 0 <= a < len(strings) else "?"
        modules.append(
            {"address": addr, "class_name": str(classes.get(addr, "Module")), "num_passes": k, "all_addresses": [addr]}
        )
    capture = {
        "strings": strings,
        "records": records,
        "meta_ids": cols["meta_ids"][:n],
        "metas": cols["metas"],
        "module_stacks": stacks,
        "module_exits": [e for e in cols["module_exits"] if type(e) is list and e and type(e[0]) is int and e[0] < n],
        "module_passes": [[a, k] for a, k in sorted(passes.items())],
        "outputs": [],
        "modules": modules,
        "params": head.get("params", []),
    }
    try:
        data = _data_from_json(capture)
    except _Bad as e:
        raise TorchLensIOError(f"invalid journal {jpath}: {e}") from None
    info = head.get("info") if type(head.get("info")) is dict else {}
    info = {**info, "time_forward": 0.0, "time_core": 0.0, "time_total": 0.0}
    model_name = str(head.get("model_name", "model"))
    log = _build_log(model_name, data, info)
    labels = log._col("labels_w_pass")
    pos_of = {nid: q for q, nid in enumerate(log._node_ids)}
    tensors = []
    activations = []
    blobs = tmp / "blobs"
    for f in sorted(blobs.iterdir()) if blobs.is_dir() else []:
        if f.is_symlink() or not f.name.endswith(".safetensors") or not f.is_file():
            if f.is_file() and f.name.endswith(".partial"):
                f.unlink()
            continue
        try:
            dtype, shape, hmeta, nbytes, sha = _core.blob_scan(str(f))
            hm = dict(hmeta)
            nid = int(hm["node"])
            dev = str(hm.get("device", "cpu"))
            bid = int(f.name.split(".")[0])
        except (TorchLensIOError, KeyError, ValueError):
            f.unlink()  # cut short by the crash
            continue
        if nid not in pos_of or bid != nid + 1:
            f.unlink()
            continue
        tensors.append(_entry(bid, labels[pos_of[nid]], dtype, shape, dev, nbytes, sha))
        activations.append([nid, bid])
    for extra in ("journal.jsonl", "PARTIAL", "REASON.txt"):
        try:
            (tmp / extra).unlink()
        except FileNotFoundError:
            pass
    info_full = {**_info_of(log), "recovered": True}
    _commit(tmp, target, model_name, data, info_full, activations, tensors, [], len(log))
    return str(target)


def cleanup_tmp(path: str | os.PathLike, *, force: bool = False) -> list[str]:
    """Remove the `{name}.tmp.*` directories left next to `path` by failed saves or captures.

    Args:
        path: The bundle path whose leftovers to remove.
        force: Also remove temp directories not marked `PARTIAL` (e.g. killed streaming runs).

    Returns:
        The removed paths.
    """
    target = Path(os.fspath(path))
    removed: list[str] = []
    for p in _incomplete_siblings(target):
        if p.is_symlink():
            continue
        if force or (p / "PARTIAL").exists():
            shutil.rmtree(p)
            removed.append(str(p))
        else:
            warnings.warn(f"leaving {p}: not marked PARTIAL (use force=True to remove it)", UserWarning, stacklevel=2)
    return removed
