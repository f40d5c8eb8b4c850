"""`Recording` (the result of a fastlog run) and reading it back: `load`, `recover` (spec §10.7).

The recording side (`Recorder`, `record`) lives in `_recorder.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..io import _ranks
from . import _storage
from ._types import (
    ActivationRecord,
    BundleNotFinalizedError,
    CaptureSpec,
    RecordingConfigError,
    RecoveryError,
    _from_json,
)

_tuple_getitem = tuple.__getitem__
_SOURCE_OR_OP = frozenset({"op", "input", "buffer"})
_POSTPROCESS = ("none", "module_path_strings", "param_addresses", "all-feasible")
_RECORD_POSTPROCESS = (*_POSTPROCESS, "labels")


@dataclass(frozen=True)
class Recording:
    """Records of one or more fastlog passes (spec §10.7)."""

    records: list[ActivationRecord] = field(default_factory=list)
    by_pass: dict[int, list[int]] = field(default_factory=dict)
    by_label: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    by_module_address: dict[str, list[int]] = field(default_factory=dict)
    bundle_path: str | None = None
    n_passes: int = 0
    n_records: int = 0
    pass_start_times: list[float] = field(default_factory=list)
    pass_end_times: list[float] = field(default_factory=list)
    predicate_failures: list[Any] = field(default_factory=list)
    predicate_failure_overflow_count: int = 0
    keep_op_repr: str | None = None
    keep_module_repr: str | None = None
    history_size: int = 8
    activation_postfunc_repr: str | None = None
    recovered: bool = False
    recovery_warnings: list[str] = field(default_factory=list)
    sample_ids: dict[int, Any] = field(default_factory=dict)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _add(self, rec: ActivationRecord) -> None:
        i = len(self.records)
        self.records.append(rec)
        ctx = rec.ctx
        ev = _tuple_getitem(ctx, 0)
        p = _tuple_getitem(ctx, 2)[0]
        self.by_pass.setdefault(p, []).append(i)
        label = ev[15] if ev[15] is not None else ctx.label
        self.by_label.setdefault(label, []).append((p, i))
        if label[-4:] != "_raw" and ev[0] in _SOURCE_OR_OP:
            raw = ctx.raw_label
            if raw != label:
                self.by_label.setdefault(raw, []).append((p, i))
                if ":" in label:  # a multi-pass layer: its label without the pass also resolves
                    self.by_label.setdefault(label.split(":", 1)[0], []).append((p, i))
        frames = ev[7]
        if frames:
            self.by_module_address.setdefault(frames[-1][0], []).append(i)
        self._set("n_records", i + 1)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ActivationRecord]:
        return iter(self.records)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self.records[key]
        if isinstance(key, str):
            hits = self.by_label.get(key)
            if hits is None:
                raise KeyError(f"no fastlog record labelled {key!r}")
            return [self.records[i] for _, i in hits]
        raise TypeError("Recording indices must be int or str")

    def iter_pass(self, n: int) -> Iterator[ActivationRecord]:
        for i in self.by_pass.get(n, []):
            yield self.records[i]

    def to_pandas(self) -> Any:
        import pandas as pd

        rows = [
            {
                "kind": r.ctx.kind,
                "label": r.ctx.label,
                "pass_index": r.ctx.pass_index,
                "event_index": r.ctx.event_index,
                "save_activation": r.spec.save_activation,
                "save_metadata": r.spec.save_metadata,
            }
            for r in self.records
        ]
        return pd.DataFrame(
            rows, columns=["kind", "label", "pass_index", "event_index", "save_activation", "save_metadata"]
        )

    def to_model_log(
        self, model: nn.Module, input_args: Any, input_kwargs: dict[str, Any] | None = None, *, pass_index: int = 1
    ) -> Any:
        """A `ModelLog` of `model` on the input of pass `pass_index` whose saved activations are this
        recording's kept payloads (RAM, loaded, or read from the bundle's blobs).

        The graph comes from one metadata-only `log_forward_pass` (the model's buffers and RNG states are
        restored afterwards); records are matched to nodes by raw label, layer type and shape.

        Raises:
            ValueError: No such pass, or the model computes a different graph for this input.
        """
        from ._to_model_log import recording_to_model_log

        return recording_to_model_log(self, model, input_args, input_kwargs, pass_index=pass_index)

    def summary(self) -> str:
        return f"Recording(n_passes={self.n_passes}, n_records={self.n_records})"

    def __repr__(self) -> str:
        return self.summary()

    def enrich(self, steps: str | Iterable[str] = "all-feasible", model: nn.Module | None = None) -> Recording:
        """Add `module_path_strings` / `module_path` (and parameter addresses given `model`) to metadata."""
        names = [steps] if isinstance(steps, str) else list(steps)
        for s in names:
            if s not in _POSTPROCESS:
                raise RecordingConfigError(f"unknown postprocess step {s!r}; choose from {_POSTPROCESS}")
        want_paths = any(s in ("module_path_strings", "all-feasible") for s in names)
        want_params = any(s in ("param_addresses", "all-feasible") for s in names)
        params_by_module: dict[str, list[str]] = {}
        if want_params and model is not None:
            for addr, mod in model.named_modules():
                params_by_module[addr] = [f"{addr}.{n}" if addr else n for n, _ in mod.named_parameters(recurse=False)]
        for r in self.records:
            md = r.metadata if isinstance(r.metadata, dict) else {}
            if want_paths:
                paths = tuple(f.module_address for f in r.ctx.module_stack)
                md["module_path_strings"] = paths
                md["module_path"] = paths[-1] if paths else ""
            if want_params and model is not None and r.ctx.kind == "op":
                addr = r.ctx.module_address
                if addr is not None:
                    md["param_addresses"] = tuple(params_by_module.get(addr, ()))
            if r.metadata is not md:
                object.__setattr__(r, "metadata", md)
        return self


def _records_from_entries(entries: list[dict], root: Path, load_payloads: bool) -> Recording:
    rec = Recording(bundle_path=str(root))
    passes: set[int] = set()
    for e in entries:
        try:
            ctx = _from_json(e["ctx"])
            sp = e.get("spec") or {}
            spec = CaptureSpec(
                bool(sp.get("save_activation", True)),
                bool(sp.get("save_metadata", True)),
                bool(sp.get("keep_grad", False)),
                sp.get("device"),
                sp.get("dtype"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise BundleNotFinalizedError(f"fastlog index entry is malformed: {err}") from err
        meta = e.get("metadata") if isinstance(e.get("metadata"), dict) else {}
        disk = tr = None
        if load_payloads and meta.get("relative_path"):
            tensors = _storage.read_blob(root / str(meta["relative_path"]))
            for k, v in tensors.items():
                if k.endswith("::transformed_activation"):
                    tr = v
                else:
                    disk = v
        at = e.get("recorded_at")
        rec._add(
            ActivationRecord(ctx, spec, None, disk, None, tr, meta, float(at) if isinstance(at, int | float) else 0.0)
        )
        if isinstance(ctx.pass_index, int):
            passes.add(ctx.pass_index)
    rec._set("n_passes", max(passes) if passes else 0)
    return rec


def load(path: str | os.PathLike, *, load_payloads: bool = False, verify: bool = False) -> Any:
    """Load a finalized fastlog directory. Records carry ctx/spec/metadata; tensors only with `load_payloads`.

    The `bundle_path` of a `torch.distributed` run (rank shards `rank_*/{name}` beside it) opens as
    one lazy `ShardedRecording` over every rank's shard (docs/scaling.md).
    """
    root = Path(path)
    if _ranks.is_rank_sharded(root):
        from ._sharded import open_sharded

        return open_sharded(root, (load, recover), load_payloads=load_payloads, verify=verify, salvage=False)
    if not root.exists():
        ranked = root.parent / "rank_00" / root.name
        if ranked.exists():
            root = ranked
        else:
            raise FileNotFoundError(f"no fastlog bundle at {root}")
    if not root.is_dir():
        raise BundleNotFinalizedError(f"{root} is not a fastlog directory")
    man = root / "manifest.json"
    if not man.is_file():
        raise BundleNotFinalizedError("fastlog bundle is partial; use tl.fastlog.recover()")
    manifest = _storage.read_json(man)
    if not isinstance(manifest, dict) or manifest.get("bundle_format") != _storage.BUNDLE_FORMAT:
        raise BundleNotFinalizedError(f"{root} is not a fastlog-directory bundle")
    if manifest.get("format_version", 0) > _storage.FORMAT_VERSION:
        raise BundleNotFinalizedError(f"fastlog bundle format {manifest.get('format_version')} is newer than supported")
    entries, _ = _storage.scan_index(root, strict=True, verify=verify)
    rec = _records_from_entries(entries, root, load_payloads)
    meta = _storage.read_json(root / "metadata.json") if (root / "metadata.json").is_file() else {}
    if isinstance(meta, dict):
        for k in ("pass_start_times", "pass_end_times"):
            if isinstance(meta.get(k), list):
                rec._set(k, meta[k])
        for k in ("keep_op_repr", "keep_module_repr", "activation_postfunc_repr"):
            if isinstance(meta.get(k), str):
                rec._set(k, meta[k])
        if isinstance(meta.get("n_passes"), int):
            rec._set("n_passes", meta["n_passes"])
        if isinstance(meta.get("sample_ids"), dict):
            rec._set("sample_ids", {int(k): v for k, v in meta["sample_ids"].items()})
        if isinstance(meta.get("history_size"), int):
            rec._set("history_size", meta["history_size"])
        if isinstance(meta.get("predicate_failure_overflow_count"), int):
            rec._set("predicate_failure_overflow_count", meta["predicate_failure_overflow_count"])
    return rec


def recover(path: str | os.PathLike, *, load_payloads: bool = False) -> Any:
    """Load a finalized bundle, or salvage every complete record of an interrupted one.

    A sharded `bundle_path` gives a `ShardedRecording` whose incomplete shards are salvaged too.
    """
    p = Path(path)
    if _ranks.is_rank_sharded(p):
        from ._sharded import open_sharded

        return open_sharded(p, (load, recover), load_payloads=load_payloads, verify=False, salvage=True)
    for cand in (p, p.parent / "rank_00" / p.name):
        if (cand / "manifest.json").is_file():
            return load(cand, load_payloads=load_payloads)
    root = _storage.find_partial(p) or _storage.find_partial(p.parent / "rank_00" / p.name)
    if root is None:
        raise RecoveryError("no recoverable index")
    entries, warnings = _storage.scan_index(root, strict=False, verify=True)
    good: list[dict] = []
    for e in entries:
        try:
            _from_json(e["ctx"])
            good.append(e)
        except (KeyError, TypeError, ValueError):
            warnings.append("malformed record")
    rec = _records_from_entries(good, root, load_payloads)
    rec._set("recovered", True)
    rec._set("recovery_warnings", warnings)
    return rec
