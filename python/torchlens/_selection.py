"""Resolving `layers_to_save` into node ids (spec §2.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .log.model_log import ModelLog

_NONE_VALUES = (None, "none", "None", "NONE")


def selection_kind(layers_to_save: Any) -> str:
    """'all', 'none' or 'list'."""
    if isinstance(layers_to_save, str) and layers_to_save == "all":
        return "all"
    if any(layers_to_save is v or layers_to_save == v for v in _NONE_VALUES if isinstance(layers_to_save, str | None)):
        return "none"
    if isinstance(layers_to_save, list | tuple) and len(layers_to_save) == 0:
        return "none"
    return "list"


def resolve(log: ModelLog, layers_to_save: Any) -> list[int]:
    """Positions selected by a list of lookup keys, ordinals and substrings."""
    items = list(layers_to_save) if isinstance(layers_to_save, list | tuple) else [layers_to_save]
    if isinstance(layers_to_save, str):
        items = [layers_to_save.lower()]
    n = len(log)
    chosen: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            if -n <= item < n:
                chosen.add(item % n)
                continue
            raise ValueError(log._help_text(str(item)))
        key = str(item)
        pos = log._fin.lookup(key)
        if pos is not None:
            chosen.add(pos)
            continue
        matches = log._fin.find_substring(key)
        if not matches:
            raise ValueError(log._help_text(key))
        chosen.update(p for _, p in matches)
    return sorted(chosen)
