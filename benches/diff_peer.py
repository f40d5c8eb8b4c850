"""`make diff-peer`: the differential zoo under our torchlens and under TorchLens 2.15.0 (its own
virtualenv, run as a black box through the public API), compared model by model.

Usage: python benches/diff_peer.py --peer-python /tmp/torchlens-peer-venv/bin/python
           [--models a,b] [--family toy] [--reuse] [--out benches/results/diff-peer.md]

Compared per model: the label list, the module addresses and their pass counts, every layer's
pass count, parents and children (the edges), containing module passes and exited module passes.
Raw dumps go to benches/results/diff-peer-{ours,peer}.json (`--reuse` compares existing dumps).
Exits 1 when a model differs and docs/limitations.md does not list it as a deliberate difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zoo import ROOT, run_workers

RESULTS = ROOT / "benches" / "results"
FIELDS = ("parents", "children", "modules", "exits", "num_passes")


def documented() -> dict[str, str]:
    """Models docs/limitations.md lists as deliberate differences from 2.15, with the reason."""
    text = (ROOT / "docs" / "limitations.md").read_text()
    section = text.split("## Deliberate differences from TorchLens 2.15", 1)
    out: dict[str, str] = {}
    if len(section) < 2:
        return out
    for line in section[1].split("\n## ", 1)[0].splitlines():
        if line.startswith("- `"):
            names, _, reason = line[2:].partition(":")
            for name in names.split(","):
                out[name.strip(" `")] = reason.strip()
    return out


def compare(ours: dict[str, Any], peer: dict[str, Any]) -> list[str]:
    """Differences between two dumps of one model, most important first ([] when identical)."""
    if "error" in ours or "error" in peer:
        if "error" in ours and "error" in peer:
            return []  # both refuse the model (reported in the table)
        return [
            f"error only in {'ours' if 'error' in ours else '2.15'}: {(ours.get('error') or peer.get('error'))[:200]}"
        ]
    diffs: list[str] = []
    la = [e["label"] for e in ours["layers"]]
    lb = [e["label"] for e in peer["layers"]]
    if la != lb:
        i = next((k for k, (x, y) in enumerate(zip(la, lb, strict=False)) if x != y), min(len(la), len(lb)))
        diffs.append(
            f"labels: {len(la)} vs {len(lb)} (2.15); first difference at {i}: "
            f"{la[i] if i < len(la) else '-'} vs {lb[i] if i < len(lb) else '-'}"
        )
    if ours["modules"] != peer["modules"]:
        ma = {tuple(m) for m in ours["modules"]}
        mb = {tuple(m) for m in peer["modules"]}
        if ma == mb:
            diffs.append("modules: same addresses and passes, different order")
        else:
            diffs.append(f"modules: only ours {sorted(ma - mb)[:3]}, only 2.15 {sorted(mb - ma)[:3]}")
    by_label = {e["label"]: e for e in peer["layers"]}
    for field in FIELDS:
        bad = [e["label"] for e in ours["layers"] if e["label"] in by_label and e[field] != by_label[e["label"]][field]]
        if bad:
            e, p = next(x for x in ours["layers"] if x["label"] == bad[0]), by_label[bad[0]]
            diffs.append(f"{field}: {len(bad)} layers, e.g. {bad[0]}: {e[field]} vs {p[field]} (2.15)")
    return diffs


def report(
    names: list[str], ours: dict[str, Any], peer: dict[str, Any], known: dict[str, str]
) -> tuple[str, list[str]]:
    rows, details, undocumented = [], [], []
    same = 0
    for name in names:
        a, b = ours.get(name, {"error": "not run"}), peer.get(name, {"error": "not run"})
        diffs = compare(a, b)
        n_ours = len(a.get("layers", [])) or "-"
        n_peer = len(b.get("layers", [])) or "-"
        t_ours = f"{a['seconds']:.2f}" if "seconds" in a else "-"
        t_peer = f"{b['seconds']:.2f}" if "seconds" in b else "-"
        if not diffs:
            same += 1
            status = "identical" if "error" not in a else "both fail: " + a["error"][:80]
        elif name in known:
            status = "documented difference"
        else:
            status = "**differs**"
            undocumented.append(name)
        rows.append(f"| {name} | {n_ours} | {n_peer} | {t_ours} | {t_peer} | {status} |")
        if diffs:
            why = f" (docs/limitations.md: {known[name]})" if name in known else ""
            details.append(f"### {name}{why}\n\n" + "\n".join(f"- {d}" for d in diffs) + "\n")
    head = (
        "# Differences from TorchLens 2.15.0\n\n"
        "Written by `make diff-peer` (benches/diff_peer.py): the zoo logged by our torchlens and by "
        "TorchLens 2.15.0 (PyPI, own virtualenv), compared model by model: labels, module addresses "
        "and passes, per-layer passes, parents, children, containing and exited module passes. "
        "Times are one `log_forward_pass` with `layers_to_save=None`, in seconds.\n\n"
        f"{len(names)} models: {same} identical, {len(names) - same - len(undocumented)} documented "
        f"differences (docs/limitations.md), {len(undocumented)} undocumented.\n\n"
        "| model | entries (ours) | entries (2.15) | s (ours) | s (2.15) | result |\n"
        "| --- | ---: | ---: | ---: | ---: | --- |\n"
    )
    body = head + "\n".join(rows) + "\n"
    if details:
        body += "\n## Details\n\n" + "\n".join(details)
    return body, undocumented


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-python", default="/tmp/torchlens-peer-venv/bin/python")
    ap.add_argument("--models", default="")
    ap.add_argument("--family", default="")
    ap.add_argument("--reuse", action="store_true", help="compare the dumps of the last run")
    ap.add_argument("--only", choices=["ours", "peer"], default="", help="rerun one side, reuse the other's dump")
    ap.add_argument("--out", default=str(RESULTS / "diff-peer.md"))
    ns = ap.parse_args()
    from models import registry

    reg = registry.registry()
    names = ns.models.split(",") if ns.models else [n for n, e in reg.items() if e.family.startswith(ns.family)]
    paths = {"ours": RESULTS / "diff-peer-ours.json", "peer": RESULTS / "diff-peer-peer.json"}
    dumps: dict[str, dict[str, Any]] = {}
    if ns.reuse:
        dumps = {k: json.loads(p.read_text()) for k, p in paths.items()}
    else:
        t0 = time.perf_counter()

        def run(which: str, python: str) -> None:
            def show(row: dict[str, Any]) -> None:
                print(
                    f"[{which}] {row['name']:40s} {row.get('wall_s', 0):6.1f}s {row.get('error', '')[:100]}", flush=True
                )

            dumps[which] = run_workers(python, "dump", names, show)

        sides = {"ours": sys.executable, "peer": ns.peer_python}
        if ns.only:
            other = "peer" if ns.only == "ours" else "ours"
            dumps[other] = json.loads(paths[other].read_text())
            sides = {ns.only: sides[ns.only]}
        threads = [threading.Thread(target=run, args=item) for item in sides.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        RESULTS.mkdir(parents=True, exist_ok=True)
        for k in sides:
            p = paths[k]
            old = json.loads(p.read_text()) if p.exists() and (ns.models or ns.family) else {}
            p.write_text(json.dumps({**old, **dumps[k]}))
        print(f"dumps written in {time.perf_counter() - t0:.0f} s")
    text, undocumented = report(names, dumps["ours"], dumps["peer"], documented())
    Path(ns.out).write_text(text)
    print(text.split("\n\n")[2])
    if undocumented:
        raise SystemExit("undocumented differences from 2.15: " + ", ".join(undocumented))


if __name__ == "__main__":
    main()
