"""Progress bars and the library logger, shared by every long-running entry point.

A bar is drawn only where someone can see it (a terminal or a notebook) unless the caller
forces it with ``progress=True``; ``progress=False`` never draws one. Library messages go to
``logging.getLogger("torchlens")`` so applications decide what is shown.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

logger = logging.getLogger("torchlens")


def _interactive() -> bool:
    """True in a notebook kernel or when stderr is a terminal (where tqdm draws)."""
    if "ipykernel" in sys.modules:
        try:
            from IPython import get_ipython  # type: ignore[import-not-found]

            shell = get_ipython()
            if shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell":
                return True
        except ImportError:
            pass
    stream = sys.stderr
    return bool(getattr(stream, "isatty", None) and stream.isatty())


def progress_enabled(progress: bool | None) -> bool:
    """Resolve a user's ``progress=`` option: None means "only when someone can see it"."""
    if progress is None:
        return _interactive()
    return bool(progress)


def progress(
    iterable: Iterable[T],
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    enabled: bool | None = None,
    leave: bool = False,
) -> Iterator[T]:
    """Iterate with a tqdm bar when ``progress_enabled(enabled)``; plain iteration otherwise."""
    if not progress_enabled(enabled):
        yield from iterable
        return
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency; a stripped environment still works without a bar
        yield from iterable
        return
    # A bar that was asked for shows at once; an automatic one waits half a second, so that
    # short work does not flash a bar.
    bar = tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave, delay=0.0 if enabled else 0.5)
    try:
        yield from bar
    finally:
        bar.close()
