"""The other top-level entry points (spec §1.4, §8.7): `show_model_graph`, `summary`, the validation
helpers, `rehydrate_nested` and the fast replay behind `ModelLog.save_new_activations`.

They sit beside `api` (the entry-point layer) and are built on `log_forward_pass`.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch import nn

from . import api
from ._capture import run as _run
from ._data import F_PARENTS
from ._options import (
    MISSING,
    VIS_ALIASES,
    VisualizationOptions,
    resolve_renamed,
    visualization_to_render_kwargs,
    warn_deprecated,
)
from ._progress import progress as _progress
from ._selection import resolve
from ._variants import check_model_and_input_variants
from .api_grads import selected_nids
from .log.gradients import GradientStore
from .log.model_log import ModelLog
from .viz import check_render_options


def show_model_graph(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    vis_mode: Any = MISSING,
    vis_nesting_depth: Any = MISSING,
    vis_outpath: Any = MISSING,
    vis_graph_overrides: Any = MISSING,
    module: Any = None,
    vis_edge_overrides: Any = MISSING,
    vis_gradient_edge_overrides: Any = MISSING,
    vis_module_overrides: Any = MISSING,
    vis_save_only: Any = MISSING,
    vis_fileformat: Any = MISSING,
    vis_buffer_layers: Any = MISSING,
    vis_direction: Any = MISSING,
    vis_node_placement: Any = MISSING,
    vis_renderer: Any = MISSING,
    vis_theme: Any = MISSING,
    vis_node_mode: Any = MISSING,
    code_panel: Any = False,
    random_seed: int | None = None,
    detect_loops: Any = MISSING,
    verbose: bool = False,
    detect_recurrent_patterns: Any = MISSING,
    visualization: VisualizationOptions | None = None,
) -> None:
    """Log the model without saving activations and render its graph (spec §1.4).

    Defaults: unrolled, written to `modelgraph.pdf`. The `vis_*` arguments are the
    `VisualizationOptions` fields under their flat names (see `_options.VIS_ALIASES`); fields set
    explicitly on `visualization` win over them.

    Args:
        model: The module to run.
        input_args: Positional input(s) for `forward`.
        input_kwargs: Keyword inputs for `forward`.
        module: Focus the render on one module (a ModuleLog address, or `"addr:k"` for one pass).
        code_panel: Draw the model's source beside the graph: `True`/`"forward"`, `"class"`,
            `"init+forward"` or `f(model) -> str`.
        random_seed: Seed for the logged pass.
        detect_loops: Deprecated spelling of `detect_recurrent_patterns`.
        verbose: Print progress messages.
        detect_recurrent_patterns: Full loop detection (default True).
        visualization: Options object.

    Raises:
        ValueError: `vis_mode` is not `"rolled"` or `"unrolled"`, or another option is invalid.
    """
    render = visualization_to_render_kwargs(VisualizationOptions(mode="unrolled", output_path="modelgraph"))
    flat = {
        "vis_mode": vis_mode,
        "vis_nesting_depth": vis_nesting_depth,
        "vis_outpath": vis_outpath,
        "vis_graph_overrides": vis_graph_overrides,
        "vis_edge_overrides": vis_edge_overrides,
        "vis_gradient_edge_overrides": vis_gradient_edge_overrides,
        "vis_module_overrides": vis_module_overrides,
        "vis_save_only": vis_save_only,
        "vis_fileformat": vis_fileformat,
        "vis_buffer_layers": vis_buffer_layers,
        "vis_direction": vis_direction,
        "vis_node_placement": vis_node_placement,
        "vis_renderer": vis_renderer,
        "vis_theme": vis_theme,
        "vis_node_mode": vis_node_mode,
    }
    given = VisualizationOptions(**{VIS_ALIASES[k]: v for k, v in flat.items() if v is not MISSING})
    render.update(visualization_to_render_kwargs(given, only_explicit=True))
    if visualization is not None:
        render.update(visualization_to_render_kwargs(visualization, only_explicit=True))
    if render["vis_mode"] not in ("rolled", "unrolled"):
        raise ValueError("Visualization option must be either 'none', 'rolled', or 'unrolled'.")
    check_render_options(render, code_panel)
    detect = resolve_renamed("detect_loops", detect_loops, "detect_recurrent_patterns", detect_recurrent_patterns, True)
    log = api.log_forward_pass(
        model,
        input_args,
        input_kwargs,
        layers_to_save=None,
        random_seed=random_seed,
        detect_recurrent_patterns=detect,
        verbose=verbose,
    )
    try:
        log.render_graph(module=module, code_panel=code_panel, **render)
    finally:
        log.cleanup()


def summary(
    model: nn.Module, input_args: Any, input_kwargs: dict[str, Any] | None = None, **summary_kwargs: Any
) -> str:
    """Log the model without saving activations and return `model_log.summary(**summary_kwargs)`."""
    log = api.log_forward_pass(model, input_args, input_kwargs, layers_to_save=None, detect_recurrent_patterns=True)
    try:
        return log.summary(**summary_kwargs)
    finally:
        log.cleanup()


def validate_saved_activations(
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    random_seed: int | None = None,
    verbose: bool = False,
    validate_metadata: bool = True,
) -> bool:
    """Deprecated alias of `validate_forward_pass`."""
    warn_deprecated("validate_saved_activations", "validate_forward_pass")
    return api.validate_forward_pass(model, input_args, input_kwargs, random_seed, verbose, validate_metadata)


_BATCH_COLUMNS = ["model_category", "model_name", "input_name", "validation_success"]


def validate_batch_of_models_and_inputs(
    models_and_inputs_dict: dict[str, dict[str, Any]],
    out_path: str,
    redo_model_if_already_run: bool = True,
    *,
    progress: bool | None = None,
) -> Any:
    """Validate several models on several inputs each and keep the results in a CSV file.

    Args:
        models_and_inputs_dict: `model_name -> {"model_category": str, "model_loading_func":
            callable() -> nn.Module, "model_sample_inputs": {input_name: input}}`.
        out_path: The CSV file; read first if it exists, rewritten after each model.
        redo_model_if_already_run: If False, models that already have rows in the file are skipped;
            if True they are validated again and their old rows replaced.
        progress: A progress bar over the models: None (default) shows it only on a terminal or
            in a notebook, True always, False never.

    Returns:
        A pandas DataFrame with columns model_category, model_name, input_name, validation_success.
    """
    import pandas as pd

    if os.path.exists(out_path):
        table = pd.read_csv(out_path)
    else:
        table = pd.DataFrame(columns=_BATCH_COLUMNS)
    done = set(table["model_name"].astype(str))
    items = models_and_inputs_dict.items()
    for name, entry in _progress(items, total=len(items), desc="Validating models", unit="model", enabled=progress):
        if name in done and not redo_model_if_already_run:
            continue
        model = entry["model_loading_func"]()
        rows = []
        for input_name, inputs in entry["model_sample_inputs"].items():
            ok = api.validate_forward_pass(model, inputs, progress=False)
            rows.append([entry["model_category"], name, input_name, bool(ok)])
        new = pd.DataFrame(rows, columns=_BATCH_COLUMNS)
        kept = table[table["model_name"].astype(str) != name]
        table = new if kept.empty else pd.concat([kept, new], ignore_index=True)
        table.to_csv(out_path, index=False)
    return table


def rehydrate_nested(model_log: Any, *, map_location: str | torch.device = "cpu") -> None:
    """Materialize tensors nested in a loaded log's captured arguments and RNG states (spec §9.4).

    torchlens bundles store no nested tensors (captured arguments and RNG states are not saved),
    so a log from `load(..., materialize_nested=False)` has nothing pending and this only checks
    its argument.
    """
    if not isinstance(model_log, ModelLog):
        raise TypeError(f"rehydrate_nested expects a ModelLog, not {type(model_log).__name__}.")
    torch.device(map_location)  # a bad location fails here, as it would when tensors were moved


def save_new_activations(
    log: ModelLog,
    model: nn.Module,
    input_args: Any,
    input_kwargs: dict[str, Any] | None = None,
    layers_to_save: Any = "all",
    gradients_to_save: Any = "all",
    random_seed: int | None = None,
    train_mode: bool | None = None,
) -> None:
    """Replay `model` on new inputs and replace the log's saved activations (spec §8.7).

    The graph must be the same as the logged one (same ops, parents and order), else ValueError;
    labels, modules and metadata are kept, shapes that changed are updated with a warning.
    `train_mode=True` keeps this replay's saved activations in the autograd graph; None inherits.
    """
    if train_mode:
        api.check_train_mode(False, None)
    if log._loaded_from_bundle:
        raise ValueError("save_new_activations needs a log made by log_forward_pass, not one loaded from a bundle.")
    model = api._check_model(model)
    args, kwargs = _run.normalize_inputs(model, input_args, input_kwargs)
    check_model_and_input_variants(model, args, kwargs)
    call = api._CallOptions(
        layers_to_save=layers_to_save,
        output_device=log.output_device,
        activation_postfunc=log.activation_postfunc,
        save_raw_activation=log.save_raw_activation,
        detach_saved_tensors=False if train_mode else log.detach_saved_tensors,
        save_function_args=log.save_function_args,
        save_source_context=log.save_source_context,
        save_rng_states=log.save_rng_states,
        random_seed=log.random_seed_used if random_seed is None else random_seed,
        detect_loops=log.detect_loops,
        num_context_lines=log.num_context_lines,
        distances=log.mark_input_output_distances,
        visualization=VisualizationOptions(),
    )
    save: Any = "all" if call.kind == "all" else None
    if call.kind == "list":
        wanted = {log._node_id(p) for p in resolve(log, layers_to_save)}
        wanted.update(log._record_index(p) for p in range(len(log)) if log._is_output(p))
        save = frozenset(n for n in wanted if n < log._n_records)
    sink = None
    if log._activation_callback is not None:  # 2.15 re-sends the new activations, with final labels
        from .io import CallbackSink

        sink = CallbackSink(log._activation_callback, True, call.output_device)
        labels = log._col("labels_w_pass")
        sink.replay_labels({log._node_id(p): labels[p] for p in range(len(log))})
    # Gradients of the old pass are cleared; a log that captures gradients hooks the new pass (spec §8.7).
    store = GradientStore(log.gradient_postfunc, log.save_raw_gradient) if log.save_gradients else None
    log._grad_store, log._lazy_grads, log.has_gradients = None, {}, False
    if store is not None:
        call.grad_hook = store.register
    call.train_mode = bool(log.train_mode if train_mode is None else train_mode)
    cap = api._capture(model, args, kwargs, call, sink, sink, save=save)
    _check_same_records(log, cap)
    _update_metadata(log, cap)
    saved = dict(cap.session.saved)
    api._attach_outputs(log, cap, saved)
    if call.output_device != "same":
        saved = {k: v.to(call.output_device) for k, v in saved.items()}
    log._saved = saved
    log._lazy = {}
    log._transformed = api._transformed_with_outputs(cap)
    log._data.func_args, log._data.func_rng = cap.session.func_args, cap.session.func_rng
    log.layers_to_save = layers_to_save
    log.random_seed_used = call.random_seed
    log.time_forward_pass = cap.time_forward
    log.logging_mode = "fast"
    if store is not None:
        log.gradients_to_save = gradients_to_save
        store.attach(log, selected_nids(log, gradients_to_save))
        log._grad_store = store
    if train_mode is not None:
        log.train_mode = bool(train_mode)
    log._layer_logs = None
    log._data.bool_events = cap.session.bool_events  # the new pass may take other arms
    for key in ("extra", "extra_rolled", "rel.versions", "cond"):
        log._cols.pop(key, None)


def _check_same_records(log: ModelLog, cap: _run.Capture) -> None:
    old, new = log._records, cap.session.records
    if len(old) != len(new) or any(
        a[:3] != b[:3] or a[F_PARENTS] != b[F_PARENTS] for a, b in zip(old, new, strict=True)
    ):
        raise ValueError(
            "The computational graph changed for this forward pass compared to the original call to "
            "log_forward_pass (either due to different inputs or a different random seed), so "
            "save_new_activations failed. Please re-run log_forward_pass with the desired inputs."
        )


def _update_metadata(log: ModelLog, cap: _run.Capture) -> None:
    """New shapes/dtypes (with a warning per changed layer), timings and non-tensor arguments."""
    d, s = log._data, cap.session
    if d.metas != s.metas or d.meta_ids != s.meta_ids:
        for pos in range(len(log)):
            nid = log._record_index(pos)
            if nid >= len(s.meta_ids):
                continue
            before, after = d.metas[d.meta_ids[nid]][0], s.metas[s.meta_ids[nid]][0]
            if tuple(before) != tuple(after):
                warnings.warn(
                    f"Tensor shape changed for '{log.layer_labels[pos]}': expected {tuple(before)}, got "
                    f"{tuple(after)}. The computational graph may have changed between passes.",
                    UserWarning,
                    stacklevel=4,
                )
        d.metas, d.meta_ids = s.metas, s.meta_ids
    d.toks, d.func_times = s.toks, s.op_times
    d.autograd_saved, d.autocast_states, d.autocast_ids = s.opstate.saved, s.opstate.states, s.opstate.ids
    d.grad_fn_ids = s.opstate.grad_fn_ids
