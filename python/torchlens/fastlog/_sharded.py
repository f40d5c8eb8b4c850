"""One lazy view over the rank shards of a fastlog recording (`tl.fastlog.load` of a sharded path).

Under `torch.distributed` each rank's `Recorder` writes `{parent}/rank_{RR}/{name}` and rank 0
writes `{parent}/{name}/ranks.json` (see `io/_ranks.py`). `ShardedRecording` reads:

* on open: `ranks.json` only (without it: the `rank_*` directory listing, with a warning);
* for a sample-id lookup: the `metadata.json` (its pass -> sample id map, one entry per pass, no
  records) of each complete shard whose int sample-id range (in the index) can hold the id, then
  only the shards holding it;
* for a record: its shard's `manifest.json` (checked against the index checksum),
  `fastlog_index.jsonl` and `metadata.json`, once per shard (and its blobs with `load_payloads`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..io import _ranks
from . import _storage
from ._types import ActivationRecord

if TYPE_CHECKING:
    from ._recording import Recording


class Provenance(NamedTuple):
    """Where a record of a sharded recording comes from."""

    rank: int
    local_index: int
    shard_path: str
    pass_index: int
    sample_id: Any


def _json_key(v: Any) -> Any:
    return v if v is None or isinstance(v, bool | int | float | str) else repr(v)


class _BySampleId:
    """`recording.by_sample_id[sid]`: the records of every pass logged with `sample_id=sid`."""

    def __init__(self, owner: ShardedRecording) -> None:
        self._owner = owner

    def __getitem__(self, sid: Any) -> list[ActivationRecord]:
        hits = self._owner.locate_sample(sid)
        if not hits:
            raise KeyError(f"no fastlog record with sample_id {sid!r}")
        return [self._owner.shard(r).records[i] for r, i in hits]

    def __contains__(self, sid: Any) -> bool:
        return bool(self._owner.locate_sample(sid))

    def keys(self) -> list[Any]:
        """Every sample id of the readable shards (reads each shard's pass -> sample id map)."""
        seen: dict[Any, None] = {}
        for s in self._owner._readable():
            for v in self._owner._sample_ids(s.rank).values():
                seen.setdefault(v, None)
        return list(seen)


class ShardedRecording:
    """Records of every rank of a distributed fastlog run, read shard by shard on demand.

    Keys: `rec[rank, local_index]` (opens that shard only), `rec.by_sample_id[sid]`, `rec[i]`
    and iteration in global order (by sample id when every pass of every shard has one, then
    rank and local index; otherwise rank-major), `rec["label"]`. `provenance(key)` says where a
    record comes from. Shards without a manifest (a killed rank) are listed in
    `incomplete_shards` and skipped; `tl.fastlog.recover(path)` salvages their complete records.
    """

    def __init__(
        self,
        shards: _ranks.ShardSet,
        readers: tuple[Callable[..., Recording], Callable[..., Recording]],
        *,
        load_payloads: bool,
        verify: bool,
        salvage: bool,
    ) -> None:
        self._load_one, self._recover_one = readers  # fastlog `load` and `recover` of one directory
        self.bundle_path = str(shards.root)
        self.shard_set = shards
        self.world_size = shards.world_size
        self.load_payloads = load_payloads
        self.verify = verify
        self.salvage = salvage
        self.incomplete_shards = [str(s.path) for s in shards.incomplete]
        # With `salvage`: the incomplete shards that left a recoverable index (a rank that never
        # started writing left nothing).
        self._salvaged = {s.rank for s in shards.incomplete if salvage and _storage.find_partial(s.path)}
        self.recovered = bool(self._salvaged)
        self.shards_opened: list[int] = []  # ranks whose shard files were read, in order
        self._loaded: dict[int, Recording] = {}
        self._sids: dict[int, dict[int, Any]] = {}
        self._order: list[tuple[int, int]] | None = None
        self.by_sample_id = _BySampleId(self)

    # ------------------------------------------------------------------ shards
    def _readable(self) -> list[_ranks.ShardInfo]:
        return [s for s in self.shard_set.shards if s.complete or s.rank in self._salvaged]

    @property
    def ranks(self) -> list[int]:
        """Ranks whose records this view serves."""
        return [s.rank for s in self._readable()]

    def shard(self, rank: int) -> Recording:
        """The `Recording` of one rank's shard (read on first use, then cached)."""
        rec = self._loaded.get(rank)
        if rec is not None:
            return rec
        s = self.shard_set.by_rank(rank)
        if s.complete:
            self.shard_set.check_manifest(s)
            rec = self._load_one(s.path, load_payloads=self.load_payloads, verify=self.verify)
        elif s.rank in self._salvaged:
            rec = self._recover_one(s.path, load_payloads=self.load_payloads)
        else:
            raise KeyError(f"shard of rank {rank} is incomplete: {s.path} (use tl.fastlog.recover)")
        self.shards_opened.append(rank)
        self._loaded[rank] = rec
        return rec

    def _sample_ids(self, rank: int) -> dict[int, Any]:
        """pass -> sample id of one shard, from its `metadata.json` (records only for a salvaged shard)."""
        got = self._sids.get(rank)
        if got is not None:
            return got
        s = self.shard_set.by_rank(rank)
        sids: dict[int, Any] = {}
        meta_path = s.path / "metadata.json"
        if s.complete and meta_path.is_file():
            meta = _storage.read_json(meta_path)
            raw = meta.get("sample_ids") if isinstance(meta, dict) else None
            if isinstance(raw, dict):
                sids = {int(k): v for k, v in raw.items() if v is not None}
        else:
            for r in self.shard(rank).records:
                if r.ctx.sample_id is not None:
                    sids.setdefault(r.ctx.pass_index, _json_key(r.ctx.sample_id))
        self._sids[rank] = sids
        return sids

    def locate_sample(self, sid: Any) -> list[tuple[int, int]]:
        """(rank, local index) of every record logged with `sample_id=sid`, in global order."""
        want = _json_key(sid)
        hits: list[tuple[int, int]] = []
        for s in self._readable():
            rng = s.sample_id_range  # from the index: skip a shard whose int ids cannot hold `sid`
            if rng is not None and isinstance(want, int) and not rng[0] <= want <= rng[1]:
                continue
            passes = [p for p, v in self._sample_ids(s.rank).items() if v == want]
            if not passes:
                continue
            rec = self.shard(s.rank)
            for p in sorted(passes):
                hits.extend((s.rank, i) for i in rec.by_pass.get(p, []))
        return hits

    # ------------------------------------------------------------------ global order
    def global_order(self) -> list[tuple[int, int]]:
        """(rank, local index) of every record in global order (reads every readable shard)."""
        if self._order is not None:
            return self._order
        keys: list[tuple[Any, int, int, int]] = []
        all_sid = True
        for s in self._readable():
            sids = self._sample_ids(s.rank)
            rec = self.shard(s.rank)
            for p, idxs in rec.by_pass.items():
                sid = sids.get(p)
                all_sid = all_sid and sid is not None
                keys.extend((sid, s.rank, p, i) for i in idxs)
        order: list[tuple[int, int]] | None = None
        if all_sid:
            try:
                order = [(r, i) for _, r, _, i in sorted(keys)]
            except TypeError:  # sample ids of mixed types: fall back to rank-major
                order = None
        if order is None:
            order = sorted((r, i) for _, r, _, i in keys)
        self._order = order
        return order

    def __len__(self) -> int:
        total = 0
        for s in self._readable():
            if s.n_records is not None and s.rank not in self._loaded:
                total += int(s.n_records)
            else:
                total += len(self.shard(s.rank))
        return total

    @property
    def n_records(self) -> int:
        return len(self)

    def __iter__(self) -> Iterator[ActivationRecord]:
        for r, i in self.global_order():
            yield self.shard(r).records[i]

    def items(self) -> Iterator[tuple[Provenance, ActivationRecord]]:
        """(provenance, record) pairs in global order."""
        for r, i in self.global_order():
            yield self.provenance((r, i)), self.shard(r).records[i]

    def __getitem__(self, key: int | tuple[int, int] | str) -> Any:
        if isinstance(key, tuple):
            rank, local = key
            return self.shard(rank).records[local]
        if isinstance(key, int):
            r, i = self.global_order()[key]
            return self.shard(r).records[i]
        if isinstance(key, str):
            pos = {k: n for n, k in enumerate(self.global_order())}
            hits = [(r, i) for r in self.ranks for _, i in self.shard(r).by_label.get(key, [])]
            if not hits:
                raise KeyError(f"no fastlog record labelled {key!r}")
            return [self.shard(r).records[i] for r, i in sorted(hits, key=pos.__getitem__)]
        raise TypeError("ShardedRecording indices must be int, (rank, local index) or str")

    def provenance(self, key: int | tuple[int, int]) -> Provenance:
        """Rank, local index, shard path, pass and sample id of a record (global index or (rank, local))."""
        r, i = self.global_order()[key] if isinstance(key, int) else key
        rec = self.shard(r).records[i]
        p = rec.ctx.pass_index
        return Provenance(r, i, str(self.shard_set.by_rank(r).path), p, self._sample_ids(r).get(p))

    def summary(self) -> str:
        inc = f", incomplete_shards={len(self.incomplete_shards)}" if self.incomplete_shards else ""
        return f"ShardedRecording(world_size={self.world_size}, shards={len(self._readable())}{inc})"

    def __repr__(self) -> str:
        return self.summary()


def open_sharded(
    path: str | os.PathLike,
    readers: tuple[Callable[..., Recording], Callable[..., Recording]],
    *,
    load_payloads: bool,
    verify: bool,
    salvage: bool,
) -> ShardedRecording:
    """The merged view of a sharded fastlog path (warns about incomplete shards)."""
    ss = _ranks.open_shards(path)
    if ss.kind not in (None, "fastlog"):
        raise _storage.BundleNotFinalizedError(f"{path} holds {ss.kind} shards, not fastlog shards: use tl.load")
    if not salvage:
        _ranks.warn_incomplete(ss, "their records are left out; tl.fastlog.recover(path) salvages them")
    return ShardedRecording(ss, readers, load_payloads=load_payloads, verify=verify, salvage=salvage)


def index_summary(path: str | os.PathLike) -> dict[str, Any]:
    """The rank index of a sharded path as a dict (`ranks.json`)."""
    return json.loads((Path(os.fspath(path)) / _ranks.INDEX_FILE).read_text())
