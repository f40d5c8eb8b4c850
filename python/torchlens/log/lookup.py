"""`model_log[key]`: the lookup cascade of spec §2.3 and its error messages."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .model_log import ModelLog

_SEED_LABEL = re.compile(r"^(input|output|buffer)_(\d+)_(\d+)$")


def get_item(log: ModelLog, key: Any) -> Any:
    """The entry, layer or module `key` names (see `ModelLog.__getitem__`)."""
    if isinstance(key, slice):
        return log.layer_list[key]
    n = len(log)
    if isinstance(key, int) and not isinstance(key, bool):
        if -n <= key < n:
            return log._entry(log._positions()[key % n])
        raise ValueError(
            f"You specified the layer with index {key}, but there are only {n} layers; please specify an "
            f"index in the range -{n} - {n - 1}."
        )
    if not isinstance(key, str):
        raise ValueError(f"Layer keys must be str, int or slice, not {type(key).__name__}.")
    pos = log._fin.lookup(key)
    if pos is not None:
        return _shown(log, pos, key)
    logs = log.layer_logs
    if key in logs:
        return logs[key]
    m = _SEED_LABEL.match(key)
    if m is not None:
        pos = log._fin.lookup(f"{m.group(1)}_{m.group(2)}")
        if pos is not None and log._col("layer_total_nums")[pos] == int(m.group(3)):
            return _shown(log, pos, key)
    mod = _module_lookup(log, key)
    if mod is not None:
        return mod
    pos = log._fin.lookup_ci(key)
    if pos is not None:
        return _shown(log, pos, key)
    lower = {k.lower(): k for k in logs}
    if key.lower() in lower:
        return logs[lower[key.lower()]]
    matches = [(k, p) for k, p in log._fin.find_substring_ci(key) if log._visible(p)]
    # Unlike TorchLens 2.15, several keys of the same entry are not ambiguous.
    if len({p for _, p in matches}) == 1:
        return log._entry(matches[0][1])
    if len(matches) > 1:
        shown = ", ".join(k for k, _ in matches[:10])
        more = f" (and {len(matches) - 10} more)" if len(matches) > 10 else ""
        raise ValueError(
            f"Ambiguous lookup: '{key}' matches {len(matches)} layers: {shown}{more}. Please use a more specific key."
        )
    raise ValueError(help_text(log, key))


def _shown(log: ModelLog, pos: int, key: str) -> Any:
    if log._visible(pos):
        return log._entry(pos)
    label = log._col("labels")[pos]
    raise ValueError(
        f"'{key}' names layer {label}, which has no saved activation and was dropped from this log "
        "(keep_unsaved_layers=False); it is listed in unlogged_layers."
    )


def _module_lookup(log: ModelLog, key: str) -> Any:
    passes = log._module_num_passes()
    addr, _, k = key.partition(":")
    if addr in passes:
        if k:
            if not k.isdigit() or not 1 <= int(k) <= passes[addr]:
                raise ValueError(f"Module {addr} has {passes[addr]} passes; pass {k} does not exist.")
            return log.modules[key]
        return log.modules[addr]
    return None


def help_text(log: ModelLog, key: str) -> str:
    """The message for a key that matches nothing (also used by `layers_to_save`)."""
    labels = log._col("labels")
    example = labels[min(1, len(labels) - 1)] if labels else "conv2d_1_1"
    base, _, p = key.rpartition(":")
    if p.isdigit() and base in log.layer_logs:
        return f"Layer {base} has only {log.layer_logs[base].num_passes} passes; pass {p} does not exist."
    return (
        f"'{key}' not found in the ModelLog. Index a layer by (1) its label, e.g. '{example}' (the pass "
        f"'{example}:1' and the short form without the overall number also work), (2) the address of a "
        "module whose output it is, e.g. 'features.3' or 'features.3:1', (3) its ordinal position "
        "(negative counts from the end), or (4) a substring that matches exactly one layer."
    )
