"""Where fastlog's time goes on resnet50: plain forward vs. forward hooks keeping every ReLU output
vs. fastlog keeping nothing vs. fastlog keeping every ReLU output (same process, interleaved).

Usage: OMP_NUM_THREADS=1 python benches/fastlog_floor.py [--model resnet50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

import torchlens as tl

# The benchmark models are shared with the tests (tests/models/bench.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models.bench import MODELS  # noqa: E402


def _median_time(fn: Any, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--rounds", type=int, default=3)
    ns = ap.parse_args()
    torch.set_num_threads(1)
    build, make_input = MODELS[ns.model]
    torch.manual_seed(0)
    model = build().eval()
    args = make_input()

    def keep_relu(ctx: Any) -> bool:
        return ctx.layer_type == "relu"

    def keep_none(ctx: Any) -> bool:
        return False

    def hooked() -> list[torch.Tensor]:
        outs: list[torch.Tensor] = []
        hs = [
            m.register_forward_hook(lambda _m, _i, o: outs.append(o)) for m in model.modules() if isinstance(m, nn.ReLU)
        ]
        model(*args)
        for h in hs:
            h.remove()
        return outs

    cases = {
        "plain": lambda: model(*args),
        "hooks_keeping_relu_refs": hooked,
        "fastlog_keep_nothing": lambda: tl.fastlog.record(model, args, keep_op=keep_none),
        "fastlog_keep_relu": lambda: tl.fastlog.record(model, args, keep_op=keep_relu),
    }
    res: dict[str, list[float]] = {k: [] for k in cases}
    with torch.no_grad():
        for _ in range(ns.rounds):
            tl.unwrap_torch()
            for k, fn in cases.items():
                res[k].append(_median_time(fn))
    plain = statistics.median(res["plain"])
    for k, v in res.items():
        m = statistics.median(v)
        print(f"{ns.model:10s} {k:26s} {m * 1e3:8.1f} ms  {m / plain:5.2f}x")


if __name__ == "__main__":
    main()
