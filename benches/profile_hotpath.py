"""Where the per-op capture time goes, line by line: a sampling profile (py-spy) of log_forward_pass
on a 2,000-call `x * 1.0001` chain, every sample attributed to one step of the hot path.

Usage: python benches/profile_hotpath.py [--grad] [--captures 300]
Needs py-spy (`pip install py-spy`); prints a markdown table. Sampling does not slow the profiled
code the way cProfile does (which adds a fixed cost to every Python call and so inflates the
many small calls of the hot path), so the shares are those of an unprofiled run.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, torch
sys.path.insert(0, {tests!r})
import torchlens as tl
from models.bench import ScalarChain
torch.set_num_threads(1)
m, x = ScalarChain(2000), torch.rand(8, 64)
if {grad}:
    x.requires_grad_(True)
for _ in range({n}):
    tl.log_forward_pass(m, x, layers_to_save=None)
"""

# (file suffix, first line, last line) -> step; the line ranges follow the source of the hot path,
# so they are looked up from the marker comments rather than hard-coded.
OP = "the torch op itself"


def _ranges() -> list[tuple[str, str, int, int]]:
    """Line ranges of the steps of `Session._log` / `_tag_and_meta`, found by their statements."""
    src = (ROOT / "python/torchlens/_capture/session.py").read_text().splitlines()

    def line_of(text: str, start: int = 0) -> int:
        for i in range(start, len(src)):
            if text in src[i]:
                return i + 1
        raise SystemExit(f"profile_hotpath: cannot find {text!r} in session.py (update the markers)")

    log = line_of("    def _log(\n".strip())
    scan0 = line_of("for a in args:", log)
    limit = line_of("limit = _PARENT_LIMITS.get(fid)", log)
    toks = line_of("self.toks.append(tk)", log)
    hsh = line_of("arg_hash = 0 if params", log)
    site_end = line_of("self.site_ids.append(sid)", log)
    rec = line_of("nid = _len(self.records)", log)
    gf = line_of("gf = t.grad_fn", log)
    tagcall = line_of("self._tag_and_meta(t, nid, gf)", gf)
    tm = line_of("def _tag_and_meta(")
    weak = line_of("self.tagged.append(weakref.ref(t))", tm)
    seta = line_of("_setattr(t, TAG, nid)", tm)
    meta_end = line_of("self.meta_ids.append(mid)", tm)
    return [
        ("_log: argument scan (parents, parameters, tokens)", "session.py", scan0, limit - 1),
        ("_log: parent limits, keyword arguments, token tuple", "session.py", limit, toks - 1),
        ("_log: per-op arrays (tokens, op time)", "session.py", toks, hsh - 1),
        ("_log: argument hash (func config)", "session.py", hsh, hsh),
        ("_log: call site (frame, interning)", "session.py", hsh + 1, site_end),
        ("_log: record tuple", "session.py", rec, gf - 1),
        ("_log: grad_fn read, op state (autograd saved bytes)", "session.py", gf, tagcall - 1),
        ("tag: weakref kept for the clean-up", "session.py", tm + 1, weak),
        ("tag: attribute set on the tensor", "session.py", seta, seta),
        ("meta: (shape, dtype, grad_fn type) interning", "session.py", seta + 1, meta_end),
    ]


def classify(frames: list[str], ranges: list[tuple[str, str, int, int]]) -> str:
    ours = [f for f in frames if "torchlens/" in f]
    if not ours:
        return "forward loop itself" if not frames else "other (torch internals)"
    last = ours[-1]
    name, _, where = last.rpartition(" (")
    path, _, line_s = where.rstrip(")").rpartition(":")
    line = int(line_s) if line_s.isdigit() else -1
    if path.endswith("hot.py"):
        return "wrapper (hot.py)"
    if path.endswith("classify.py"):
        return OP if "out = orig(" in _source_line(path, line) else "call(): dispatch, op timing, output classification"
    if path.endswith("opstate.py"):
        return "_log: grad_fn read, op state (autograd saved bytes)"
    if path.endswith("session.py"):
        for step, suffix, lo, hi in ranges:
            if path.endswith(suffix) and lo <= line <= hi:
                return step
        return f"session.py other ({name.strip()})"
    return f"other torchlens ({Path(path).name})"


_SRC: dict[str, list[str]] = {}


def _source_line(path: str, line: int) -> str:
    if path not in _SRC:
        cand = ROOT / "python" / path[path.index("torchlens/") :]
        _SRC[path] = cand.read_text().splitlines() if cand.exists() else []
    lines = _SRC[path]
    return lines[line - 1] if 0 < line <= len(lines) else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grad", action="store_true")
    ap.add_argument("--captures", type=int, default=300)
    ns = ap.parse_args()
    spy = shutil.which("py-spy")
    if spy is None:
        print("profile_hotpath: py-spy is not installed (pip install py-spy); skipped")
        return
    code = CHILD.format(tests=str(ROOT / "tests"), grad=ns.grad, n=ns.captures)
    with tempfile.TemporaryDirectory() as tmp:
        script, raw = Path(tmp) / "child.py", Path(tmp) / "raw.txt"
        script.write_text(code)
        cmd = [spy, "record", "-r", "1000", "-f", "raw", "-o", str(raw), "--", sys.executable, str(script)]
        subprocess.run(cmd, check=True, capture_output=True)
        text = raw.read_text()
    ranges = _ranges()
    counts: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if "ScalarChain.forward" not in stack:
            continue  # imports, the log's construction after the forward (measured elsewhere)
        frames = stack.split(";")
        i = max(k for k, f in enumerate(frames) if "ScalarChain.forward" in f)
        counts[classify(frames[i + 1 :], ranges)] += int(n)
    total = sum(counts.values())
    overhead = total - counts[OP] - counts["forward loop itself"]
    mode = "grad on" if ns.grad else "no_grad"
    print(
        f"| step (py-spy, 1 kHz, {ns.captures} captures of a 2,000-call `x * 1.0001` chain, {mode}) | share of the forward | share of the capture overhead |"
    )
    print("|---|---|---|")
    for step, n in counts.most_common():
        share = "" if step in (OP, "forward loop itself") else f"{100 * n / overhead:.1f}%"
        print(f"| {step} | {100 * n / total:.1f}% | {share} |")


if __name__ == "__main__":
    main()
