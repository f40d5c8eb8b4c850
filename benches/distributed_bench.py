"""Throughput of rank-sharded fastlog recording: 1 and 2 ranks (gloo, CPU), figures for docs/scaling.md.

    python benches/distributed_bench.py [--n-samples 512] [--size 32] [--ranks 1,2]

Each configuration runs `torchrun --nproc-per-node N examples/distributed_extract.py --stats`: every
rank records the ReLU outputs of the example CNN over its share of the samples to its own shard
(disk only), and reports records, payload bytes and the seconds of its `Recorder` block (forward
passes, writes, finalize and the index barrier; not the process start). Then the merged view is
opened and one record fetched, timing what the reader reads.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "distributed_extract.py"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(n_ranks: int, n_samples: int, size: int, out: Path) -> list[dict]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n_ranks),
        "--master-addr", "127.0.0.1", "--master-port", str(_port()),
        str(EXAMPLE), "--out", str(out), "--n-samples", str(n_samples), "--size", str(size), "--stats",
    ]  # fmt: skip
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return [json.loads((out / f"stats_rank{r}.json").read_text()) for r in range(n_ranks)]


def reader_costs(root: Path) -> dict:
    import torchlens as tl

    t0 = time.perf_counter()
    rec = tl.fastlog.load(root)
    t_open = time.perf_counter() - t0
    n = len(rec)
    t0 = time.perf_counter()
    first = rec[rec.ranks[-1], 0]
    t_fetch = time.perf_counter() - t0
    t0 = time.perf_counter()
    tl.fastlog.read_blob(Path(rec.provenance((rec.ranks[-1], 0)).shard_path) / first.metadata["relative_path"])
    t_blob = time.perf_counter() - t0
    return {
        "index_bytes": (root / "ranks.json").stat().st_size,
        "n_records": n,
        "open_s": t_open,
        "first_record_of_a_shard_s": t_fetch,
        "one_payload_s": t_blob,
        "shards_opened": rec.shards_opened,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-samples", type=int, default=512)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--ranks", default="1,2")
    args = ap.parse_args()
    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.n_samples} samples of 3x{args.size}x{args.size}"
    )
    print("| ranks | rank | records | MB | s | records/s | MB/s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.ranks.split(",")):
            out = Path(tmp) / f"r{n}"
            stats = run(n, args.n_samples, args.size, out)
            for s in stats:
                mb = s["payload_bytes"] / 1e6
                print(
                    f"| {n} | {s['rank']} | {s['n_records']} | {mb:.1f} | {s['seconds']:.2f} | "
                    f"{s['n_records'] / s['seconds']:.0f} | {mb / s['seconds']:.1f} |"
                )
            tot_r = sum(s["n_records"] for s in stats)
            tot_mb = sum(s["payload_bytes"] for s in stats) / 1e6
            wall = max(s["seconds"] for s in stats)
            print(f"| {n} | all | {tot_r} | {tot_mb:.1f} | {wall:.2f} | {tot_r / wall:.0f} | {tot_mb / wall:.1f} |")
            print(f"reader ({n} ranks): {json.dumps(reader_costs(out / 'acts.tlfast'))}", file=sys.stderr)


if __name__ == "__main__":
    main()
