"""Recovery of interrupted streamed captures (`recover_bundle`) and removal of leftovers
(`cleanup_tmp`). The core reads and checks the journal (`_core.journal_read`); this module
rebuilds the log, keeps the fully written blobs and commits the result as a bundle.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

from .._errors import TorchLensIOError
from .._native import core as _core
from . import _shards
from ._grads import GRAD_KINDS, recovered_gradients
from ._load import incomplete_siblings
from ._ranks import is_rank_sharded, open_shards
from ._save import check_target, commit, entry, info_of
from ._schema import build_log, capture_from_plain
from ._stream import JOURNAL_FILE


def _find_incomplete(path: Path) -> tuple[Path, Path]:
    name = path.name
    base, sep, tail = name.rpartition(".tmp.")
    if sep and len(tail) == 32 and path.is_dir():
        return path, path.with_name(base)
    inc = [p for p in incomplete_siblings(path) if (p / JOURNAL_FILE).exists()]
    if not inc:
        raise TorchLensIOError(f"nothing to recover for {path}: no incomplete capture ({name}.tmp.*) with a journal")
    return inc[-1], path


def _classify(bid: int, hm: dict[str, str], pos_of: dict[int, int]) -> tuple[int, str, str, int] | None:
    """(node id, kind, device, arrival seq) of a recovered tensor, or None when it belongs to no
    node of the recovered log (or its metadata is unreadable)."""
    try:
        nid = int(hm["node"])
        kind = str(hm.get("kind", "activation"))
        seq = int(hm["seq"]) if kind in GRAD_KINDS else 0
    except (KeyError, ValueError):
        return None
    if nid not in pos_of:
        return None
    if kind in GRAD_KINDS:  # gradient blob ids are allocated per arrival
        return nid, kind, str(hm.get("device", "cpu")), seq
    # Streamed blob ids: node + 1; with a postfunc 2 * node + 1 (raw) and 2 * node + 2 (transformed).
    ids = (nid + 1, 2 * nid + 1) if kind == "activation" else (2 * nid + 2,)
    if kind not in ("activation", "transformed_activation") or bid not in ids:
        return None
    return nid, kind, str(hm.get("device", "cpu")), seq


def recover_bundle(path: str | os.PathLike) -> str:
    """Turn the temp directory of an interrupted streamed capture into a valid bundle.

    Args:
        path: The bundle path the capture was streaming to, or its `{name}.tmp.{hex}` directory.
            The bundle path of a `torch.distributed` capture recovers every incomplete rank shard.

    Returns:
        The path of the recovered bundle (the original target path). Its log holds the operations
        recorded up to the last journal chunk, with the activations that were fully written; it
        has no output layers. Streamed gradients (`save_gradients_to`) are kept too: the
        latest complete blob of each layer, in arrival order.

    Raises:
        TorchLensIOError: Nothing to recover, or the journal is unreadable.
    """
    p = Path(os.fspath(path))
    if (p / "manifest.json").exists():
        return str(p)
    if is_rank_sharded(p) and not incomplete_siblings(p):  # a torch.distributed bundle path: each incomplete shard
        for s in open_shards(p).incomplete:
            if incomplete_siblings(s.path):
                recover_bundle(s.path)
        return str(p)
    tmp, target = _find_incomplete(p)
    _core.refuse_symlink(str(tmp), "bundle directory")
    check_target(target)
    journal = _core.journal_read(str(tmp / JOURNAL_FILE))
    data = capture_from_plain(journal["capture"])
    info = {**journal["info"], "time_forward": 0.0, "time_core": 0.0, "time_total": 0.0}
    model_name = journal["model_name"]
    log = build_log(model_name, data, info)
    labels = log._col("labels_w_pass")
    pos_of = {nid: q for q, nid in enumerate(log._node_ids)}
    tensors = []
    maps: dict[str, list[list[int]]] = {"activation": [], "transformed_activation": []}
    found_grads: list[tuple[int, str, int, dict, Path | None]] = []
    if _shards.packed(tmp):  # format 2: the complete, intact tensors of the shards' journal
        for bid, shard, off, length, sha, dtype, shape, meta in _core.shard_recover(str(tmp)):
            found = _classify(bid, dict(meta), pos_of)
            if found is None:
                continue  # its bytes stay in the shard, unlisted
            nid, kind, dev, seq = found
            ent = _shards.entry(bid, labels[pos_of[nid]], dtype, shape, dev, shard, off, length, sha, kind)
            if kind in GRAD_KINDS:
                found_grads.append((seq, kind, nid, ent, None))
            else:
                tensors.append(ent)
                maps[kind].append([nid, bid])
    blobs = tmp / "blobs"
    for f in sorted(blobs.iterdir()) if blobs.is_dir() else []:
        if f.is_symlink() or not f.name.endswith(".safetensors") or not f.is_file():
            if f.is_file() and f.name.endswith(".partial"):
                f.unlink()
            continue
        try:
            dtype, shape, hmeta, nbytes, sha = _core.blob_scan(str(f))
            found = _classify(int(f.name.split(".")[0]), dict(hmeta), pos_of)
        except (TorchLensIOError, ValueError):
            found = None  # cut short by the crash
        if found is None:
            f.unlink()
            continue
        nid, kind, dev, seq = found
        ent = entry(int(f.name.split(".")[0]), labels[pos_of[nid]], dtype, shape, dev, nbytes, sha, kind)
        if kind in GRAD_KINDS:
            found_grads.append((seq, kind, nid, ent, f))
        else:
            tensors.append(ent)
            maps[kind].append([nid, ent["blob_id"]])
    for extra in (JOURNAL_FILE, "PARTIAL", "REASON.txt"):
        try:
            (tmp / extra).unlink()
        except FileNotFoundError:
            pass
    grad_tensors, gradients = recovered_gradients(found_grads, journal["info"].get("gradients"), set(pos_of))
    info_full = {**info_of(log), "recovered": True}
    commit(
        tmp,
        target,
        model_name,
        data,
        info_full,
        maps["activation"],
        [*tensors, *grad_tensors],
        [],
        len(log),
        transformed=maps["transformed_activation"],
        gradients=gradients,
    )
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
    for p in incomplete_siblings(target):
        if p.is_symlink():
            continue
        if force or (p / "PARTIAL").exists():
            shutil.rmtree(p)
            removed.append(str(p))
        else:
            warnings.warn(f"leaving {p}: not marked PARTIAL (use force=True to remove it)", UserWarning, stacklevel=2)
    return removed
