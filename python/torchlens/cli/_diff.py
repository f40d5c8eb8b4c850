"""`torchlens diff A B`: per-layer comparison of the saved activations of two bundles.

The comparison is `tl.compare_logs` (the pytest plugin's snapshots use it too, so both judge a
layer the same way): layers paired by label, or by the multi-trace matching of `tl.bundle` when
the labels differ; `allclose` (`|b - a| <= atol + rtol * |a|`, `a` the reference) or `cosine`
(`1 - cos(a, b) <= atol`); different shapes, and layers saved in one bundle only, diverge. Both
bundles are opened lazily and read one layer at a time.

Exit status 0 when no layer diverges, 1 otherwise (with the table of the worst layers and the
first diverging layer in A's order), 2 when a bundle cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from ._common import CliError, existing_path, one_line
from ._inspect import fastlog_root, load_lazy


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "diff",
        help="compare the saved activations of two bundles layer by layer (exit 1 when one diverges)",
    )
    p.add_argument("bundle_a", metavar="BUNDLE_A", help="the reference bundle")
    p.add_argument("bundle_b", metavar="BUNDLE_B", help="the bundle compared with it")
    p.add_argument("--atol", type=float, default=None, help="absolute tolerance, or the largest 1 - cos (1e-6)")
    p.add_argument("--rtol", type=float, default=None, help="relative tolerance of allclose (1e-5)")
    p.add_argument("--metric", choices=("allclose", "cosine"), default="allclose", help="divergence rule (allclose)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows of the table of worst layers (10)")
    p.add_argument(
        "--allow-missing", action="store_true", help="layers saved in only one bundle do not fail the comparison"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar over the layers (default: only on a terminal)",
    )
    p.set_defaults(func=cmd_diff)


def open_bundle(path: str) -> Any:
    """`tl.load(path, lazy=True)`; a missing path, a fastlog directory or a non-bundle is a `CliError`."""
    existing_path(path)
    if fastlog_root(path) is not None:
        raise CliError(f"{path!r} is a fastlog directory; diff compares bundles written by tl.save / torchlens save")
    return load_lazy(path)


def _json_safe(value: Any) -> Any:
    """NaN and infinities as the strings "nan", "inf", "-inf" (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def cmd_diff(args: argparse.Namespace) -> int:
    import torchlens as tl

    if args.top < 0:
        raise CliError("--top must be >= 0")
    log_a, log_b = open_bundle(args.bundle_a), open_bundle(args.bundle_b)
    tolerances = {k: v for k, v in (("atol", args.atol), ("rtol", args.rtol)) if v is not None}
    try:
        report = tl.compare_logs(log_a, log_b, metric=args.metric, progress=args.progress, **tolerances)
    except tl.TorchLensIOError as e:  # a damaged blob, found when its layer is read
        raise CliError(f"cannot read a saved activation: {one_line(str(e))}") from e
    except ValueError as e:  # a negative tolerance
        raise CliError(one_line(str(e))) from e
    diverging = [r for r in report.rows if r.diverged]
    missing = report.missing_in_a + report.missing_in_b
    failed = bool(diverging) or (bool(missing) and not args.allow_missing)
    first = diverging[0].label_a if diverging else None
    if args.json:
        data = report.to_dict()
        data.update(
            bundle_a=args.bundle_a,
            bundle_b=args.bundle_b,
            allow_missing=bool(args.allow_missing),
            failed=failed,
            first_diverging=first,
        )
        print(json.dumps(_json_safe(data), indent=2))
        return 1 if failed else 0
    print(f"a: {args.bundle_a} ({log_a.model_name}, {len(log_a)} layer passes)")
    print(f"b: {args.bundle_b} ({log_b.model_name}, {len(log_b)} layer passes)")
    print(report.format_table(top=args.top))
    if failed:
        why = f"first diverging layer: {first}" if first else f"missing layers: {', '.join(missing[:8])}"
        print(f"FAIL: {why}")
        return 1
    note = f" ({len(missing)} saved in one bundle only, allowed)" if missing else ""
    print(f"OK: {len(report.rows)} layers within tolerance{note}")
    return 0
