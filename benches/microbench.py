"""Hot path against the floor (issue 15): per-op capture cost as a multiple of a bare wrapper.

Usage: python benches/microbench.py [--runs R] [--big-ops N] [--profile]

Prints one markdown table, in one process (the 1M-op row runs in a child process so that its
resident memory is its own). Every time is a multiple of the per-call cost of a bare Python
pass-through wrapper `def w(*a, **k): return f(*a, **k)` around `torch.relu` on a 4-element
tensor, measured in the same run: (time of n calls of `w(x)`) - (time of n calls of
`torch.relu(x)`), divided by n, in 30 alternating blocks of 20,000 calls at the start and 30 at
the end of the run, median of the 60 block differences. The loop overhead and the relu call
itself are thus subtracted; what is left is one extra Python call with *args/**kwargs packing
and unpacking.

Capture rows: (log_forward_pass time - plain forward time of the same model, torch unwrapped,
timed right before it) / calls, median (and best) of R such pairs after a warm-up, one thread.
"grad on" feeds an input that requires grad (so every op builds a grad_fn, as in a model with
parameters); "no_grad" runs under torch.no_grad().

The big loop model (metadata only, one run per grad mode, each in a fresh child process) also
reports resident memory growth per op from VmRSS before the capture: at the peak (VmHWM, reset
through /proc/self/clear_refs) and with the log built; with grad on, also that of a plain
forward holding its output (autograd's own graph, the floor). Its size is --big-ops or
TL_MICROBENCH_BIG_OPS (default 1,000,000 ops; the whole script takes 1-2 minutes on a 2-core
machine). When a size fails (with grad on, a deep autograd chain whose grad_fns Python has
touched overflows the C stack when it is freed: docs/performance.md), the row says so and is
measured again at FALLBACK_OPS.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import torchlens as tl
from torchlens import _core

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from models.bench import (  # noqa: E402
    ChunkRepeat,
    LinearChain,
    ModuleChain,
    MulAddLoop,
    ScalarChain,
    SinCosLoop,
)

CALLS = 2000  # per-op chains
LOOP_STEPS = 20_000  # 40k ops in each loop model
FALLBACK_OPS = 20_000  # the big model's size when the full one fails (see docs/performance.md)
WRAP_CALLS = 20_000  # calls per timed block of the floor
FLOOR_PAIRS = 30  # alternating (bare, wrapped, mode) blocks, at the start and again at the end


def _call_loop(fn: Callable[..., Any], x: torch.Tensor, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn(x)
    return time.perf_counter() - t0


class _PassThrough(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


def floor_costs() -> tuple[list[float], list[float]]:
    """Seconds per call, one figure per block: the bare wrapper and a pass-through
    TorchFunctionMode, both over torch.relu on a 4-element tensor, minus the bare block timed
    right before (short alternating blocks: the median of their differences is far steadier
    than one long difference, since the wrapper adds only ~10% to the bare call)."""
    f = torch.relu
    x = torch.rand(4)

    def w(*a: Any, **k: Any) -> Any:
        return f(*a, **k)

    tl.unwrap_torch()
    wrap, mode = [], []
    _call_loop(f, x, WRAP_CALLS)
    for _ in range(FLOOR_PAIRS):
        bare = _call_loop(f, x, WRAP_CALLS)
        wrap.append((_call_loop(w, x, WRAP_CALLS) - bare) / WRAP_CALLS)
        with _PassThrough():
            mode.append((_call_loop(f, x, WRAP_CALLS) - bare) / WRAP_CALLS)
    return wrap, mode


def capture_cost(
    model: nn.Module, x: torch.Tensor, calls: int, grad: bool, save: Any, runs: int
) -> tuple[float, float]:
    """Seconds of capture overhead per call, (median, best): (log_forward_pass - plain forward) /
    calls, the two timed back to back in each run (so that load on the machine hits both).

    The plain forward runs on unwrapped torch; the capture runs with the wrappers already
    installed, as every call after a user's first one does (wrappers stay installed, spec §16):
    installing them is a one-time cost reported on its own row (`wrap_cost`)."""
    if grad:
        x = x.detach().requires_grad_(True)

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        r = fn()
        dt = time.perf_counter() - t0
        del r
        return dt

    def plain() -> object:
        return model(x)

    def capture() -> object:
        return tl.log_forward_pass(model, x, layers_to_save=save)

    diffs = []
    with torch.set_grad_enabled(grad):
        tl.unwrap_torch()
        plain()
        capture()
        for _ in range(runs):
            tl.unwrap_torch()
            t_plain = timed(plain)
            tl.wrap_torch()
            diffs.append(timed(capture) - t_plain)
        tl.unwrap_torch()
    return statistics.median(diffs) / calls, min(diffs) / calls


def wrap_cost(runs: int) -> tuple[float, float]:
    """Seconds to install the wrappers over torch once (median, best): the first call's fixed cost."""
    times = []
    for _ in range(runs):
        tl.unwrap_torch()
        t0 = time.perf_counter()
        tl.wrap_torch()
        times.append(time.perf_counter() - t0)
    tl.unwrap_torch()
    return statistics.median(times), min(times)


Cell = str | float | tuple[float, float]  # text, seconds, or (median, best) seconds


def _cell(value: Cell, unit: float) -> str:
    """A table cell: seconds as a multiple of `unit`, text as is."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        return f"{value[0] / unit:.0f}x ({value[1] / unit:.0f}x)"
    return f"{value / unit:.1f}x"


CHAINS: list[tuple[str, Callable[[], nn.Module], Callable[[], torch.Tensor], int]] = [
    (
        "functional op with tensor args: `F.linear`, 8x64 @ 64x64",
        lambda: LinearChain(CALLS),
        lambda: torch.rand(8, 64),
        CALLS,
    ),
    (
        "dunder op with a Python scalar: `x * 1.0001`, 8x64",
        lambda: ScalarChain(CALLS),
        lambda: torch.rand(8, 64),
        CALLS,
    ),
    ("module call + op: `nn.ReLU()`, 8x64", lambda: ModuleChain(CALLS), lambda: torch.rand(8, 64), CALLS),
    (
        "op returning a tuple: `x.chunk(2)`, 8x64 (2 layers per call)",
        lambda: ChunkRepeat(CALLS),
        lambda: torch.rand(8, 64),
        CALLS,
    ),
]
LOOPS: list[tuple[str, Callable[[], nn.Module], int]] = [
    (
        f"loop model: `x = x * 1.0001; x = x + 0.0001`, {2 * LOOP_STEPS // 1000}k ops, 4 elements",
        lambda: MulAddLoop(LOOP_STEPS),
        2 * LOOP_STEPS,
    ),
    (
        f"loop model: `torch.sin` / `torch.cos`, {2 * LOOP_STEPS // 1000}k ops, 4 elements",
        lambda: SinCosLoop(LOOP_STEPS),
        2 * LOOP_STEPS,
    ),
]


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def big_child(ops: int, grad: bool, plain_only: bool = False) -> dict[str, Any]:
    """Runs in its own process: the loop model with `ops` ops, metadata only. The capture runs
    first, from a clean baseline; the plain forward is timed after the log is dropped (with grad
    on its 1M-node autograd graph would otherwise leave freed heap behind and hide growth)."""
    torch.set_num_threads(1)
    steps = ops // 2
    model = MulAddLoop(steps)
    x = torch.rand(4).requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        tl.log_forward_pass(MulAddLoop(50), x, layers_to_save=None)  # warm-up: imports, caches
        tl.unwrap_torch()
        gc.collect()
        base = _status_kb("VmRSS")
        if plain_only:  # the floor: a plain forward holding its output (and so its autograd graph)
            out = model(x)
            gc.collect()
            return {"ops": 2 * steps, "rss_base_kb": base, "rss_after_kb": _status_kb("VmRSS"), "out": out.numel()}
        try:  # reset VmHWM so that the peak is that of the capture
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        t0 = time.perf_counter()
        log = tl.log_forward_pass(model, x, layers_to_save=None)
        cap = time.perf_counter() - t0
        tl.unwrap_torch()
        peak = _status_kb("VmHWM")
        gc.collect()
        after = _status_kb("VmRSS")
        layers = len(log)
        del log
        gc.collect()
        t0 = time.perf_counter()
        model(x)
        plain = time.perf_counter() - t0
    return {
        "ops": 2 * steps,
        "layers": layers,
        "plain_s": plain,
        "capture_s": cap,
        "rss_base_kb": base,
        "rss_peak_kb": peak,
        "rss_after_kb": after,
    }


def run_big(ops: int, grad: bool, plain_only: bool = False) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--big-child", str(ops)]
    cmd += (["--grad"] if grad else []) + (["--plain-only"] if plain_only else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode < 0:
        return {"error": f"crashed (signal {-proc.returncode})"}
    if proc.returncode != 0 or not line:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(line[-1][7:])


def big_rows(ops: int, unit: float) -> list[tuple[str, list[Cell]]]:
    """Two table rows (time per op, memory per op) for the big loop model, grad on and no_grad."""
    times: list[Cell] = []
    mems: list[Cell] = []
    size = f"{ops:,}"
    for grad in (True, False):
        big = run_big(ops, grad)
        note = ""
        if "error" in big and ops > FALLBACK_OPS:  # say so, and measure a size that runs
            note = f"{ops:,} ops: {big['error'][:60]}; at {FALLBACK_OPS:,} ops: "
            big = run_big(FALLBACK_OPS, grad)
        if "error" in big:
            times.append(f"{note}error: {big['error'][:60]}")
            mems.append("")
            continue
        if not note:
            size = f"{big['ops']:,}"
        times.append(note + _cell((big["capture_s"] - big["plain_s"]) / big["ops"], unit))
        peak, after = big["rss_peak_kb"] - big["rss_base_kb"], big["rss_after_kb"] - big["rss_base_kb"]
        floor = ""
        if grad:  # what autograd itself keeps: a plain forward holding its output
            pl = run_big(big["ops"], grad, plain_only=True)
            if "error" not in pl:
                floor = f"; plain forward holding its output: {(pl['rss_after_kb'] - pl['rss_base_kb']) * 1024 / pl['ops']:,.0f} B"
        mems.append(
            f"{'at ' + format(big['ops'], ',') + ' ops: ' if note else ''}{peak * 1024 / big['ops']:,.0f} B / {after * 1024 / big['ops']:,.0f} B "
            f"({peak / 1024:.0f} MB / {after / 1024:.0f} MB{floor})"
        )
    return [
        (
            f"{size}-op loop model (`x * 1.0001; x + 0.0001`, 4 elements; own process, one run): capture per op",
            [times[0], "", times[1], ""],
        ),
        ("the same: resident memory growth per op, peak / with the log built", [mems[0], "", mems[1], ""]),
    ]


def profile_chain(top: int = 25) -> None:
    """cProfile of one chain (`x * 1.0001`, grad on, metadata only), per-op microseconds."""
    import cProfile
    import pstats

    model, x = ScalarChain(CALLS), torch.rand(8, 64).requires_grad_(True)
    tl.log_forward_pass(model, x, layers_to_save=None)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(3):
        tl.log_forward_pass(model, x, layers_to_save=None)
    prof.disable()
    tl.unwrap_torch()
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:top]  # type: ignore[attr-defined]
    print(
        f"| function (cProfile, {CALLS}-call `x * 1.0001` chain, grad on, metadata only) | calls per op | own us per op | cumulative us per op |"
    )
    print("|---|---|---|---|")
    n = 3 * CALLS
    for (file, line, name), (_cc, nc, tt, ct, _callers) in rows:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "(builtin)"
        if name.startswith("<function "):  # a C slot wrapper: drop the address
            name = name.split(" at 0x")[0].removeprefix("<function ")
        print(f"| `{name}` {where} | {nc / n:.2f} | {tt / n * 1e6:.2f} | {ct / n * 1e6:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--big-ops", type=int, default=int(os.environ.get("TL_MICROBENCH_BIG_OPS", "1000000")))
    ap.add_argument("--big-child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--grad", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plain-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help="print a cProfile table of one chain instead")
    ns = ap.parse_args()
    if ns.big_child:
        print("RESULT " + json.dumps(big_child(ns.big_child, ns.grad, ns.plain_only)), flush=True)
        return
    torch.set_num_threads(1)
    if _core.build_profile != "release":
        raise SystemExit("refusing to benchmark a debug build of torchlens._core")
    if ns.profile:
        profile_chain()
        return
    # The floor is measured at the start and again at the end (the machine's load drifts over the
    # minute the rows take); the unit is the median of both sets.
    wraps, modes = floor_costs()
    rows: list[tuple[str, list[Cell]]] = []
    for name, build, make_x, calls in CHAINS:
        torch.manual_seed(0)
        model, x = build(), make_x()
        cells: list[Cell] = [
            capture_cost(model, x, calls, grad, save, ns.runs) for grad in (True, False) for save in (None, "all")
        ]
        rows.append((f"capture per call: {name}", cells))
    for name, build, ops in LOOPS:
        model, x = build(), torch.rand(4)
        on, off = (capture_cost(model, x, ops, grad, None, ns.runs) for grad in (True, False))
        rows.append((f"capture per op: {name}", [on, "", off, ""]))
    w2, m2 = floor_costs()
    wrap, mode = statistics.median(wraps + w2), statistics.median(modes + m2)
    wc = wrap_cost(ns.runs)
    rows.append(("one-time: installing the wrappers over torch (first call of a process), whole", [wc, "", "", ""]))
    rows += big_rows(ns.big_ops, wrap)  # child processes: the floor above is not disturbed by them
    rows.insert(0, ("bare pass-through wrapper, per call", [wrap, "", "", ""]))
    rows.insert(1, ("pass-through `TorchFunctionMode`, per call", [mode, "", "", ""]))
    print("| what | grad on: metadata only | grad on: all saved | no_grad: metadata only | no_grad: all saved |")
    print("|---|---|---|---|---|")
    for name, cells in rows:
        print(f"| {name} | " + " | ".join(_cell(c, wrap) for c in cells) + " |")
    print(
        f"\nUnit: the bare wrapper's own cost, {wrap * 1e9:.0f} ns per call in this run "
        f"(n calls of `w(x)` minus n calls of `torch.relu(x)`, x of 4 elements, median of {len(wraps) + len(w2)}, half at the start and half at the end of the run: "
        f"{statistics.median(wraps) * 1e9:.0f} / {statistics.median(w2) * 1e9:.0f} ns); "
        f"the pass-through TorchFunctionMode costs {mode * 1e9:.0f} ns per call on top of the bare call. "
        f"Capture rows: (log_forward_pass with the wrappers installed - plain forward on unwrapped torch timed right before it) / calls, median of {ns.runs} "
        f"and, in parentheses, the best of them; one thread; grad on = input requires grad. "
        f"torch {torch.__version__}, python {sys.version.split()[0]}, _core {_core.build_profile}, "
        f"{os.cpu_count()} cores."
    )


if __name__ == "__main__":
    main()
