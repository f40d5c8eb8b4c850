"""Gradient options of the entry points (spec §1.2 rows, §8.6, §14-15): which layers keep the
gradient a later `.backward()` sends them, and the `train_mode` they imply."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._errors import TrainingModeConfigError
from ._options import MISSING
from ._selection import resolve, selection_kind
from .log.gradients import GradientStore
from .log.model_log import ModelLog


@dataclass
class GradOptions:
    """The resolved gradient options of one call. `store` is None when no gradient is kept."""

    store: GradientStore | None
    selection: Any  # "all", None or a list of keys (resolved against the log once it exists)
    train_mode: bool | None  # None: not asked for (the log reports the model's own mode)
    bundle_path: str | None
    keep_in_memory: bool


def resolve_grad_options(
    save_gradients: bool,
    gradients_to_save: Any,
    layers_to_save: Any,
    gradient_postfunc: Any,
    save_raw_gradient: bool,
    train_mode: Any,
    save_gradients_to: Any,
    keep_gradients_in_memory: Any,
    activation_bundle: str | None,
) -> GradOptions:
    """Spec §1.2: `gradients_to_save` turns gradient capture and train_mode on; `save_gradients_to`
    turns gradient capture on; without `gradients_to_save` the selection is `layers_to_save`."""
    if gradient_postfunc is not None and not callable(gradient_postfunc):
        raise TypeError(f"gradient_postfunc must be callable, not {type(gradient_postfunc).__name__}.")
    explicit_train = None if train_mode is MISSING else bool(train_mode)
    bundle = None if save_gradients_to is MISSING or save_gradients_to is None else str(save_gradients_to)
    if gradients_to_save is not MISSING:
        if explicit_train is False:
            raise TrainingModeConfigError(
                "gradients_to_save opts into backward capture, which requires train_mode=True. "
                "Omit train_mode or set train_mode=True."
            )
        save_gradients = True
        explicit_train = True
        selection = gradients_to_save
    else:
        selection = layers_to_save
    if bundle is not None:
        save_gradients = True
        if activation_bundle is not None and activation_bundle != bundle:
            raise ValueError(
                "save_gradients_to must be the same bundle as the activations' bundle path when both are given."
            )
    elif save_gradients and activation_bundle is not None:
        bundle = activation_bundle  # gradients go to the activations' bundle (spec §1.2)
    # Without a bundle there is nothing to stream, and 2.15 ignores keep_gradients_in_memory=False.
    keep = True if keep_gradients_in_memory is MISSING or bundle is None else bool(keep_gradients_in_memory)
    if not save_gradients:  # a gradient_postfunc alone is recorded on the log and acts on nothing
        return GradOptions(None, selection, explicit_train, None, True)
    kind = selection_kind(selection)
    store = None if kind == "none" else GradientStore(gradient_postfunc, save_raw_gradient)
    return GradOptions(store, selection, explicit_train, bundle, keep)


def selected_nids(log: ModelLog, selection: Any) -> frozenset[int] | None:
    """Node ids whose gradient is kept: None for all, else the resolved keys (spec §2.4 key rules)."""
    kind = selection_kind(selection)
    if kind == "all":
        return None
    if kind == "none":
        return frozenset()
    return frozenset(log._node_id(p) for p in resolve(log, selection))


def attach_gradients(log: ModelLog, opts: GradOptions, postfunc: Any, save_raw: bool) -> None:
    """Record the gradient options on the log and point the hooks' store at it."""
    log.save_gradients = opts.store is not None
    log.gradients_to_save = opts.selection if opts.store is not None else None
    log.gradient_postfunc = postfunc
    log.gradient_postfunc_repr = None if postfunc is None else repr(postfunc)
    log.save_raw_gradient = bool(save_raw)
    if opts.store is not None:
        opts.store.attach(log, selected_nids(log, opts.selection))
        log._grad_store = opts.store
