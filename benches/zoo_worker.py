"""One worker process of the differential zoo: runs zoo models and prints one JSON line each.

Usage: python benches/zoo_worker.py --mode check|dump NAME [NAME ...]

`check` (our torchlens only) runs tests/zoo_check.py's three checks; `dump` logs the model with
the public 2.15 API only, so that it runs unchanged under TorchLens 2.15.0 as a black box, and
prints the structure `diff_peer.py` compares: labels, passes, parent/child edges, module passes.
Before each model the worker prints a `START` line, so the parent can tell which one crashed it.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

PER_MODEL_S = 600


def dump(name: str) -> dict[str, Any]:
    import torch

    import torchlens as tl

    from models import registry

    model, args, kwargs = registry.build(name)
    start = time.perf_counter()
    log = tl.log_forward_pass(model, list(args), input_kwargs=kwargs or None, layers_to_save=None, random_seed=0)
    seconds = time.perf_counter() - start
    layers = []
    for label in log.layer_labels:
        e = log[label]
        layers.append(
            {
                "label": label,
                "parents": list(e.parent_layers),
                "children": list(e.child_layers),
                "modules": list(e.containing_modules),
                "exits": list(e.module_passes_exited),
                "num_passes": e.num_passes,
                "io_role": e.io_role,
            }
        )
    modules = [[m.address, m.num_passes] for m in log.modules]
    del log, model
    torch.set_grad_enabled(True)
    return {"name": name, "layers": layers, "modules": modules, "seconds": seconds}


def check(name: str) -> dict[str, Any]:
    import zoo_check

    res = zoo_check.check(name)
    return {**res.__dict__, "ok": res.ok}


def _timeout(_sig: int, _frame: Any) -> None:
    raise TimeoutError(f"model ran past {PER_MODEL_S} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["check", "dump"], required=True)
    ap.add_argument("names", nargs="+")
    ns = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    signal.signal(signal.SIGALRM, _timeout)
    run = check if ns.mode == "check" else dump
    for name in ns.names:
        print("START " + name, flush=True)
        t0 = time.perf_counter()
        signal.alarm(PER_MODEL_S)
        try:
            row = run(name)
        except Exception as exc:  # one model's failure is a result, not the end of the run
            tb = traceback.format_exc(limit=-3)
            row = {"name": name, "error": f"{type(exc).__name__}: {exc}"[:500], "trace": tb[-2000:]}
        finally:
            signal.alarm(0)
        row["wall_s"] = time.perf_counter() - t0
        print("RESULT " + json.dumps(row, default=str), flush=True)


if __name__ == "__main__":
    main()
