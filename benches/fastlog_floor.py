"""Where the cost of keeping tensors goes on resnet50: plain forward vs. forward hooks keeping every
ReLU output vs. fastlog keeping nothing vs. fastlog keeping every ReLU output, and hooks keeping
every leaf module's output vs. log_forward_pass metadata only vs. all saved (same process, interleaved).

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

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]

    def hooked_all() -> list[torch.Tensor]:
        # The floor of "keep every activation": hand-written hooks holding every leaf module's output.
        outs: list[torch.Tensor] = []
        hs = [m.register_forward_hook(lambda _m, _i, o: outs.append(o)) for m in leaves]
        model(*args)
        for h in hs:
            h.remove()
        return outs

    def hooked_all_cloned() -> list[torch.Tensor]:
        # What careful hand-written extraction does: `o.detach().clone()` (torchvision's ReLUs are
        # in place and would overwrite a held reference to the batch-norm output before them).
        outs: list[torch.Tensor] = []
        hs = [m.register_forward_hook(lambda _m, _i, o: outs.append(o.detach().clone())) for m in leaves]
        model(*args)
        for h in hs:
            h.remove()
        return outs

    cases = {
        "plain": lambda: model(*args),
        "hooks_keeping_every_leaf": hooked_all,
        "hooks_cloning_every_leaf": hooked_all_cloned,
        "log_metadata_only": lambda: tl.log_forward_pass(model, args, layers_to_save=None),
        "log_all_saved": lambda: tl.log_forward_pass(model, args, layers_to_save="all"),
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
    # The target of issue 15: fastlog keeping a selection within 1.05x of the same selection
    # taken by hand-written forward hooks (the honest floor for keeping tensors alive).
    kept = [a / m for a, m in zip(res["log_all_saved"], res["log_metadata_only"], strict=True)]
    floor = [h / p for h, p in zip(res["hooks_keeping_every_leaf"], res["plain"], strict=True)]
    floor_c = [h / p for h, p in zip(res["hooks_cloning_every_leaf"], res["plain"], strict=True)]
    print(
        f"{ns.model:10s} {'all_saved / metadata':26s} {'':8s}     {statistics.median(kept):5.3f}x "
        f"(per round: {', '.join(f'{r:.3f}' for r in kept)}); floors, hooks on every leaf / plain: "
        f"holding refs {statistics.median(floor):5.3f}x, cloning {statistics.median(floor_c):5.3f}x"
    )
    ratios = [f / h for f, h in zip(res["fastlog_keep_relu"], res["hooks_keeping_relu_refs"], strict=True)]
    print(
        f"{ns.model:10s} {'fastlog_relu / hooks_relu':26s} {'':8s}     {statistics.median(ratios):5.3f}x (per round: {', '.join(f'{r:.3f}' for r in ratios)})"
    )


if __name__ == "__main__":
    main()
