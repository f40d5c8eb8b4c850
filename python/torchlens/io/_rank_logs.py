"""`tl.load` of a rank-sharded bundle path: one lazy view over each rank's streamed `ModelLog`.

Each rank's `log_forward_pass(..., save_activations_to=P)` under `torch.distributed` wrote its
own bundle at `rank_{RR}/{name}` (see `_ranks.py`). Opening `P` reads `P/ranks.json` only; a
rank's bundle is loaded (with `tl.load`'s `lazy` and `map_location`) the first time it is asked
for, after its manifest is checked against the index checksum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..log.model_log import ModelLog
from . import _ranks


class ShardedLogs:
    """The per-rank `ModelLog`s of a distributed streamed capture.

    `logs[rank]` is that rank's log, `logs[rank, i]` its layer entry `i` (any key a `ModelLog`
    takes), iteration is in rank order over the complete shards. Shards without a manifest (a
    killed rank) are listed in `incomplete_shards`; `tl.recover_bundle(shard path)` commits what
    they hold, after which they load like the others.
    """

    def __init__(self, shards: _ranks.ShardSet, load_one: Callable[..., ModelLog], **load_kwargs: Any) -> None:
        self.bundle_path = str(shards.root)
        self.shard_set = shards
        self.world_size = shards.world_size
        self.incomplete_shards = [str(s.path) for s in shards.incomplete]
        self.shards_opened: list[int] = []
        self._load_one = load_one
        self._kwargs = load_kwargs
        self._logs: dict[int, ModelLog] = {}

    @property
    def ranks(self) -> list[int]:
        """Ranks with a complete shard."""
        return [s.rank for s in self.shard_set.complete]

    def shard_path(self, rank: int) -> str:
        return str(self.shard_set.by_rank(rank).path)

    def log(self, rank: int) -> ModelLog:
        """Rank `rank`'s `ModelLog` (loaded on first use, then cached)."""
        got = self._logs.get(rank)
        if got is not None:
            return got
        s = self.shard_set.by_rank(rank)
        if not s.complete:
            raise KeyError(f"shard of rank {rank} is incomplete: {s.path} (use tl.recover_bundle on it)")
        self.shard_set.check_manifest(s)
        log = self._load_one(s.path, **self._kwargs)
        self.shards_opened.append(rank)
        self._logs[rank] = log
        return log

    def __getitem__(self, key: int | tuple[int, Any]) -> Any:
        if isinstance(key, tuple):
            rank, sub = key
            return self.log(rank)[sub]
        return self.log(key)

    def __len__(self) -> int:
        return len(self.ranks)

    def __iter__(self) -> Iterator[ModelLog]:
        for r in self.ranks:
            yield self.log(r)

    def items(self) -> Iterator[tuple[int, ModelLog]]:
        for r in self.ranks:
            yield r, self.log(r)

    def __repr__(self) -> str:
        inc = f", incomplete_shards={len(self.incomplete_shards)}" if self.incomplete_shards else ""
        return f"ShardedLogs(world_size={self.world_size}, shards={len(self.ranks)}{inc})"


def open_sharded_logs(path: Any, load_one: Callable[..., ModelLog], **load_kwargs: Any) -> ShardedLogs:
    ss = _ranks.open_shards(path)
    if ss.kind not in (None, "bundle"):
        from .._errors import TorchLensIOError

        raise TorchLensIOError(f"{path} holds {ss.kind} shards, not ModelLog bundles: use tl.fastlog.load")
    _ranks.warn_incomplete(ss, "they are left out; tl.recover_bundle(<shard path>) commits what they hold")
    return ShardedLogs(ss, load_one, **load_kwargs)
