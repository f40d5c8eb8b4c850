"""End-to-end capture benchmarks: ratios to the plain forward, one process per model.

Usage: python benches/run.py --mode quick|full [--impl ours|peer] [--models a,b] [--out PATH]
Each model runs in its own subprocess (so peak memory is per model); the parent collects the
JSON lines, writes benches/results/latest.json and a markdown table, and prints the table. It also
writes the figures for a CI benchmark tracker next to the results: `<out stem>-bench.json`
(benches/results/quick-bench.json for the quick run), see `tracker_entries`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
# The benchmark models are shared with the tests (tests/models/bench.py).
sys.path.insert(0, str(HERE.parent / "tests"))


def _median_time(fn: Any, runs: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result  # freeing a log's saved tensors is not part of the capture
    return statistics.median(times)


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_one(name: str, runs: int, impl: str) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from models.bench import MODELS

    build, make_input = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    args = make_input()
    import torchlens as tl

    if impl == "ours":
        tl.unwrap_torch()
    res: dict[str, Any] = {"model": name, "impl": impl, "torch": torch.__version__}
    res["torchlens"] = getattr(tl, "__version__", "?")
    if impl == "ours":
        from torchlens import _core

        res["build_profile"] = _core.build_profile
        if _core.build_profile != "release":
            raise SystemExit("refusing to benchmark a debug build of torchlens._core")
    with torch.no_grad():
        res["plain_s"] = _median_time(lambda: model(*args), runs)
        res["rss_plain_mb"] = _maxrss_mb()

        def meta() -> Any:
            return tl.log_forward_pass(model, args, layers_to_save=None)

        def full() -> Any:
            return tl.log_forward_pass(model, args, layers_to_save="all")

        log = meta()
        res["ops"] = len(log)
        res["metadata_s"] = _median_time(meta, runs, warmup=0)
        res["rss_metadata_mb"] = _maxrss_mb()
        del log
        res["all_saved_s"] = _median_time(full, runs, warmup=0)
        res["rss_all_saved_mb"] = _maxrss_mb()
        if impl == "ours":
            # The conditional attribution runs on first use; this reads it (nothing to do without bools).
            res["conditional_events"] = len(meta().conditional_events)
            res["metadata_cond_s"] = _median_time(lambda: meta().has_conditional_branching, runs, warmup=0)

            # fastlog with a predicate keeping the ReLU outputs (design budget: <= 1.15x on resnet50)
            def keep_relu(ctx: Any) -> bool:
                return ctx.layer_type == "relu"

            # The plain reference is re-measured here (unwrapped), so both see the same memory state.
            tl.unwrap_torch()
            res["fastlog_plain_ref_s"] = _median_time(lambda: model(*args), runs)
            rec = tl.fastlog.record(model, args, keep_op=keep_relu)
            res["fastlog_records"] = len(rec)
            del rec
            res["fastlog_s"] = _median_time(lambda: tl.fastlog.record(model, args, keep_op=keep_relu), runs)
            tl.unwrap_torch()
            res["plain_after_s"] = _median_time(lambda: model(*args), runs)
    plain = res["plain_s"]
    for key in ("metadata", "all_saved"):
        res[f"{key}_ratio"] = res[f"{key}_s"] / plain
        res[f"{key}_us_per_op"] = (res[f"{key}_s"] - plain) / max(res["ops"], 1) * 1e6
    if "fastlog_s" in res:
        res["fastlog_ratio"] = res["fastlog_s"] / res["fastlog_plain_ref_s"]
    if "metadata_cond_s" in res:
        res["metadata_cond_ratio"] = res["metadata_cond_s"] / plain
    return res


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | impl | ops | plain (ms) | metadata (ms) | ratio | us/op | all saved (ms) | ratio | us/op "
        "| peak RSS (MB) | fastlog (ms) | ratio | metadata + conditionals | ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['impl']} | error: {r['error'][:60]} |||||||||||")
            continue
        lines.append(
            f"| {r['model']} | {r['impl']} | {r['ops']} | {r['plain_s'] * 1e3:.1f} | {r['metadata_s'] * 1e3:.1f} "
            f"| {r['metadata_ratio']:.2f}x | {r['metadata_us_per_op']:.1f} | {r['all_saved_s'] * 1e3:.1f} "
            f"| {r['all_saved_ratio']:.2f}x | {r['all_saved_us_per_op']:.1f} | {r['rss_all_saved_mb']:.0f} |"
            + (f" {r['fastlog_s'] * 1e3:.1f} | {r['fastlog_ratio']:.2f}x |" if "fastlog_s" in r else " | |")
            + (
                f" {r['metadata_cond_s'] * 1e3:.1f} ({r['conditional_events']} events) | {r['metadata_cond_ratio']:.2f}x |"
                if "metadata_cond_s" in r
                else " | |"
            )
        )
    return head + "\n".join(lines) + "\n"


# Figures a CI benchmark tracker can chart per commit (github-action-benchmark's "customSmallerIsBetter"
# format: a flat list of {"name", "unit", "value"}); every one of them is better when smaller.
TRACKED = (
    ("metadata_ratio", "metadata only", "x plain forward"),
    ("all_saved_ratio", "all saved", "x plain forward"),
    ("fastlog_ratio", "fastlog (relu kept)", "x plain forward"),
    ("metadata_cond_ratio", "metadata + conditionals", "x plain forward"),
    ("metadata_us_per_op", "metadata only, added per op", "us/op"),
    ("all_saved_us_per_op", "all saved, added per op", "us/op"),
    ("rss_all_saved_mb", "all saved, peak RSS", "MB"),
)


def tracker_entries(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows' figures as `{"name", "unit", "value"}` entries (rows that failed are left out)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if "error" in r:
            continue
        prefix = r["model"] if r.get("impl", "ours") == "ours" else f"{r['model']} [{r['impl']}]"
        for key, what, unit in TRACKED:
            if key in r:
                out.append({"name": f"{prefix}: {what}", "unit": unit, "value": float(r[key])})
    return out


def write_tracker_json(rows: list[dict[str, Any]], path: Path) -> Path:
    """Writes `tracker_entries(rows)` to `path` (a JSON list) and returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(tracker_entries(rows), indent=1) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["quick", "full"], default="quick")
    ap.add_argument("--impl", choices=["ours", "peer"], default="ours")
    ap.add_argument("--models", default="")
    ap.add_argument("--one", default="")
    ap.add_argument("--runs", type=int, default=0)
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--out", default="", help="default: results/latest.json (full) or results/quick.json")
    ns = ap.parse_args()
    runs = ns.runs or (3 if ns.mode == "quick" else 5)
    if ns.one:
        print("RESULT " + json.dumps(bench_one(ns.one, runs, ns.impl)), flush=True)
        return
    from models.bench import FULL, QUICK

    names = ns.models.split(",") if ns.models else (QUICK if ns.mode == "quick" else FULL)
    rows: list[dict[str, Any]] = []
    for name in names:
        cmd = [ns.python, str(HERE / "run.py"), "--one", name, "--runs", str(runs), "--impl", ns.impl]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=str(HERE.parent / "benches"))
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not line:
            row = {"model": name, "impl": ns.impl, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
        else:
            row = json.loads(line[-1][7:])
        row["wall_s"] = time.perf_counter() - t0
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    meta = {
        "mode": ns.mode,
        "impl": ns.impl,
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores".strip(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = Path(ns.out or RESULTS / ("latest.json" if ns.mode == "full" else "quick.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    out.with_suffix(".md").write_text(table(rows))
    write_tracker_json(rows, out.with_name(f"{out.stem}-bench.json"))
    print("\n" + table(rows))
    if ns.mode == "quick" and any("error" in r for r in rows):
        raise SystemExit("benchmark smoke test failed: " + "; ".join(r["error"] for r in rows if "error" in r))


if __name__ == "__main__":
    main()
