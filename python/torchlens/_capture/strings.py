"""Process-wide string interning shared by the wrappers and the core hand-off."""

from __future__ import annotations

STRINGS: list[str] = []
_IDS: dict[str, int] = {}


def intern(s: str) -> int:
    i = _IDS.get(s)
    if i is None:
        i = len(STRINGS)
        STRINGS.append(s)
        _IDS[s] = i
    return i
