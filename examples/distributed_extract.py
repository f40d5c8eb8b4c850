"""Extract ReLU activations over a dataset on several ranks, one shard per rank, read back as one.

    torchrun --nproc-per-node 2 examples/distributed_extract.py --out runs/extract
    python examples/distributed_extract.py --out runs/single      # the same, in one process

Each rank records the ReLU outputs of a small CNN on its part of a synthetic dataset (seeded
tensors, split by a `DistributedSampler`), passing each sample's dataset index as `sample_id`.
The recorder writes `runs/extract/rank_00/acts.tlfast`, `runs/extract/rank_01/acts.tlfast`, and
rank 0 writes the rank index `runs/extract/acts.tlfast/ranks.json`. Afterwards

    rec = tl.fastlog.load("runs/extract/acts.tlfast", load_payloads=True)
    rec.by_sample_id[5]           # the ReLU records of sample 5, whichever rank logged it
    for prov, r in rec.items(): ...  # global order (by sample id), with rank / local index / shard

`--model-log` also streams one `log_forward_pass` per rank (of its first sample) to
`runs/extract/log.tlbundle` (`tl.load` opens the rank shards as one view). gloo backend, CPU only.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

import torchlens as tl


def make_model(seed: int = 0) -> nn.Module:
    """A small CNN with seeded weights (the same on every rank)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(128, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    ).eval()


def make_dataset(n: int, size: int, seed: int = 1234) -> TensorDataset:
    """`n` seeded images of 3 x size x size, with their index as the second field."""
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, size, size, generator=g), torch.arange(n))


def keep_relu(ctx: tl.fastlog.RecordContext) -> bool:
    return ctx.kind == "op" and ctx.layer_type == "relu"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--n-samples", type=int, default=24)
    ap.add_argument("--size", type=int, default=16, help="image side")
    ap.add_argument("--model-log", action="store_true", help="also stream one log_forward_pass per rank")
    ap.add_argument("--stats", action="store_true", help="write stats_rank{R}.json (records, bytes, seconds)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one thread per rank: same arithmetic as a single-process run

    distributed = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
    rank = dist.get_rank() if distributed else 0
    world = dist.get_world_size() if distributed else 1

    out = Path(args.out)
    model = make_model()
    data = make_dataset(args.n_samples, args.size)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)
    indices = list(sampler)

    opts = tl.StreamingOptions(bundle_path=str(out / "acts.tlfast"), retain_in_memory=False)
    t0 = time.perf_counter()
    with tl.fastlog.Recorder(model, keep_op=keep_relu, streaming=opts) as rec:
        for i in indices:
            x, idx = data[i]
            rec.log(x.unsqueeze(0), sample_id=int(idx))
    seconds = time.perf_counter() - t0
    recording = rec.recording
    stats = {
        "rank": rank,
        "world_size": world,
        "n_samples": len(indices),
        "n_records": recording.n_records,
        "payload_bytes": sum(int(r.metadata.get("nbytes", 0)) for r in recording.records),
        "seconds": seconds,
        "shard": recording.bundle_path,
    }
    if args.model_log:
        x, _ = data[indices[0]]
        tl.log_forward_pass(
            model,
            x.unsqueeze(0),
            layers_to_save="all",
            streaming=tl.StreamingOptions(bundle_path=str(out / "log.tlbundle"), retain_in_memory=False),
        )
    if args.stats:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"stats_rank{rank}.json").write_text(json.dumps(stats))
    if distributed:
        dist.barrier()  # rank 0 has written the rank index once every rank is past this point
        dist.destroy_process_group()
    return stats


if __name__ == "__main__":
    main()
