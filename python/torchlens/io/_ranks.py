"""Rank-sharded bundles under `torch.distributed` (spec §10.3 layout, docs/scaling.md).

When `torch.distributed` is initialized, each rank writes its own complete bundle (fastlog
directory or streamed `log_forward_pass` bundle) at `{parent}/rank_{RR}/{name}` for the
`bundle_path` `{parent}/{name}` it was given (`RR`: the rank, at least two digits). Each rank then writes its
shard's summary `rank_{RR}/{name}.summary.json` (record count, a SHA-256 checksum of its
manifest, `checksum_files`, and the range of its int sample ids); after a barrier, rank 0
writes the rank index `{parent}/{name}/ranks.json` from those summaries: the world size and one
entry per rank. The index never lists records, so its size depends on the number of ranks
only. No rank writes into another rank's directory; rank 0 reads one small file per rank.

Readers (`tl.fastlog.load`, `tl.load`) open `{parent}/{name}` as one view: `ShardSet` is what
they share (the index, or the `rank_*` directories discovered when rank 0 never wrote it).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import TorchLensIOError

INDEX_FILE = "ranks.json"
INDEX_FORMAT = "torchlens-rank-index"
INDEX_VERSION = 1
# Seconds a rank waits at the index barrier for the others (a dead rank is usually detected at once).
BARRIER_TIMEOUT_S = float(os.environ.get("TORCHLENS_RANK_BARRIER_TIMEOUT", "300"))
_RANK_DIR = re.compile(r"^rank_(\d{2,})$")


def dist_rank_world() -> tuple[int, int] | None:
    """(rank, world size) when `torch.distributed` is available and initialized, else None."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # noqa: BLE001 - a broken distributed setup means "not distributed" here
        pass
    return None


def rank_dir(rank: int) -> str:
    """`rank_00`, `rank_01`, ..., `rank_1000`: at least two digits (spec §10.3)."""
    return f"rank_{rank:02d}"


def shard_path(path: str | os.PathLike, rank: int) -> Path:
    """`{parent}/rank_{RR}/{name}` for the bundle path `{parent}/{name}`."""
    p = Path(os.fspath(path))
    return p.parent / rank_dir(rank) / p.name


def distributed_shard_path(path: str | os.PathLike) -> Path | None:
    """This rank's shard path when `torch.distributed` is initialized, else None."""
    rw = dist_rank_world()
    return None if rw is None else shard_path(path, rw[0])


def root_of_shard(shard: Path) -> Path:
    """The bundle path the ranks were given, from one rank's shard path."""
    return shard.parent.parent / shard.name


def checksum_files(kind: str | None) -> tuple[str, ...]:
    """The shard files the index checksum covers: a bundle's manifest (which holds the SHA-256 of
    its metadata and of every blob); a fastlog directory's manifest and `metadata.json` (pass
    times and sample ids; its records' blob hashes are in `fastlog_index.jsonl`, not hashed here
    so that writing the index stays independent of the number of records)."""
    return ("manifest.json", "metadata.json") if kind == "fastlog" else ("manifest.json",)


def shard_checksum(shard: Path, kind: str | None) -> str:
    h = hashlib.sha256()
    for name in checksum_files(kind):
        f = shard / name
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _barrier(timeout_s: float) -> str | None:
    """Wait for every rank (gloo: `monitored_barrier`, which names a dead or late rank); the error text or None."""
    import torch.distributed as dist

    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=timeout_s))
        else:
            dist.barrier()
    except Exception as e:  # noqa: BLE001 - a rank died or timed out: the index says which shards are complete
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def finish_shard(shard: Path, kind: str, *, timeout_s: float | None = None) -> Path | None:
    """Called by every rank once its shard is committed (or abandoned): it writes its own shard
    summary, then a barrier, then rank 0 writes the index from the summaries. Returns the index
    path on rank 0, None elsewhere or when not distributed.

    The barrier is collective: every rank must record to the same path. With
    `TORCHLENS_RANK_INDEX=0` there is no barrier and no index (readers discover the shards)."""
    rw = dist_rank_world()
    if rw is None:
        return None
    rank, world = rw
    if shard.parent.name != rank_dir(rank):
        return None  # not a shard path of this rank (e.g. an explicit per-rank path): nothing to index
    write_summary(shard, kind)
    if os.environ.get("TORCHLENS_RANK_INDEX", "1") == "0":
        return None  # opted out (e.g. only some ranks record): no barrier, readers discover the shards
    err = _barrier(BARRIER_TIMEOUT_S if timeout_s is None else timeout_s)
    if err is not None:
        warnings.warn(f"torchlens: rank index barrier failed on rank {rank}: {err}", RuntimeWarning, stacklevel=3)
    if rank != 0:
        return None
    return write_index(root_of_shard(shard), world, kind, barrier_error=err)


def summary_path(shard: Path) -> Path:
    """`rank_{RR}/{name}.summary.json`: written by the shard's own rank, beside its shard."""
    return shard.parent / f"{shard.name}.summary.json"


def _sample_id_range(shard: Path) -> tuple[int, int] | None:
    """(min, max) of a fastlog shard's sample ids when every pass has an int one."""
    try:
        meta = json.loads((shard / "metadata.json").read_text())
    except (OSError, ValueError):
        return None
    sids = meta.get("sample_ids") if isinstance(meta, dict) else None
    n = meta.get("n_passes") if isinstance(meta, dict) else None
    if not isinstance(sids, dict) or not sids or len(sids) != n:
        return None
    vals = list(sids.values())
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return None
    return min(vals), max(vals)


def shard_summary(shard: Path, kind: str) -> dict[str, Any]:
    """What the index says about one shard: completeness, record count (from its manifest), the
    checksum of `checksum_files(kind)` and, for fastlog, the range of its int sample ids."""
    man = shard / "manifest.json"
    if not man.is_file():
        partial = sorted(p.name for p in shard.parent.glob(f"{shard.name}.tmp.*"))
        return {"complete": False, "n_records": None, "checksum": None, "partial": partial}
    try:
        m = json.loads(man.read_bytes())
    except ValueError:
        m = {}
    n = m.get("n_records", m.get("n_layers")) if isinstance(m, dict) else None
    out: dict[str, Any] = {"complete": True, "n_records": n, "checksum": shard_checksum(shard, kind)}
    if kind == "fastlog":
        out["sample_id_range"] = _sample_id_range(shard)
    return out


def write_summary(shard: Path, kind: str) -> None:
    """This rank's entry of the index (it reads and hashes only its own shard)."""
    sp = summary_path(shard)
    sp.parent.mkdir(parents=True, exist_ok=True)
    tmp = sp.with_name(sp.name + ".tmp")
    tmp.write_text(json.dumps(shard_summary(shard, kind)))
    os.replace(tmp, sp)


def _entry(shard: Path, kind: str) -> dict[str, Any]:
    """One rank's index entry: its summary file, or (a rank that died before writing it) what the
    directory shows, without hashing anything."""
    try:
        got = json.loads(summary_path(shard).read_text())
        if isinstance(got, dict) and "complete" in got:
            return got
    except (OSError, ValueError):
        pass
    partial = sorted(p.name for p in shard.parent.glob(f"{shard.name}.tmp.*"))
    return {"complete": False, "n_records": None, "checksum": None, "partial": partial}


def write_index(root: Path, world: int, kind: str, *, barrier_error: str | None = None) -> Path:
    """Write `{root}/ranks.json` (rank 0) from the ranks' summary files: one small entry per rank,
    never per record; rank 0 reads one small file per rank and hashes nothing."""
    shards = []
    for r in range(world):
        sp = shard_path(root, r)
        shards.append({"rank": r, "path": f"../{rank_dir(r)}/{root.name}", **_entry(sp, kind)})
    index = {
        "format": INDEX_FORMAT,
        "version": INDEX_VERSION,
        "kind": kind,
        "name": root.name,
        "world_size": world,
        "checksum": "sha256 of " + " + ".join(checksum_files(kind)),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "barrier_error": barrier_error,
        "shards": shards,
    }
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{INDEX_FILE}.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, root / INDEX_FILE)
    return root / INDEX_FILE


# --------------------------------------------------------------------------- reading


@dataclass
class ShardInfo:
    """One rank's shard as the index (or discovery) describes it."""

    rank: int
    path: Path
    n_records: int | None
    checksum: str | None
    complete: bool
    sample_id_range: tuple[int, int] | None = None


@dataclass
class ShardSet:
    """The shards of one sharded bundle path; `incomplete` lists the shards without a manifest."""

    root: Path
    kind: str | None
    world_size: int
    shards: list[ShardInfo]
    index: dict[str, Any] | None

    @property
    def complete(self) -> list[ShardInfo]:
        return [s for s in self.shards if s.complete]

    @property
    def incomplete(self) -> list[ShardInfo]:
        return [s for s in self.shards if not s.complete]

    def by_rank(self, rank: int) -> ShardInfo:
        for s in self.shards:
            if s.rank == rank:
                return s
        raise KeyError(f"no shard for rank {rank} in {self.root}")

    def check_manifest(self, s: ShardInfo) -> None:
        """Before reading a shard: its manifest (and metadata) must still be what the index names."""
        if s.checksum is None:
            return
        if not (s.path / "manifest.json").is_file():
            raise TorchLensIOError(f"shard of rank {s.rank} is gone or incomplete: {s.path}")
        if shard_checksum(s.path, self.kind) != s.checksum:
            raise TorchLensIOError(
                f"shard of rank {s.rank} ({s.path}) changed since the rank index was written (checksum mismatch)"
            )


def _discover(root: Path) -> list[tuple[int, Path]]:
    """(rank, shard path) of every `rank_*/{name}` (or its `.tmp.*` directory) next to `root`."""
    found = []
    try:
        entries = list(root.parent.iterdir())
    except OSError:
        return []
    for d in entries:
        m = _RANK_DIR.match(d.name)
        if m is None or not d.is_dir():
            continue
        sp = d / root.name
        if sp.exists() or any(d.glob(f"{root.name}.tmp.*")):
            found.append((int(m.group(1)), sp))
    return sorted(found)


def is_rank_sharded(path: str | os.PathLike) -> bool:
    """Whether `path` names a rank-sharded bundle: it holds `ranks.json`, or it does not exist and
    rank shards of its name do (other than a lone `rank_00`, the layout of a non-distributed run)."""
    root = Path(os.fspath(path))
    if (root / INDEX_FILE).is_file():
        return True
    if root.exists():
        return False
    found = _discover(root)
    return len(found) > 1 or (len(found) == 1 and found[0][0] != 0)


def open_shards(path: str | os.PathLike) -> ShardSet:
    """Read the rank index (no shard file is opened), or discover the shards with a warning."""
    root = Path(os.fspath(path))
    idx = root / INDEX_FILE
    if idx.is_file():
        try:
            index = json.loads(idx.read_text())
            if not isinstance(index, dict) or index.get("format") != INDEX_FORMAT:
                raise ValueError("not a torchlens rank index")
            if int(index.get("version", 0)) > INDEX_VERSION:
                raise ValueError(f"rank index version {index.get('version')} is newer than supported")
            shards = []
            for e in index["shards"]:
                rank = int(e["rank"])
                sp = shard_path(root, rank)  # never a path from the file: shards live at the layout's place
                complete = bool(e.get("complete"))
                sha = e.get("checksum") if complete else None
                if not complete and (sp / "manifest.json").is_file():
                    complete = True  # recovered (or finished) after the index was written
                rng = e.get("sample_id_range") if sha else None
                rng = (int(rng[0]), int(rng[1])) if isinstance(rng, list) and len(rng) == 2 else None
                shards.append(ShardInfo(rank, sp, e.get("n_records") if sha else None, sha, complete, rng))
            return ShardSet(root, index.get("kind"), int(index["world_size"]), shards, index)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise TorchLensIOError(f"unreadable rank index {idx}: {e}") from e
    found = _discover(root)
    if not found:
        raise TorchLensIOError(f"No bundle at {root} and no rank shards rank_*/{root.name} next to it")
    shards = [ShardInfo(r, sp, None, None, (sp / "manifest.json").is_file()) for r, sp in found]
    warnings.warn(
        f"no rank index at {idx} (rank 0 did not write it); discovered {len(shards)} shard(s): "
        + ", ".join(str(s.path) for s in shards),
        UserWarning,
        stacklevel=3,
    )
    return ShardSet(root, None, max(r for r, _ in found) + 1, shards, None)


def warn_incomplete(ss: ShardSet, hint: str) -> None:
    """One warning naming every shard that has no manifest (killed or failed rank)."""
    bad = ss.incomplete
    if bad:
        names = ", ".join(f"rank {s.rank} ({s.path})" for s in bad)
        warnings.warn(f"incomplete shard(s) of {ss.root}: {names}; {hint}", UserWarning, stacklevel=3)
