"""Running an extra metadata pass without disturbing what the recorded passes will see."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def model_state_kept(model: nn.Module) -> Iterator[None]:
    """Restore the model's buffers (BatchNorm statistics) and the torch / Python RNG states on exit."""
    bufs = [(b, b.detach().clone()) for b in model.buffers()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    py_rng = random.getstate()
    try:
        yield
    finally:
        with torch.no_grad():
            for b, saved in bufs:
                b.copy_(saved)
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
        random.setstate(py_rng)
