"""Exceptions raised by log objects, postfuncs and validation."""

from __future__ import annotations


class TorchLensPostfuncError(RuntimeError):
    """An `activation_postfunc` raised; the original exception is chained as `__cause__`."""


class MetadataInvariantError(AssertionError):
    """`ModelLog.check_metadata_invariants` found an inconsistency (message names the family)."""
