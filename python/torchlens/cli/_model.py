"""`MODULE:FACTORY` and `--input-shape`: building the model and its input for the model commands.

`MODULE` is an importable module (`torchvision.models`, `mypkg.nets`) or a path to a Python file
(`nets/small.py`); `FACTORY` names a callable in it (dotted for nested attributes,
`Nets.small`), called with no arguments to give the `nn.Module`. The model keeps the weights the
factory gives it (random ones for an untrained model: the seed is set before the call, so they
are the same on every run).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any

from ._common import CliError, one_line

DTYPES = ("float32", "float16", "bfloat16", "float64")


def parse_shape(text: str) -> tuple[int, ...]:
    """`"1,3,224,224"` (or `1x3x224x224`, `(1, 3, 224, 224)`) -> `(1, 3, 224, 224)`.

    Raises:
        argparse.ArgumentTypeError: Not a list of non-negative integers (argparse reports it, exit 2).
    """
    body = text.strip().strip("()[]").replace("x", ",").replace("X", ",")
    parts = [p.strip() for p in body.split(",")]
    if parts and parts[-1] == "":  # "(5,)"
        parts.pop()
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 0 for d in dims):
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r}: expected comma-separated non-negative integers such as 1,3,224,224"
        )
    return dims


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments every model command takes: target, input shapes, dtype, device, seed, mode."""
    p.add_argument("target", metavar="MODULE:FACTORY", help="module or .py file, and the callable returning the model")
    p.add_argument(
        "--input-shape",
        "-i",
        dest="input_shapes",
        metavar="SHAPE",
        type=parse_shape,
        action="append",
        required=True,
        help="shape of a random input, e.g. 1,3,224,224; repeat for a model with several inputs",
    )
    p.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the inputs and the model (float32)")
    p.add_argument("--device", default="cpu", help="device of the inputs and the model (cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed for the factory, the inputs and the logged pass (0)")
    p.add_argument("--train", action="store_true", help="keep the model in training mode (default: model.eval())")


def split_target(target: str) -> tuple[str, str]:
    """`"pkg.mod:make"` -> `("pkg.mod", "make")`; the last colon separates (file paths may hold one)."""
    module, sep, factory = target.rpartition(":")
    if not sep or not module or not factory:
        raise CliError(f"expected MODULE:FACTORY (e.g. torchvision.models:resnet18 or nets.py:make), got {target!r}")
    return module, factory


def import_target(module: str) -> Any:
    """Import `module` (a dotted name, or a path to a `.py` file)."""
    if module.endswith(".py") or os.sep in module or "/" in module:
        path = os.path.abspath(module)
        if not os.path.isfile(path):
            raise CliError(f"no Python file at {module!r}")
        name = "_torchlens_cli_" + os.path.splitext(os.path.basename(path))[0].replace("-", "_")
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise CliError(f"cannot import {module!r} as a Python file")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        sys.path.insert(0, os.path.dirname(path))  # its sibling modules import as in a script
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            raise CliError(f"importing {module!r} raised {type(e).__name__}: {one_line(str(e))}") from e
        return mod
    if os.getcwd() not in sys.path:  # `python -m` puts the working directory first; the console script does not
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise CliError(f"cannot import module {module!r}: {one_line(str(e))}") from e
    except Exception as e:
        raise CliError(f"importing module {module!r} raised {type(e).__name__}: {one_line(str(e))}") from e


@dataclass
class Target:
    """The model, its positional inputs, and how they were made (for messages and JSON output)."""

    model: Any
    inputs: tuple[Any, ...]
    name: str
    shapes: list[tuple[int, ...]]
    dtype: str
    device: str
    seed: int


def load_target(args: argparse.Namespace) -> Target:
    """Import the module, call the factory (seeded) and make the random inputs."""
    module_name, factory_name = split_target(args.target)
    module = import_target(module_name)
    factory: Any = module
    for part in factory_name.split("."):
        if not hasattr(factory, part):
            raise CliError(f"module {module_name!r} has no attribute {factory_name!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise CliError(f"{args.target} is not callable (a {type(factory).__name__})")

    import torch

    torch.manual_seed(args.seed)
    try:
        model = factory()
    except Exception as e:
        raise CliError(f"factory {args.target} raised {type(e).__name__}: {one_line(str(e))}") from e
    if not isinstance(model, torch.nn.Module):
        raise CliError(
            f"factory {args.target} returned an object of type {type(model).__name__}, not a torch.nn.Module"
        )
    dtype = getattr(torch, args.dtype)
    try:
        device = torch.device(args.device)
        model = model.to(device=device, dtype=dtype)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CliError(f"cannot move the model to {args.device} / {args.dtype}: {one_line(str(e))}") from e
    model.train(bool(args.train))
    gen = torch.Generator().manual_seed(args.seed)
    inputs = tuple(
        torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)
        for shape in args.input_shapes
    )
    return Target(model, inputs, factory_name, list(args.input_shapes), args.dtype, str(device), args.seed)


def run_model_step(target: Target, what: str, fn: Any) -> Any:
    """Call `fn()` (a torchlens call running the model); an exception becomes a `CliError` naming the inputs."""
    try:
        return fn()
    except CliError:
        raise
    except Exception as e:
        shapes = ", ".join("x".join(map(str, s)) for s in target.shapes)
        raise CliError(
            f"{what} failed on input {shapes} ({target.dtype}): {type(e).__name__}: {one_line(str(e))}"
        ) from e
