"""The CI subset of the differential zoo (`make zoo` runs all of it, tests/models/registry.py):
validation True, module outputs equal to forward hooks, output layers equal to the returned value."""

from __future__ import annotations

import pytest
import zoo_check

from models import registry


@pytest.mark.parametrize("name", registry.fast())
def test_zoo_model(name: str) -> None:
    res = zoo_check.check(name)
    assert res.problems == []
    assert res.validated is True
    assert res.entries >= res.layers > 0 and res.ops > 0


def test_zoo_is_large() -> None:
    reg = registry.registry()
    assert len(reg) >= 200
    families = {e.family for e in reg.values()}
    assert {"toy", "tv-classification", "tv-segmentation", "tv-detection", "tv-video", "hf-decoder"} <= families


def test_hook_check_catches_a_wrong_activation() -> None:
    """The module check compares values: a corrupted saved output is reported."""
    import torch
    import torchvision

    import torchlens as tl

    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 32, 32)
    returned, calls = zoo_check.hook_reference(model, (x,), {})
    log = tl.log_forward_pass(model, x, layers_to_save="all", random_seed=0)
    assert zoo_check.compare_modules(model, log, calls) == []
    assert zoo_check.compare_outputs(log, returned) == []
    with torch.no_grad():
        log["layer1"].activation.add_(1)
        log["output_1"].activation.add_(1)
    problems = zoo_check.compare_modules(model, log, calls)
    assert any("layer1:1" in p for p in problems)
    assert zoo_check.compare_outputs(log, returned) == ["output_1 differs from the returned output"]
