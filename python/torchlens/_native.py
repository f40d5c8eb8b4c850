"""The compiled core, loaded once for every layer of the package.

Submodules import `core` from here instead of `from . import _core`: the extension is not a
source file, so a static import graph would attribute that import to the package root and every
layer would appear to depend on the top of the package.
"""

from __future__ import annotations

import importlib
from types import ModuleType

core: ModuleType = importlib.import_module("torchlens._core")

__all__ = ["core"]
