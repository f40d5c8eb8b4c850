"""`make zoo`: runs every model of the differential zoo (tests/models/registry.py) through the three
checks of tests/zoo_check.py and writes docs/zoo.md.

Usage: python benches/zoo.py [--models a,b] [--family tv-video] [--out docs/zoo.md] [--[no-]progress]

A progress bar over the models is drawn on a terminal (``--progress`` forces it, ``--no-progress``
turns it off); the per-model lines are printed either way.

Models run in worker processes (benches/zoo_worker.py, a fresh one every few models, so that a
crash or a leak costs one model, not the run); a model that kills its worker is recorded as failed.
Exits 1 when a model fails a check, unless it is listed in docs/limitations.md's zoo section.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

CHUNK = 12


def run_workers(python: str, mode: str, names: list[str], log: Any = None) -> dict[str, dict[str, Any]]:
    """Runs `names` through zoo_worker.py under `python`; returns name -> result row."""
    rows: dict[str, dict[str, Any]] = {}
    todo = list(names)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    while todo:
        chunk, todo = todo[:CHUNK], todo[CHUNK:]
        cmd = [python, str(HERE / "zoo_worker.py"), "--mode", mode, *chunk]
        started: str | None = None
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("START "):
                started = line[6:].strip()
            elif line.startswith("RESULT "):
                row = json.loads(line[7:])
                rows[row["name"]] = row
                started = None
                if log is not None:
                    log(row)
        stderr = proc.stderr.read() if proc.stderr is not None else ""
        rc = proc.wait()
        if rc != 0 or started is not None:
            last = (stderr.strip().splitlines() or [f"exit status {rc}"])[-1]
            crashed = started or chunk[0]
            rows[crashed] = {"name": crashed, "error": f"worker died ({rc}): {last}"[:500]}
            if log is not None:
                log(rows[crashed])
            todo = [n for n in chunk if n not in rows] + todo
    return rows


def known_failures() -> dict[str, str]:
    """Zoo models docs/limitations.md lists as failing, with the reason given there."""
    text = (ROOT / "docs" / "limitations.md").read_text()
    out: dict[str, str] = {}
    section = text.split("## Zoo models that fail a check", 1)
    if len(section) < 2:
        return out
    for line in section[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("- `"):
            name, _, reason = line[3:].partition("`")
            out[name] = reason.strip(" :")
    return out


def table(rows: list[dict[str, Any]], seconds: float) -> str:
    ok = sum(1 for r in rows if r.get("ok"))
    head = (
        "# Differential zoo\n\n"
        "Written by `make zoo` (benches/zoo.py). For every model: `validate_forward_pass` is True, "
        "every module pass's logged outputs equal (`torch.equal`) what a forward hook saw in an "
        "unlogged run, and every output layer equals the returned value at its address.\n\n"
        f"{len(rows)} models, {ok} pass all checks, {len(rows) - ok} fail; "
        f"{seconds / 60:.1f} min on {os.cpu_count()} cores (one thread).\n\n"
        "`ops`: operations; `layers`: distinct layers; `passes`: entries (layer passes); "
        "`max`: most passes of one layer; `s`: log + checks + validation wall time.\n\n"
        "| model | family | ops | layers | passes | max | validated | checks | s |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |\n"
    )
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['name']} | {r.get('family', '')} | | | | | no | error: {r['error'][:120]} | |")
            continue
        checks = "ok" if not r["problems"] else f"{len(r['problems'])} problems: {r['problems'][0][:100]}"
        lines.append(
            f"| {r['name']} | {r['family']} | {r['ops']} | {r['layers']} | {r['entries']} | {r['max_passes']} | "
            f"{'yes' if r['validated'] else 'no'} | {checks} | {r['seconds']:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="")
    ap.add_argument("--family", default="")
    ap.add_argument("--out", default=str(ROOT / "docs" / "zoo.md"))
    ap.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the models (default: only on a terminal)",
    )
    ns = ap.parse_args()
    from torchlens._progress import progress_enabled

    from models import registry

    reg = registry.registry()
    names = ns.models.split(",") if ns.models else [n for n, e in reg.items() if e.family.startswith(ns.family)]
    t0 = time.perf_counter()
    bar = None
    if progress_enabled(ns.progress):
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="zoo", unit="model", leave=False)

    def show(row: dict[str, Any]) -> None:
        status = "ok" if row.get("ok") else "FAIL " + (row.get("error") or "; ".join(row.get("problems", []))[:200])
        if row.get("ok") is False and not row.get("problems"):
            status = "FAIL validation"
        line = f"{row['name']:40s} {row.get('wall_s', 0):7.1f}s {status}"
        if bar is None:
            print(line, flush=True)
        else:
            bar.write(line)
            bar.update(1)

    rows = run_workers(sys.executable, "check", names, show)
    if bar is not None:
        bar.close()
    ordered = [{**rows[n], "family": reg[n].family} for n in names]
    Path(ns.out).write_text(table(ordered, time.perf_counter() - t0))
    failed = [r["name"] for r in ordered if not r.get("ok")]
    known = known_failures()
    unlisted = [n for n in failed if n not in known]
    print(
        f"\n{len(ordered)} models, {len(failed)} failed ({len(failed) - len(unlisted)} listed in docs/limitations.md)"
    )
    if unlisted:
        raise SystemExit("zoo failures not listed in docs/limitations.md: " + ", ".join(unlisted))


if __name__ == "__main__":
    main()
