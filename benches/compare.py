"""Side-by-side table of two benchmark result files (ours and the peer), as markdown.

Usage: python benches/compare.py OURS.json PEER.json [--out benches/results/compare.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _fmt(row: dict[str, Any] | None, key: str, unit: str = "") -> str:
    if row is None or "error" in row:
        return "n/a"
    val = row.get(key)
    if val is None:
        return "n/a"
    if unit == "x":
        return f"{val:.2f}x"
    if unit == "ms":
        return f"{val * 1e3:.1f}"
    return f"{val:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ours")
    ap.add_argument("peer")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "compare.md"))
    ns = ap.parse_args()
    ours = json.loads(Path(ns.ours).read_text())
    peer = json.loads(Path(ns.peer).read_text())
    by_peer = {r["model"]: r for r in peer["rows"]}
    lines = [
        f"Machine: {ours['meta']['machine']}, Python {ours['meta']['python']}, run {ours['meta']['date']}.",
        "",
        "| model | ops | plain (ms) | metadata: torchlens | metadata: TorchLens 2.15 | us/op: torchlens "
        "| us/op: TorchLens 2.15 | all saved: torchlens | all saved: TorchLens 2.15 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ours["rows"]:
        p = by_peer.get(r["model"])
        lines.append(
            f"| {r['model']} | {r.get('ops', 'n/a')} | {_fmt(r, 'plain_s', 'ms')} | {_fmt(r, 'metadata_ratio', 'x')} "
            f"| {_fmt(p, 'metadata_ratio', 'x')} | {_fmt(r, 'metadata_us_per_op')} | {_fmt(p, 'metadata_us_per_op')} "
            f"| {_fmt(r, 'all_saved_ratio', 'x')} | {_fmt(p, 'all_saved_ratio', 'x')} |"
        )
    text = "\n".join(lines) + "\n"
    Path(ns.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
