"""Bundle save / load against plain copies of the same bytes, io format 1 vs 2 (issue 15).

    python benches/bundle_shard_bench.py [--repeat 5] [--dir /tmp] [--models mlp,resnet50]

For each model (`mlp`: 2,000 x (Linear(64, 64), ReLU), input (8, 64), about 4,000 saved
activations; `resnet50`: batch 1, every activation) and each layout (format 1: one file per
tensor; format 2: tensors packed into shards), measures in one process, best of `--repeat`:
`tl.save`, eager `tl.load`, lazy `tl.load(lazy=True)` (open only), and two references: `cp -r`
of the bundle directory and `shutil.copyfile` of one file holding as many bytes. Prints each
phase as a ratio to both references (times vary on a shared machine; ratios much less). The
page cache is warm: loads measure parsing, decoding and checksumming, not the disk. Run with a
release before io format 2 on `PYTHONPATH` it measures format 1 only (the "before" figures).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import torchlens as tl

try:
    from torchlens.io import _shards
except ImportError:  # a release before io format 2 (format 1 only): the "before" figures
    _shards = None

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _best(fn: Callable[[], object], repeat: int, after: Callable[[], object] | None = None) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if after is not None:
            after()
    return min(times)


def _model(name: str) -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if name == "mlp":
        from models.bench import mlp

        return mlp(2000), torch.rand(8, 64)
    import torchvision

    return torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224)


def _size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def _measure(log: object, base: Path, root: Path, nbytes: int, repeat: int) -> tuple[float, ...]:
    """Best times of save, eager load, lazy open, `cp -r` of `base` and copyfile of `nbytes`."""
    scratch = root / "scratch"

    def rm() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        if scratch.is_file():
            scratch.unlink()

    save = _best(lambda: tl.save(log, scratch), repeat, rm)
    eager = _best(lambda: tl.load(base), repeat)
    lazy = _best(lambda: tl.load(base, lazy=True), repeat)
    cp_r = _best(lambda: subprocess.run(["cp", "-r", str(base), str(scratch)], check=True), repeat, rm)
    blob = root / "onefile"
    with blob.open("wb") as f:
        f.write(os.urandom(nbytes))
    copy1 = _best(lambda: shutil.copyfile(blob, scratch), repeat, rm)
    blob.unlink()
    return save, eager, lazy, cp_r, copy1


def bench(name: str, root: Path, repeat: int) -> list[str]:
    model, x = _model(name)
    log = tl.log_forward_pass(model, x)
    rows = []
    for fmt in (1, 2) if _shards is not None else (1,):
        if _shards is not None:
            _shards.WRITE_FORMAT = fmt
        base = root / f"{name}-v{fmt}"
        tl.save(log, base)
        nbytes, nfiles = _size(base)
        save, eager, lazy, cp_r, copy1 = _measure(log, base, root, nbytes, repeat)
        shutil.rmtree(base)
        for phase, t in (("save", save), ("load (eager)", eager), ("open (lazy)", lazy)):
            rows.append(
                f"| {name} | {fmt} | {nfiles} | {nbytes / 1e6:.1f} | {phase} | {t * 1e3:.1f} | "
                f"{cp_r * 1e3:.1f} | {t / cp_r:.1f}x | {copy1 * 1e3:.1f} | {t / copy1:.1f}x |"
            )
    if _shards is not None:
        _shards.WRITE_FORMAT = 2
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--models", default="mlp,resnet50")
    a = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=a.dir, prefix="tl-shard-bench-"))
    try:
        print(f"best of {a.repeat}; torch {torch.__version__}; {os.cpu_count()} CPUs; bundles in {root}")
        print()
        print("| model | format | files | MB | phase | ms | `cp -r` ms | / `cp -r` | copyfile ms | / copyfile |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name in a.models.split(","):
            for row in bench(name, root, a.repeat):
                print(row, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
