"""From a finished capture to a `ModelLog`: the core's finalize pass, then the facade over its columns."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .._capture import distributed as _distributed
from .._capture import run as _run
from .._native import core as _core
from .model_log import ModelLog

if TYPE_CHECKING:
    from .._data import CaptureData


def finalize(data: CaptureData, detect_loops: bool) -> tuple[Any, float]:
    """Run the Rust post-processing (graph, loops, labels) on a capture; returns (columns, seconds)."""
    t0 = time.perf_counter()
    fin = _core.finalize(*data.core_inputs(), detect_loops)
    return fin, time.perf_counter() - t0


def build_log(
    model_name: str,
    data: CaptureData,
    saved: dict[int, torch.Tensor],
    *,
    random_seed: int,
    layers_to_save: Any,
    detect_loops: bool,
    time_forward: float = 0.0,
) -> ModelLog:
    """Finalize `data` in the core and wrap the result (also used to rebuild a log from a bundle)."""
    fin, t_core = finalize(data, detect_loops)
    info = {
        "random_seed": random_seed,
        "time_forward": time_forward,
        "time_core": t_core,
        "time_total": 0.0,
        "layers_to_save": layers_to_save,
        "detect_loops": detect_loops,
    }
    return ModelLog(model_name, data, fin, saved, info)


def metadata_log(model: nn.Module, input_args: Any, input_kwargs: dict[str, Any] | None) -> ModelLog:
    """A metadata-only log of one pass (no activations kept), for callers below the api layer."""
    seed = random.randint(1, 4294967294)
    args, kwargs = _run.normalize_inputs(model, input_args, input_kwargs)
    extras = {"save_args": False, "save_rng": False, "postfunc": None, "save_raw": True}
    cap = _run.run_capture(model, args, kwargs, None, False, seed, extras)
    data = _run.from_capture(cap)
    return build_log(
        _distributed.module_class(model).__name__,
        data,
        {},
        random_seed=seed,
        layers_to_save=None,
        detect_loops=True,
        time_forward=cap.time_forward,
    )


def drop_unsaved_layers(log: ModelLog) -> None:
    """`keep_unsaved_layers=False` (spec §2.4): the log shows only the entries with a saved value.

    Labels, pass numbers, module logs and whole-graph totals (`total_activation_memory`,
    `num_operations`) stay those of the full pass; the dropped labels are in `unlogged_layers`.
    """
    n = log._n_pos
    kept = [p for p in range(n) if log._has_saved(log._node_ids[p])]
    log._kept = None if len(kept) == n else kept
    log.keep_unsaved_layers = False
    log._cols = {k: v for k, v in log._cols.items() if k in ("extra", "extra_rolled")}
    log._layer_logs = None
