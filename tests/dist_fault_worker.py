"""One rank of a 2-rank gloo job in which one rank is killed (SIGKILL) mid-run.

Started by tests/test_distributed_storage.py as plain subprocesses (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT in the environment) so that the surviving rank is not torn down by a launcher.

    python tests/dist_fault_worker.py --out DIR --mode fastlog --kill-rank 1 --kill-after 5
    python tests/dist_fault_worker.py --out DIR --mode bundle --kill-rank 1 --kill-after 70

fastlog: every rank records the ReLU outputs of the example CNN over its samples; the killed rank
dies after `--kill-after` passes. bundle: every rank streams one `log_forward_pass` of a deep
MLP; the killed rank dies inside the forward, at its `--kill-after`-th layer.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import signal
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

import torchlens as tl

_EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "distributed_extract.py"


def _example():
    spec = importlib.util.spec_from_file_location("distributed_extract", _EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def deep_mlp(n_layers: int = 48) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(n_layers):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=("fastlog", "bundle"), required=True)
    ap.add_argument("--kill-rank", type=int, default=1)
    ap.add_argument("--kill-after", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    doomed = rank == args.kill_rank
    out = Path(args.out)
    if args.mode == "fastlog":
        ex = _example()
        model = ex.make_model()
        data = ex.make_dataset(16, 16)
        idx = list(range(rank, 16, dist.get_world_size()))
        opts = tl.StreamingOptions(bundle_path=str(out / "acts.tlfast"), retain_in_memory=False)
        with tl.fastlog.Recorder(model, keep_op=ex.keep_relu, streaming=opts) as rec:
            for n, i in enumerate(idx):
                if doomed and n == args.kill_after:
                    rec._store.writer.finish()  # let the queued records reach the disk, then die
                    os.kill(os.getpid(), signal.SIGKILL)
                rec.log(data[i][0].unsqueeze(0), sample_id=i)
    else:
        model = deep_mlp()
        calls = [0]

        def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            calls[0] += 1
            if doomed and calls[0] == args.kill_after:
                time.sleep(1.0)  # let the writer threads write the queued blobs and journal chunk
                os.kill(os.getpid(), signal.SIGKILL)

        for m in model:
            m.register_forward_hook(hook)
        x = torch.randn(2, 16, generator=torch.Generator().manual_seed(rank))
        tl.log_forward_pass(
            model, x, layers_to_save="all", streaming=tl.StreamingOptions(bundle_path=str(out / "log.tlbundle"))
        )
    sys.stdout.flush()
    os._exit(0)  # the process group lost a rank: skip its teardown


if __name__ == "__main__":
    main()
