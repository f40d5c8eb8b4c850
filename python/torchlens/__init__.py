"""torchlens: record every intermediate operation of a PyTorch forward pass.

Importing this package changes nothing in torch; the torch callables are wrapped on the first
logging call (or by `wrap_torch()`) and restored by `unwrap_torch()`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from . import fastlog as fastlog
from ._capture.wrap import unwrap_torch as unwrap_torch
from ._capture.wrap import wrap_torch as wrap_torch
from ._errors import MetadataInvariantError as MetadataInvariantError
from ._errors import TorchLensPostfuncError as TorchLensPostfuncError
from ._native import core as _core
from ._options import StreamingOptions as StreamingOptions
from ._options import VisualizationOptions as VisualizationOptions
from .api import get_model_metadata as get_model_metadata
from .api import log_forward_pass as log_forward_pass
from .api import log_model_metadata as log_model_metadata
from .api import validate_forward_pass as validate_forward_pass
from .api_extra import rehydrate_nested as rehydrate_nested
from .api_extra import show_model_graph as show_model_graph
from .api_extra import summary as summary
from .api_extra import validate_batch_of_models_and_inputs as validate_batch_of_models_and_inputs
from .api_extra import validate_saved_activations as validate_saved_activations
from .fastlog import TrainingModeConfigError as TrainingModeConfigError
from .fastlog._preview import preview_fastlog as preview_fastlog
from .io import LazyActivationRef as LazyActivationRef
from .io import TorchLensIOError as TorchLensIOError
from .io import cleanup_tmp as cleanup_tmp
from .io import load as load
from .io import recover_bundle as recover_bundle
from .io import save as save
from .log.accessors import LayerAccessor as LayerAccessor
from .log.accessors import ModuleAccessor as ModuleAccessor
from .log.call_stack import FuncCallLocation as FuncCallLocation
from .log.grad_fn_log import GradFnAccessor as GradFnAccessor
from .log.grad_fn_log import GradFnLog as GradFnLog
from .log.grad_fn_log import GradFnPassLog as GradFnPassLog
from .log.layer_log import LayerLog as LayerLog
from .log.layer_pass_log import LayerPassLog as LayerPassLog
from .log.model_log import ModelLog as ModelLog
from .log.modules import ModuleLog as ModuleLog
from .log.modules import ModulePassLog as ModulePassLog
from .log.params import ParamLog as ParamLog
from .traces import NodeView as NodeView
from .traces import TraceBundle as TraceBundle
from .traces import bundle as bundle
from .traces import compare_logs as compare_logs
from .validate import check_metadata_invariants as check_metadata_invariants
from .validate_backward import validate_backward_pass as validate_backward_pass
from .viz import NodeSpec as NodeSpec
from .viz import build_render_audit as build_render_audit
from .viz import model_log_to_dagua_graph as model_log_to_dagua_graph
from .viz import render_lines_to_html as render_lines_to_html
from .viz import render_model_log_with_dagua as render_model_log_with_dagua
from .viz import show_backward_graph as show_backward_graph
from .viz._bundle_graph import show_bundle_graph as show_bundle_graph

__version__ = _core.__version__

TensorLog = LayerPassLog

# Types of the `activation_postfunc` / `gradient_postfunc` callables.
ActivationPostfunc = Callable[[torch.Tensor], torch.Tensor]
GradientPostfunc = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def wrapped() -> Iterator[None]:
    """Install the torch wrappers for the duration of a `with` block, removing them even on errors."""
    wrap_torch()
    try:
        yield
    finally:
        unwrap_torch()


__all__ = [
    "ActivationPostfunc",
    "FuncCallLocation",
    "GradFnAccessor",
    "GradFnLog",
    "GradFnPassLog",
    "GradientPostfunc",
    "LayerAccessor",
    "LayerLog",
    "LayerPassLog",
    "LazyActivationRef",
    "MetadataInvariantError",
    "ModelLog",
    "ModuleAccessor",
    "ModuleLog",
    "ModulePassLog",
    "NodeSpec",
    "NodeView",
    "ParamLog",
    "StreamingOptions",
    "TensorLog",
    "TorchLensIOError",
    "TorchLensPostfuncError",
    "TraceBundle",
    "TrainingModeConfigError",
    "VisualizationOptions",
    "build_render_audit",
    "bundle",
    "check_metadata_invariants",
    "cleanup_tmp",
    "compare_logs",
    "fastlog",
    "get_model_metadata",
    "load",
    "log_forward_pass",
    "log_model_metadata",
    "model_log_to_dagua_graph",
    "preview_fastlog",
    "recover_bundle",
    "rehydrate_nested",
    "render_lines_to_html",
    "render_model_log_with_dagua",
    "save",
    "show_backward_graph",
    "show_bundle_graph",
    "show_model_graph",
    "summary",
    "unwrap_torch",
    "validate_backward_pass",
    "validate_batch_of_models_and_inputs",
    "validate_forward_pass",
    "validate_saved_activations",
    "wrap_torch",
    "wrapped",
]
