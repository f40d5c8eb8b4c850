"""The commands that run a model: `summary`, `graph`, `validate`, `save`.

Each builds the model and its random input (`_model.load_target`), runs one public torchlens
call, prints, and returns the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from typing import Any

from ._common import CliError, fmt_bytes, fmt_count, fmt_shape, table
from ._model import Target, add_model_arguments, load_target, run_model_step

GRAPH_FORMATS = ("svg", "pdf", "png", "dot", "gv")


def add_parsers(sub: Any) -> None:
    """Register the four model commands on the `subparsers` object."""
    p = sub.add_parser("summary", help="layers, ops, parameters, FLOPs and memory of a model")
    add_model_arguments(p)
    p.add_argument("--json", action="store_true", help="print one JSON object (totals and one row per layer pass)")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("graph", help="draw the model's graph (svg, pdf, png or dot)")
    add_model_arguments(p)
    p.add_argument("-o", "--output", required=True, help="output file; its extension picks the format")
    p.add_argument("--rolled", action="store_true", help="one node per layer (default: one node per pass)")
    p.add_argument("--depth", type=int, default=None, metavar="N", help="collapse modules nested deeper than N")
    p.add_argument("--module", default=None, help="draw only this module (address, or address:pass)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("validate", help="replay every operation of the logged pass (exit 1 when one fails)")
    add_model_arguments(p)
    p.add_argument("--verbose", action="store_true", help="print the validation's progress messages")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the replayed layers (default: only on a terminal)",
    )
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("save", help="log the model's forward pass and write it as a bundle (for `diff`)")
    add_model_arguments(p)
    p.add_argument("-o", "--output", required=True, help="bundle directory to write (must not exist)")
    p.add_argument(
        "--layers",
        nargs="+",
        default=None,
        metavar="KEY",
        help="save only these layers (labels, module addresses or substrings; default: all)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    p.set_defaults(func=cmd_save)


def _model_input(target: Target) -> Any:
    """`input_args` for the torchlens entry points: the tensor, or the list of positional tensors."""
    return target.inputs[0] if len(target.inputs) == 1 else list(target.inputs)


def _log(target: Target, layers_to_save: Any = None) -> Any:
    import torchlens as tl

    return run_model_step(
        target,
        "logging the forward pass",
        lambda: tl.log_forward_pass(
            target.model, _model_input(target), layers_to_save=layers_to_save, random_seed=target.seed
        ),
    )


# --------------------------------------------------------------------------- summary


def summary_dict(log: Any, target: Target) -> dict[str, Any]:
    """The stable JSON object of `summary --json`: the model, its totals and one row per layer pass."""
    rows = [
        {
            "label": e.layer_label,
            "type": e.layer_type,
            "module": e.containing_module,
            "shape": list(e.tensor_shape) if e.tensor_shape is not None else None,
            "dtype": str(e.tensor_dtype).removeprefix("torch.") if e.tensor_dtype is not None else None,
            "params": int(e.num_params_total or 0),
            "flops": e.flops_forward,
            "memory": e.tensor_memory,
        }
        for e in log.layer_list
    ]
    return {
        "model": log.model_name,
        "target": target.name,
        "input_shapes": [list(s) for s in target.shapes],
        "dtype": target.dtype,
        "totals": {
            "layers": len(log.layer_logs),
            "layer_passes": len(log),
            "operations": log.num_operations,
            "modules": len(log.module_addresses),
            "params": log.total_params,
            "params_trainable": log.total_params_trainable,
            "params_memory": log.total_params_memory,
            "flops": log.total_flops_forward,
            "macs": log.total_macs_forward,
            "activation_memory": log.total_activation_memory,
        },
        "layers": rows,
    }


def cmd_summary(args: argparse.Namespace) -> int:
    target = load_target(args)
    log = _log(target)
    data = summary_dict(log, target)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    t = data["totals"]
    shapes = ", ".join(fmt_shape(s) for s in target.shapes)
    print(f"{data['model']} on input {shapes} ({target.dtype})")
    rows = [
        [
            r["label"],
            r["type"],
            r["module"] or "",
            fmt_shape(r["shape"]),
            r["dtype"] or "-",
            fmt_count(r["params"]) if r["params"] else "",
            fmt_count(r["flops"]),
            fmt_bytes(r["memory"]),
        ]
        for r in data["layers"]
    ]
    headers = ["layer", "type", "module", "shape", "dtype", "params", "FLOPs", "memory"]
    print(table(headers, rows, right=[False] * 5 + [True] * 3))
    print(
        f"{t['layers']} layers ({t['layer_passes']} passes), {t['operations']} ops, {t['modules']} modules; "
        f"params {t['params']:,} ({fmt_bytes(t['params_memory'])}, {t['params_trainable']:,} trainable); "
        f"forward FLOPs {fmt_count(t['flops'])} (MACs {fmt_count(t['macs'])}); "
        f"activations {fmt_bytes(t['activation_memory'])}"
    )
    return 0


# --------------------------------------------------------------------------- graph


def cmd_graph(args: argparse.Namespace) -> int:
    out = args.output
    ext = os.path.splitext(out)[1].lstrip(".").lower()
    if ext not in GRAPH_FORMATS:
        raise CliError(f"cannot tell the format of {out!r}: its extension must be one of {', '.join(GRAPH_FORMATS)}")
    if args.depth is not None and args.depth < 0:
        raise CliError(f"--depth must be >= 0, got {args.depth}")
    if ext not in ("dot", "gv") and shutil.which("dot") is None:
        raise CliError("drawing needs graphviz's `dot` program (Debian/Ubuntu: apt-get install graphviz)")
    target = load_target(args)
    log = _log(target)
    options: dict[str, Any] = {"vis_mode": "rolled" if args.rolled else "unrolled", "module": args.module}
    if args.depth is not None:
        options["vis_nesting_depth"] = args.depth
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise CliError(f"the output directory {out_dir!r} does not exist")
    if ext in ("dot", "gv"):
        source = run_model_step(target, "drawing the graph", lambda: log.to_dot(**options))
        with open(out, "w", encoding="utf-8") as f:
            f.write(source)
    else:
        # Rendered in a scratch directory: graphviz's source file is written next to the output
        # (the output path without its extension) and must not clobber a file of the user's.
        with tempfile.TemporaryDirectory(prefix="torchlens-graph-") as tmp:
            stem = os.path.join(tmp, "graph")
            run_model_step(
                target,
                "drawing the graph",
                lambda: log.render_graph(vis_outpath=stem, vis_fileformat=ext, vis_save_only=True, **options),
            )
            rendered = f"{stem}.{ext}"
            if not os.path.isfile(rendered):
                raise CliError(f"graphviz did not write {out!r} (see the warning above)")
            shutil.move(rendered, out)
    mode = "rolled" if args.rolled else "unrolled"
    print(f"wrote {out} ({mode} graph of {log.model_name}, {len(log)} layer passes)")
    return 0


# --------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> int:
    import torchlens as tl

    target = load_target(args)
    ok = run_model_step(
        target,
        "validation",
        lambda: tl.validate_forward_pass(
            target.model, _model_input(target), random_seed=target.seed, verbose=args.verbose, progress=args.progress
        ),
    )
    sys.stdout.flush()
    if ok:
        print(f"validate: {target.name} passed (outputs, every replayed operation and the log's invariants)")
        return 0
    print(f"validate: {target.name} FAILED (the reason is on stderr)")
    return 1


# --------------------------------------------------------------------------- save


def cmd_save(args: argparse.Namespace) -> int:
    import torchlens as tl

    if os.path.lexists(args.output) and not args.overwrite:
        raise CliError(f"{args.output!r} already exists (pass --overwrite to replace it)")
    target = load_target(args)
    log = _log(target, layers_to_save="all" if args.layers is None else list(args.layers))
    tl.save(log, args.output, overwrite=bool(args.overwrite))
    print(
        f"wrote {args.output} ({log.model_name}, {len(log)} layer passes, "
        f"{log.num_tensors_saved} saved activations, {fmt_bytes(log.saved_activation_memory)})"
    )
    return 0
