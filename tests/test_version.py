"""`torchlens.__version__` has one source: the Cargo workspace version.

maturin writes it into the package metadata (`dynamic = ["version"]`) and the extension compiles
it in (`torchlens._core.__version__`), which `torchlens.__version__` re-exports.
"""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import torchlens as tl
from torchlens import _core

CARGO_TOML = Path(__file__).resolve().parent.parent / "Cargo.toml"


def cargo_workspace_version() -> str:
    text = CARGO_TOML.read_text()
    section = text.split("[workspace.package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', section, re.MULTILINE)
    assert match is not None, "no version in [workspace.package] of Cargo.toml"
    return match.group(1)


def test_version_matches_installed_metadata() -> None:
    assert tl.__version__ == importlib.metadata.version("torchlens")


def test_version_is_the_cargo_workspace_version() -> None:
    assert tl.__version__ == _core.__version__ == cargo_workspace_version()
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d+)?", tl.__version__), tl.__version__
