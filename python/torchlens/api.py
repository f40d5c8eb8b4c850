"""`log_forward_pass` and the other top-level entry points."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._capture import distributed as _distributed
from ._capture import run as _run
from ._capture.postfunc import check_no_inference_mode
from ._data import F_PARENTS
from ._errors import TrainingModeConfigError
from ._options import (
    MISSING,
    StreamingOptions,
    VisualizationOptions,
    merge_visualization,
    resolve_renamed,
    visualization_to_render_kwargs,
)
from ._progress import logger as _logger
from ._selection import resolve, selection_kind
from ._variants import check_model_and_input_variants
from .api_grads import attach_gradients, resolve_grad_options
from .log.build import build_log, drop_unsaved_layers
from .log.model_log import ModelLog
from .validate import check_against_truth, ground_truth
from .viz._code_panel import capture_source

_FAIL_BANNER = "*" * 78


def _check_model(model: Any) -> nn.Module:
    # DDP / DataParallel: their `.module`; the FSDP1 wrapper and DTensor tensor parallelism are refused.
    model = _distributed.unwrap_model(model)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}.")
    name = type(model).__name__
    if name == "OptimizedModule" or hasattr(model, "_orig_mod"):
        raise RuntimeError(
            "torchlens.log_forward_pass does not support torch.compile'd models: dynamo replaces the Python forward "
            "with a compiled graph that bypasses TorchLens' function wrappers. Call log_forward_pass on the original "
            "(un-compiled) model."
        )
    if isinstance(model, torch.jit.ScriptModule):
        raise RuntimeError("torchlens cannot log TorchScript modules; pass the original Python module instead.")
    return model


def log_forward_pass(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    layers_to_save: Any = "all",
    keep_unsaved_layers: bool = True,
    output_device: str = "same",
    activation_postfunc: Any = None,
    gradient_postfunc: Any = None,
    save_raw_activation: bool = True,
    save_raw_gradient: bool = True,
    mark_input_output_distances: Any = MISSING,
    detach_saved_tensors: bool = False,
    save_function_args: bool = False,
    save_gradients: bool = False,
    gradients_to_save: Any = MISSING,
    save_source_context: bool = False,
    save_rng_states: bool = False,
    vis_mode: Any = MISSING,
    vis_nesting_depth: Any = MISSING,
    vis_outpath: Any = MISSING,
    vis_save_only: Any = MISSING,
    vis_fileformat: Any = MISSING,
    vis_buffer_layers: Any = MISSING,
    vis_direction: Any = MISSING,
    vis_graph_overrides: Any = MISSING,
    vis_node_mode: Any = MISSING,
    vis_edge_overrides: Any = MISSING,
    vis_gradient_edge_overrides: Any = MISSING,
    vis_module_overrides: Any = MISSING,
    vis_node_placement: Any = MISSING,
    vis_renderer: Any = MISSING,
    vis_theme: Any = MISSING,
    random_seed: int | None = None,
    num_context_lines: Any = MISSING,
    optimizer: Any = None,
    detect_loops: Any = MISSING,
    save_activations_to: Any = MISSING,
    keep_activations_in_memory: Any = MISSING,
    save_gradients_to: Any = MISSING,
    keep_gradients_in_memory: Any = MISSING,
    activation_sink: Any = MISSING,
    unwrap_when_done: bool = False,
    verbose: bool = False,
    source_context_lines: Any = MISSING,
    compute_input_output_distances: Any = MISSING,
    detect_recurrent_patterns: Any = MISSING,
    visualization: VisualizationOptions | None = None,
    streaming: StreamingOptions | None = None,
    train_mode: Any = MISSING,
) -> ModelLog:
    """Run `model` on the inputs with every operation recorded, and return the log.

    Args:
        model: The module to run.
        input_args: A tensor, or a list/tuple of positional arguments for `forward`.
        input_kwargs: Keyword arguments for `forward`.
        layers_to_save: `"all"`, `None`/`"none"`, or a list of lookup keys, ordinals and substrings.
        keep_unsaved_layers: False drops the entries without a saved activation (listed in `unlogged_layers`).
        output_device: `"same"`, `"cpu"` or `"cuda"`: where saved activations are moved.
        detach_saved_tensors: Detach saved copies from autograd.
        random_seed: Seed applied to `random`, numpy and torch before the pass (drawn if None).
        detect_recurrent_patterns: Full loop detection (True) or only same-function-same-params grouping.
        visualization: Graph rendering options; rendering is off by default.
        save_gradients_to: Bundle path the gradients of a later backward stream to (implies
            `save_gradients`; must equal the activations' bundle path if both are given). The
            bundle is committed after `log_backward` / `recording_backward`, or by
            `log.finalize_gradient_bundle()` after a plain `.backward()`.
        keep_gradients_in_memory: False: once the bundle is committed, gradients are read from it.

    Returns:
        A `ModelLog` with every operation of the forward pass.

    Raises:
        ValueError: Bad options or a `layers_to_save` key that matches nothing.
        RuntimeError: Unsupported model wrappers, or a second concurrent logging call.
    """
    t_start = time.perf_counter()
    model = _check_model(model)
    flat_vis = {
        "vis_mode": vis_mode,
        "vis_nesting_depth": vis_nesting_depth,
        "vis_outpath": vis_outpath,
        "vis_save_only": vis_save_only,
        "vis_fileformat": vis_fileformat,
        "vis_buffer_layers": vis_buffer_layers,
        "vis_direction": vis_direction,
        "vis_graph_overrides": vis_graph_overrides,
        "vis_node_mode": vis_node_mode,
        "vis_edge_overrides": vis_edge_overrides,
        "vis_gradient_edge_overrides": vis_gradient_edge_overrides,
        "vis_module_overrides": vis_module_overrides,
        "vis_node_placement": vis_node_placement,
        "vis_renderer": vis_renderer,
        "vis_theme": vis_theme,
    }
    call = _CallOptions(
        layers_to_save=layers_to_save,
        output_device=output_device,
        activation_postfunc=activation_postfunc,
        save_raw_activation=bool(save_raw_activation),
        detach_saved_tensors=bool(detach_saved_tensors),
        save_function_args=bool(save_function_args),
        save_source_context=bool(save_source_context),
        save_rng_states=bool(save_rng_states),
        random_seed=random.randint(1, 4294967294) if random_seed is None else random_seed,
        detect_loops=bool(
            resolve_renamed("detect_loops", detect_loops, "detect_recurrent_patterns", detect_recurrent_patterns, True)
        ),
        num_context_lines=int(
            resolve_renamed("num_context_lines", num_context_lines, "source_context_lines", source_context_lines, 7)
        ),
        distances=bool(
            resolve_renamed(
                "mark_input_output_distances",
                mark_input_output_distances,
                "compute_input_output_distances",
                compute_input_output_distances,
                False,
            )
        ),
        visualization=merge_visualization(visualization, flat_vis),
    )
    call.check()
    stream_path, keep_in_memory, callback = _resolve_streaming(
        streaming, save_activations_to, keep_activations_in_memory, activation_sink
    )
    if stream_path is not None:  # under torch.distributed: this rank's shard, rank_{RR}/{name}
        from .io._ranks import distributed_shard_path

        shard = distributed_shard_path(stream_path)
        if shard is not None:
            if (
                save_gradients_to is not MISSING
                and save_gradients_to is not None
                and str(save_gradients_to) == stream_path
            ):
                save_gradients_to = str(shard)
            stream_path = str(shard)
    grads = resolve_grad_options(
        bool(save_gradients),
        gradients_to_save,
        layers_to_save,
        gradient_postfunc,
        bool(save_raw_gradient),
        train_mode,
        save_gradients_to,
        keep_gradients_in_memory,
        stream_path,
    )
    if grads.train_mode:
        check_train_mode(call.detach_saved_tensors, stream_path, grads.bundle_path)
    call.train_mode = bool(grads.train_mode)
    call.grad_hook = None if grads.store is None else grads.store.register
    grad_stream = None
    if grads.bundle_path is not None:  # gradients stream to a bundle, committed after the backward
        from .io import GradientStream

        grad_stream = GradientStream(grads.bundle_path, grads.keep_in_memory, with_activations=stream_path is not None)
    args, kwargs = _run.normalize_inputs(model, input_args, input_kwargs)
    check_model_and_input_variants(model, args, kwargs)
    caller = _caller_site()
    sink = None
    if stream_path is not None:
        from .io import StreamSink

        sink_info = {
            "random_seed": call.random_seed,
            "layers_to_save": layers_to_save,
            "detect_loops": call.detect_loops,
        }
        sink = StreamSink(
            stream_path,
            keep_in_memory,
            _distributed.module_class(model).__name__,
            sink_info,
            postfunc=activation_postfunc is not None,
        )
    elif callback is not None:
        from .io import CallbackSink

        sink = CallbackSink(callback, keep_in_memory, call.output_device)
    cap = _capture(model, args, kwargs, call, sink if call.kind != "list" else None, sink, banner=True)
    data = _run.from_capture(cap)
    data.caller_site = caller
    saved = dict(cap.session.saved)
    log = build_log(
        _distributed.module_class(model).__name__,
        data,
        saved,
        random_seed=call.random_seed,
        layers_to_save=layers_to_save,
        detect_loops=call.detect_loops,
        time_forward=cap.time_forward,
    )
    _attach_outputs(log, cap, saved)
    _set_options(log, cap, call, model)
    log._activation_callback = callback  # save_new_activations sends its activations there too
    log.train_mode = bool(grads.train_mode)
    attach_gradients(log, grads, gradient_postfunc, bool(save_raw_gradient))
    if call.kind == "list":
        _second_pass(log, model, args, kwargs, call, cap, sink)
    if not keep_unsaved_layers:
        drop_unsaved_layers(log)
    _finish(log, call, sink, t_start, grad_stream)
    if optimizer is not None:
        _mark_optimized(log, optimizer)
    if verbose:
        print(
            f"[torchlens] {log.model_name}: {len(log)} layers logged; forward {log.time_forward_pass:.3f}s, "
            f"post-processing {log.time_postprocessing:.3f}s, total {log.time_total:.3f}s"
        )
    if unwrap_when_done:
        from ._capture.wrap import unwrap_torch

        unwrap_torch()
    return log


def check_train_mode(detach: bool, stream_path: Any, grads_path: Any = None) -> None:
    """The guard rails of `train_mode=True` (spec §8.6): saved activations must stay in the autograd graph."""
    if detach:
        raise TrainingModeConfigError("train_mode=True requires detach_saved_tensors=False so gradients can propagate")
    if stream_path is not None:
        raise TrainingModeConfigError("train_mode=True is not compatible with slow/replay activation disk saves")
    if grads_path is not None:
        raise TrainingModeConfigError("train_mode=True is not compatible with slow/replay gradient disk saves")
    check_no_inference_mode()


def _mark_optimized(log: ModelLog, optimizer: Any) -> None:
    """`ParamLog.has_optimizer`: whether the optimizer updates that parameter."""
    ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
    for pl in log.params:
        live = pl._live()
        pl.has_optimizer = live is not None and id(live) in ids


@dataclass
class _CallOptions:
    """The resolved options of one `log_forward_pass` call (renamed and deprecated spellings merged)."""

    layers_to_save: Any
    output_device: str
    activation_postfunc: Any
    save_raw_activation: bool
    detach_saved_tensors: bool
    save_function_args: bool
    save_source_context: bool
    save_rng_states: bool
    random_seed: int
    detect_loops: bool
    num_context_lines: int
    distances: bool
    visualization: VisualizationOptions
    kind: str = field(init=False)
    train_mode: bool = False
    grad_hook: Any = None  # `GradientStore.register` when gradients are captured

    def __post_init__(self) -> None:
        self.kind = selection_kind(self.layers_to_save)

    def check(self) -> None:
        if self.visualization.mode not in ("none", "rolled", "unrolled"):
            raise ValueError("Visualization option must be either 'none', 'rolled', or 'unrolled'.")
        if self.output_device not in ("same", "cpu", "cuda"):
            raise ValueError("output_device must be either 'same', 'cpu', or 'cuda'.")

    def capture_extras(self) -> dict[str, Any]:
        return {
            "save_args": self.save_function_args,
            "save_rng": self.save_rng_states,
            "postfunc": self.activation_postfunc,
            "save_raw": self.save_raw_activation,
            "grad_hook": self.grad_hook,
            "train_mode": self.train_mode,
        }


def _capture(
    model: nn.Module,
    args: list,
    kwargs: dict,
    call: _CallOptions,
    stream_to: Any,
    sink: Any,
    save: Any = MISSING,
    banner: bool = False,
) -> _run.Capture:
    """One captured forward pass; a failure aborts the streaming sink (and logs the 2.15 banner)."""
    if save is MISSING:
        save = "all" if call.kind == "all" else None
    try:
        cap = _run.run_capture(
            model,
            args,
            kwargs,
            save,
            call.detach_saved_tensors,
            call.random_seed,
            call.capture_extras(),
            sink=stream_to,
        )
    except _run.ReentrancyError:
        if sink is not None:
            sink.abort("another forward pass was being logged")
        raise
    except BaseException as e:
        if sink is not None:
            sink.abort(f"{type(e).__name__}: {e}")
        if banner:  # 2.15 printed it; here it goes to the torchlens logger (stderr when logging is not set up)
            _logger.error(
                f"{_FAIL_BANNER}\nFeature extraction failed; returning model and environment to normal\n{_FAIL_BANNER}"
            )
        raise
    if call.save_function_args:
        cap.session.prune_arg_versions()
    return cap


def _second_pass(
    log: ModelLog, model: nn.Module, args: list, kwargs: dict, call: _CallOptions, cap: _run.Capture, sink: Any
) -> None:
    """Two-pass selection (spec §2.4): resolve the keys on the first log, then save only those entries."""
    wanted = {log._node_id(p) for p in resolve(log, call.layers_to_save)}
    wanted.update(log._record_index(p) for p in range(len(log)) if log._is_output(p))
    wanted_ids = frozenset(n for n in wanted if n < log._n_records)
    if sink is not None:  # the saving pass reports final labels (spec §8.5)
        labels = log._col("labels_w_pass")
        sink.replay_labels({log._node_id(p): labels[p] for p in range(len(log))})
    cap2 = _capture(model, args, kwargs, call, sink, sink, save=wanted_ids)
    _check_same_graph(cap, cap2)
    saved = dict(cap2.session.saved)
    log._saved = saved
    _attach_outputs(log, cap2, saved)
    log._transformed = _transformed_with_outputs(cap2)
    log._data.func_args, log._data.func_rng = cap2.session.func_args, cap2.session.func_rng


def _finish(log: ModelLog, call: _CallOptions, sink: Any, t_start: float, grad_stream: Any = None) -> None:
    """Move saved values, commit the streamed bundle (or start streaming gradients to it), render
    the requested graph."""
    if call.output_device != "same":
        saved = log._saved
        for k, v in saved.items():
            saved[k] = v.to(call.output_device)
    if grad_stream is not None:
        grad_stream.start(log, sink)  # the bundle is committed after the backward (io/_grad_stream.py)
    elif sink is not None:
        sink.commit(log)
    log.time_total = time.perf_counter() - t_start
    vis = call.visualization
    if vis.mode != "none":
        log.render_graph(**visualization_to_render_kwargs(vis))


def _resolve_streaming(
    streaming: StreamingOptions | None, save_to: Any, keep: Any, sink: Any
) -> tuple[str | None, bool, Any]:
    """(bundle path or None, keep activations in memory, activation callback or None) from `streaming`
    and the deprecated flat kwargs."""
    from ._options import warn_deprecated

    opts = streaming if streaming is not None else StreamingOptions()
    path, retain, callback = opts.bundle_path, opts.retain_in_memory, opts.activation_callback

    def flat_value(old: str, new: str) -> None:
        if opts.is_field_explicit(new):
            raise TypeError(f"Do not pass both `{old}` and `streaming.{new}`.")
        warn_deprecated(old, f"streaming=StreamingOptions({new}=...)")

    if save_to is not MISSING and save_to is not None:
        flat_value("save_activations_to", "bundle_path")
        path = save_to
    if keep is not MISSING:
        flat_value("keep_activations_in_memory", "retain_in_memory")
        retain = bool(keep)
    if sink is not MISSING and sink is not None:
        flat_value("activation_sink", "activation_callback")
        callback = sink
    if callback is not None:
        if path is not None:
            raise ValueError("activation_callback is mutually exclusive with a bundle path.")
        if not callable(callback):
            raise TypeError(f"activation_callback must be callable, not {type(callback).__name__}.")
    elif path is None and not retain:
        raise ValueError("keep_activations_in_memory=False requires a bundle path to stream activations to.")
    return (None if path is None else str(path)), bool(retain), callback


def _caller_site() -> tuple | None:
    """(code, line) of the first frame outside torchlens: the user's call into the entry point."""
    import os
    import sys

    pkg = os.path.dirname(os.path.abspath(__file__))
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(pkg):
        f = f.f_back
    return None if f is None else (f.f_code, f.f_lineno)


def _transformed_with_outputs(cap: _run.Capture) -> dict[int, Any]:
    tr = dict(cap.session.transformed)
    n = len(cap.session.records)
    for k, (producer, _, _) in enumerate(cap.session.outputs):
        if producer in tr and n + k not in tr:
            tr[n + k] = tr[producer]
    return tr


def _set_options(log: ModelLog, cap: _run.Capture, call: _CallOptions, model: nn.Module) -> None:
    """Record the capture options on the log (spec §2.5 config fields)."""
    post = call.activation_postfunc
    log.activation_postfunc = post
    log.activation_postfunc_repr = None if post is None else repr(post)
    log.save_raw_activation = call.save_raw_activation
    log.save_function_args = call.save_function_args
    log.save_rng_states = call.save_rng_states
    log.save_source_context = call.save_source_context
    log.num_context_lines = call.num_context_lines
    log.mark_input_output_distances = call.distances
    log.detach_saved_tensors = call.detach_saved_tensors
    log.output_device = call.output_device
    log._transformed = _transformed_with_outputs(cap)
    log._rng_before_forward = getattr(cap.session, "rng_before_forward", None)
    log._source_model_ref = _weak(model)
    log._source_snapshot = capture_source(model)  # the code panel's source, as it was at log time


def _weak(model: Any) -> Any:
    import weakref

    try:
        return weakref.ref(model)
    except TypeError:
        return None


def _attach_outputs(log: ModelLog, cap: _run.Capture, saved: dict[int, torch.Tensor]) -> None:
    n = len(cap.session.records)
    for k, (producer, _, _) in enumerate(cap.session.outputs):
        if producer in saved and n + k not in saved:  # the session keeps its own value for a changed output
            saved[n + k] = saved[producer]


def _check_same_graph(a: _run.Capture, b: _run.Capture) -> None:
    ra, rb = a.session.records, b.session.records
    if len(ra) != len(rb) or any(x[:3] != y[:3] or x[F_PARENTS] != y[F_PARENTS] for x, y in zip(ra, rb, strict=True)):
        raise ValueError(
            "The computational graph changed for this forward pass compared to the original call to "
            "log_forward_pass (either due to different inputs or a different random seed), so "
            "save_new_activations failed. Please re-run log_forward_pass with the desired inputs."
        )


def log_model_metadata(model: nn.Module, input_args: Any, input_kwargs: dict[str, Any] | None = None) -> ModelLog:
    """Log the forward pass without saving any activation (metadata only)."""
    return log_forward_pass(model, input_args, input_kwargs, layers_to_save=None, compute_input_output_distances=True)


def get_model_metadata(model: nn.Module, input_args: Any, input_kwargs: dict[str, Any] | None = None) -> ModelLog:
    """Deprecated alias of `log_model_metadata`."""
    from ._options import warn_deprecated

    warn_deprecated("get_model_metadata", "log_model_metadata")
    return log_model_metadata(model, input_args, input_kwargs)


def validate_forward_pass(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict | None = None,
    random_seed: int | None = None,
    verbose: bool = False,
    validate_metadata: bool = True,
    *,
    progress: bool | None = None,
) -> bool:
    """Log `model` and check every saved activation by replaying the ops (spec §11.1).

    Args:
        progress: A progress bar over the replayed layers: None (default) shows it only on a
            terminal or in a notebook, True always, False never.

    Returns:
        True when the outputs match a plain run, every op replays to its saved value and
        perturbing any parent changes the op's result; False otherwise (the reason is logged as
        a warning on the ``torchlens`` logger).
    """
    model = _check_model(model)
    if random_seed is None:
        random_seed = random.randint(1, 4294967294)
    args, kwargs = _run.normalize_inputs(model, input_args, input_kwargs)
    check_model_and_input_variants(model, args, kwargs)
    truth = ground_truth(model, args, kwargs, random_seed)
    log = log_forward_pass(
        model,
        args,
        kwargs,
        layers_to_save="all",
        save_function_args=True,
        save_rng_states=True,
        random_seed=random_seed,
    )
    return check_against_truth(log, truth, verbose, validate_metadata, progress)
