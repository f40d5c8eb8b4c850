"""`torchlens inspect BUNDLE`: what a bundle (`tl.save`) or a fastlog directory holds, read lazily.

A bundle is opened with `tl.load(path, lazy=True)`, which validates the manifest and the metadata
(checksummed) and checks that every blob exists with its listed size, but opens no blob; the
versions and the per-tensor sizes come from `manifest.json` (docs/bundle-format.md). A fastlog
directory is opened with `tl.fastlog.load(path)` (records only, `load_payloads=False`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ._common import CliError, existing_path, fmt_bytes, fmt_shape, one_line, table

FASTLOG_FORMAT = "fastlog-directory"


def add_parser(sub: Any) -> None:
    p = sub.add_parser("inspect", help="what a bundle or a fastlog directory holds (reads no tensor)")
    p.add_argument("bundle", metavar="BUNDLE", help="bundle directory (tl.save) or fastlog directory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--tensors", action="store_true", help="also list every stored tensor")
    p.set_defaults(func=cmd_inspect)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The parsed `manifest.json` of a directory, or None when there is none or it is not a JSON object."""
    man = path / "manifest.json"
    if not path.is_dir() or not man.is_file():
        return None
    try:
        data = json.loads(man.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def fastlog_root(path: str) -> Path | None:
    """The fastlog directory `path` names (a Recorder writes `{parent}/rank_00/{name}`), or None."""
    p = Path(path)
    for cand in (p, p.parent / "rank_00" / p.name):
        man = read_manifest(cand)
        if man is not None and man.get("bundle_format") == FASTLOG_FORMAT:
            return cand
    return None


def cmd_inspect(args: argparse.Namespace) -> int:
    root = fastlog_root(args.bundle)
    if root is None:
        existing_path(args.bundle)
        info, tensors = bundle_info(args.bundle)
    else:
        info, tensors = fastlog_info(root)
    if args.json:
        if args.tensors:
            info["tensors"] = tensors
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) or "-"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif key == "stored_bytes":
            value = f"{fmt_bytes(value)} ({value:,} bytes)"
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    if args.tensors:
        print()
        rows = [[t["label"], t["kind"], fmt_shape(t["shape"]), t["dtype"], fmt_bytes(t["bytes"])] for t in tensors]
        print(table(["label", "kind", "shape", "dtype", "bytes"], rows, right=[False] * 4 + [True]))
    return 0


def load_lazy(path: str) -> Any:
    """`tl.load(path, lazy=True)`; a `TorchLensIOError` (not a bundle, damaged) becomes a `CliError`."""
    import torchlens as tl

    try:
        log = tl.load(path, lazy=True)
    except tl.TorchLensIOError as e:
        raise CliError(f"not a readable torchlens bundle: {one_line(str(e))}") from e
    if not isinstance(log, tl.ModelLog):  # e.g. the rank index of a distributed capture
        raise CliError(f"{path!r} holds a {type(log).__name__}, not one log: name one rank's bundle")
    return log


def bundle_info(path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary of a `tl.save` bundle and its tensor list, from the lazy log and the manifest."""
    log = load_lazy(path)
    man = read_manifest(Path(path)) or {}
    tensors = [
        {
            "label": t.get("label"),
            "kind": t.get("kind"),
            "shape": t.get("shape"),
            "dtype": t.get("dtype"),
            "bytes": t.get("bytes", t.get("length")),  # format 1: the blob file; 2: the data in its shard
        }
        for t in man.get("tensors", [])
    ]
    on_disk = sum(int(t.get("bytes") or 0) for t in man.get("tensors", []))
    on_disk += sum(int(sh.get("bytes") or 0) for sh in man.get("shards", []))
    kinds = Counter(t["kind"] for t in tensors)
    grads = [t for t in tensors if str(t["kind"]).endswith("gradient")]
    info: dict[str, Any] = {
        "path": os.path.abspath(path),
        "format": f"torchlens bundle, io format {man.get('io_format_version')}",
        "written_by": (
            f"torchlens {man.get('torchlens_version')}, torch {man.get('torch_version')}, "
            f"python {man.get('python_version')}, {man.get('platform')}"
        ),
        "created_at": man.get("created_at"),
        "model": log.model_name,
        "layers": len(log.layer_logs),
        "layer_passes": len(log),
        "operations": log.num_operations,
        "params": log.total_params,
        "saved_activations": len(log.layers_with_saved_activations),
        "stored_tensors": dict(sorted(kinds.items())),
        "stored_bytes": on_disk,
        "dtypes": sorted({str(t["dtype"]) for t in tensors}),
        "gradients": bool(grads),
        "unsupported_tensors": len(man.get("unsupported_tensors", [])),
    }
    return info, tensors


def fastlog_info(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Summary of a fastlog directory and its stored payloads, from its index (no payload read)."""
    import torchlens as tl

    try:
        rec = tl.fastlog.load(root)
    except (tl.fastlog.BundleNotFinalizedError, ValueError, OSError) as e:
        raise CliError(f"not a readable fastlog directory: {one_line(str(e))}") from e
    man = read_manifest(root) or {}
    tensors: list[dict[str, Any]] = []
    for r in rec.records:
        md = r.metadata if isinstance(r.metadata, dict) else {}
        if md.get("relative_path"):
            tensors.append(
                {
                    "label": r.label,
                    "kind": r.ctx.kind,
                    "shape": md.get("shape"),
                    "dtype": str(md.get("dtype", "")).removeprefix("torch."),
                    "bytes": md.get("nbytes"),
                }
            )
    info: dict[str, Any] = {
        "path": str(root.resolve()),
        "format": f"fastlog directory, format {man.get('format_version')}",
        "passes": rec.n_passes,
        "records": len(rec),
        "record_kinds": dict(sorted(Counter(r.ctx.kind for r in rec.records).items())),
        "layer_types": dict(Counter(r.ctx.layer_type for r in rec.records if r.ctx.kind == "op").most_common(10)),
        "stored_tensors": len(tensors),
        "stored_bytes": sum(int(t["bytes"] or 0) for t in tensors),
        "dtypes": sorted({t["dtype"] for t in tensors}),
        "keep_op": rec.keep_op_repr,
        "keep_module": rec.keep_module_repr,
    }
    return info, tensors
