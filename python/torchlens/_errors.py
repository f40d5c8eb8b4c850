"""Exceptions raised by log objects, postfuncs and validation."""

from __future__ import annotations


class TorchLensPostfuncError(RuntimeError):
    """An `activation_postfunc` raised; the original exception is chained as `__cause__`."""


class MetadataInvariantError(ValueError):
    """`ModelLog.check_metadata_invariants` found an inconsistency (message names the family)."""


class UnsupportedTensorVariantError(RuntimeError):
    """An input, parameter or buffer is a tensor variant that cannot be logged (a meta tensor)."""


class TorchLensIOError(RuntimeError):
    """A portable bundle could not be written or read (missing, truncated, corrupted, unsupported or hostile).

    Defined here, not in the extension: the Rust bindings raise this very class
    (`pyo3::import_exception!`), so `except TorchLensIOError` catches errors from both sides.
    """


class RecordingConfigError(ValueError):
    """Invalid fastlog configuration."""


class TrainingModeConfigError(RecordingConfigError):
    """A `train_mode=True` call whose options cannot keep saved activations in the autograd graph (spec §8.6)."""
