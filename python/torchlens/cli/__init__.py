"""The `torchlens` command line (also `python -m torchlens`), built on the public API only.

    torchlens summary  MODULE:FACTORY -i 1,3,224,224 [--dtype D] [--json]
    torchlens graph    MODULE:FACTORY -i SHAPE -o graph.svg [--rolled] [--depth N]
    torchlens validate MODULE:FACTORY -i SHAPE
    torchlens save     MODULE:FACTORY -i SHAPE -o BUNDLE [--layers KEY ...]
    torchlens inspect  BUNDLE [--json] [--tensors]
    torchlens diff     BUNDLE_A BUNDLE_B [--atol A] [--rtol R] [--metric cosine] [--top N]

Exit status: 0 success; 1 a check failed (`diff` found a diverging layer, `validate` a failed
replay); 2 bad input (usage, missing or invalid file, bad shape, a model that cannot be imported,
built or run), reported as one `torchlens: error: ...` line on stderr without a traceback
(`--debug` shows it). Warnings are printed as one `torchlens: warning: ...` line each.
See docs/cli.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any

from . import _diff, _inspect, _model_commands
from ._common import CliError, one_line

PROG = "torchlens"


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`torchlens summary: error: ...`), exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = _Parser(
        prog=PROG,
        description="Inspect, draw, validate and compare PyTorch models' forward passes with torchlens.",
        epilog="exit status: 0 success, 1 a check failed (diff, validate), 2 bad input. "
        "`torchlens COMMAND --help` for a command's options.",
    )
    parser.add_argument("--version", action="store_true", help="print the torchlens version and exit")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _model_commands.add_parsers(sub)
    _inspect.add_parser(sub)
    _diff.add_parser(sub)
    for command in sub.choices.values():  # `--debug` also after the command
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback")
    return parser


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {one_line(record.getMessage())}"


def _not_the_capture_banner(record: logging.LogRecord) -> bool:
    """Drops the "Feature extraction failed" banner of a capture that raised: the command's own
    error line already names the failure."""
    return "Feature extraction failed" not in record.getMessage()


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    sys.stderr.write(f"{PROG}: warning: {one_line(str(message))}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default `sys.argv[1:]`); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # usage errors (2) and --help (0), returned rather than raised
        return e.code if isinstance(e.code, int) else 2
    if args.version:
        import torchlens

        print(f"torchlens {torchlens.__version__}")
        return 0
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    saved_path = list(sys.path)  # a model's module may put its directory first (restored for in-process calls)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    # Library messages (the `torchlens` logger: e.g. why a validation failed) as one line each.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    handler.addFilter(_not_the_capture_banner)
    lib_logger = logging.getLogger("torchlens")
    lib_logger.addHandler(handler)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except BrokenPipeError:  # `torchlens summary ... | head`: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        message = str(e) if isinstance(e, CliError) else f"{type(e).__name__}: {e}"
        hint = "" if isinstance(e, CliError) or args.debug else " (--debug shows the traceback)"
        sys.stderr.write(f"{PROG}: error: {one_line(message)}{hint}\n")
        return 2
    finally:
        sys.path[:] = saved_path
        lib_logger.removeHandler(handler)
        warnings.showwarning = previous
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            pass


__all__ = ["CliError", "build_parser", "main"]
