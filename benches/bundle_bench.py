"""Bundle save / load throughput for resnet50 with every activation saved (MB/s of tensor data).

    python benches/bundle_bench.py [--repeat 3] [--dir /tmp] [--batch 1]

Prints one line per phase: save, eager load, lazy load (metadata only) and lazy load followed by
materializing every activation, plus streaming capture (capture + write during the forward).
Medians over `--repeat` runs; the page cache is warm, so loads measure decode + checksum speed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torchvision

import torchlens as tl


def _median(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    x = torch.randn(a.batch, 3, 224, 224)
    log = tl.log_forward_pass(model, x)
    mb = log.saved_activation_memory / 1e6
    root = Path(tempfile.mkdtemp(dir=a.dir, prefix="tl-bundle-bench-"))
    n = [0]

    def fresh() -> Path:
        n[0] += 1
        return root / f"b{n[0]}"

    try:
        path = fresh()
        tl.save(log, path)

        def save() -> None:
            p = fresh()
            tl.save(log, p)
            shutil.rmtree(p)

        def lazy_all() -> None:
            lz = tl.load(path, lazy=True)
            for e in lz:
                e.materialize_activation()

        def stream() -> None:
            p = fresh()
            tl.log_forward_pass(model, x, streaming=tl.StreamingOptions(bundle_path=str(p), retain_in_memory=False))
            shutil.rmtree(p)

        plain = _median(lambda: tl.log_forward_pass(model, x), a.repeat)
        rows = [
            ("save", _median(save, a.repeat)),
            ("load (eager)", _median(lambda: tl.load(path), a.repeat)),
            ("load (lazy, metadata only)", _median(lambda: tl.load(path, lazy=True), a.repeat)),
            ("load (lazy + materialize all)", _median(lazy_all, a.repeat)),
        ]
        print(f"resnet50 batch {a.batch}: {len(log)} layers, {mb:.1f} MB of activations, bundle in {root}")
        for name, t in rows:
            print(f"  {name:32s} {t * 1e3:8.1f} ms  {mb / t:8.0f} MB/s")
        st = _median(stream, a.repeat)
        print(f"  {'streamed capture (retain=False)':32s} {st * 1e3:8.1f} ms  (in-memory capture {plain * 1e3:.1f} ms)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
