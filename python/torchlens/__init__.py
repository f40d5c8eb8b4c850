"""torchlens: record every intermediate operation of a PyTorch forward pass.

Importing this package changes nothing in torch; the torch callables are wrapped on the first
logging call (or by `wrap_torch()`) and restored by `unwrap_torch()`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
from .api import show_model_graph as show_model_graph
from .api import validate_forward_pass as validate_forward_pass
from .io import LazyActivationRef as LazyActivationRef
from .io import TorchLensIOError as TorchLensIOError
from .io import cleanup_tmp as cleanup_tmp
from .io import load as load
from .io import recover_bundle as recover_bundle
from .io import save as save
from .log.layer_log import LayerLog as LayerLog
from .log.layer_pass_log import LayerPassLog as LayerPassLog
from .log.model_log import ModelLog as ModelLog

__version__ = _core.__version__

TensorLog = LayerPassLog


@contextmanager
def wrapped() -> Iterator[None]:
    """Install the torch wrappers for the duration of a `with` block, removing them even on errors."""
    wrap_torch()
    try:
        yield
    finally:
        unwrap_torch()


__all__ = [
    "LayerLog",
    "LayerPassLog",
    "LazyActivationRef",
    "ModelLog",
    "StreamingOptions",
    "TensorLog",
    "TorchLensIOError",
    "VisualizationOptions",
    "cleanup_tmp",
    "fastlog",
    "get_model_metadata",
    "load",
    "log_forward_pass",
    "log_model_metadata",
    "validate_forward_pass",
    "MetadataInvariantError",
    "TorchLensPostfuncError",
    "recover_bundle",
    "save",
    "show_model_graph",
    "unwrap_torch",
    "wrap_torch",
    "wrapped",
]
