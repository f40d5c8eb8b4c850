from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# pytest's --import-mode=append puts tests/ last on sys.path; first, so that the shared `models`
# package (tests/models) cannot be shadowed by an installed distribution of the same name.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)
