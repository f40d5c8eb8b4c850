"""Where the capture time per op goes: each piece of the hot path measured on its own.

Usage: python benches/hotpath.py   (prints a markdown table; single thread, medians of 7 runs)
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import torchlens as tl
from torchlens import _core
from torchlens._capture import run as capture_run
from torchlens._capture.run import from_capture

# The benchmark models are shared with the tests (tests/models/bench.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models.bench import ModuleChain, OpChain  # noqa: E402

N = 2000


def median_us(fn: Callable[[], object], per: int = N, runs: int = 7) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = fn()
        times.append(time.perf_counter() - t0)
        del r
    return statistics.median(times) / per * 1e6


def main() -> None:
    torch.set_num_threads(1)
    x = torch.rand(8, 64)
    rows: list[tuple[str, float]] = []
    with torch.no_grad():
        for name, model in (("torch op (relu)", OpChain(N)), ("module call + op (nn.ReLU)", ModuleChain(N))):
            tl.unwrap_torch()
            plain = median_us(lambda m=model: m(x))
            tl.wrap_torch()
            off = median_us(lambda m=model: m(x))
            rows.append((f"{name}: plain forward", plain))
            rows.append((f"{name}: wrappers installed, capture off", off - plain))

            def fwd(m: nn.Module = model, save: object = None) -> object:
                return capture_run.run_capture(m, [x], {}, save, False, 1)

            meta = median_us(fwd)
            saved = median_us(lambda m=model: fwd(m, "all"))
            rows.append((f"{name}: capture, metadata only (forward part)", meta - plain))
            rows.append((f"{name}: + saving every output (by reference)", saved - meta))
            cap = fwd()
            data = from_capture(cap)
            core = median_us(lambda d=data: _core.finalize(*d.core_inputs(), True))
            rows.append((f"{name}: Rust core finalize (incl. conversion)", core))
            full = median_us(lambda m=model: tl.log_forward_pass(m, x, layers_to_save=None))
            rows.append((f"{name}: log_forward_pass total overhead, metadata only", full - plain))
    print("| what | us per op |\n|---|---|")
    for name, us in rows:
        print(f"| {name} | {us:.2f} |")
    print(f"\n(torch {torch.__version__}, python {sys.version.split()[0]}, _core {_core.build_profile}, N={N})")


if __name__ == "__main__":
    main()
