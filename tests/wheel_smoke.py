"""Smoke test of an installed wheel (run by `make wheel-smoke`, not collected by pytest).

Usage: python wheel_smoke.py CLONE_DIR

Runs from a directory outside the clone, in a fresh virtualenv where `pip install dist/*.whl`
installed torchlens: checks that torchlens and torchlens._core come from that environment's
site-packages (not from the source tree, which the machine's editable install points at), that
the version is the wheel's, then runs the README quick start and a bundle save/load round trip.
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
import tempfile
from pathlib import Path

import torch
import torchvision

import torchlens as tl
from torchlens import _core


def check_installed_copy(clone: Path) -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for mod in (tl, _core):
        path = Path(mod.__file__).resolve()
        assert path.is_relative_to(site), f"{mod.__name__} imported from {path}, not from {site}"
        assert not path.is_relative_to(clone), f"{mod.__name__} imported from the source tree: {path}"
    assert Path(_core.__file__).name.endswith(".abi3.so"), _core.__file__
    assert tl.__version__ == importlib.metadata.version("torchlens"), (
        tl.__version__,
        importlib.metadata.version("torchlens"),
    )
    assert _core.build_profile == "release", _core.build_profile


class SimpleRecurrent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = self.fc(x)
            x = x + 1
            x = x * 2
        return x


def quick_start() -> None:
    torch.manual_seed(0)
    alexnet = torchvision.models.alexnet().eval()
    x = torch.rand(1, 3, 224, 224)
    log = tl.log_forward_pass(alexnet, x, layers_to_save="all")
    assert "conv2d_3_7" in str(log)
    with torch.no_grad():
        assert torch.equal(log["conv2d_3_7"].activation, alexnet.features[:7](x))
    for key in ("conv2d_3", "conv2d_3_7:1", "features.6", 7, -17):
        assert log[key].layer_label == "conv2d_3_7", key
    with torch.no_grad():
        assert torch.equal(log["output_1"].activation, alexnet(x))

    log = tl.log_forward_pass(alexnet, x, layers_to_save=["conv2d_3_7", "features", -5, "linear"])
    assert "conv2d_3_7" in log.layers_with_saved_activations

    model = SimpleRecurrent()
    xr = torch.rand(6, 5)
    log = tl.log_forward_pass(model, xr, layers_to_save="all")
    assert log.layers["linear_1_1"].num_passes == 4
    h = model.fc(xr)
    h = (h + 1) * 2
    assert torch.equal(log["linear_1_1:2"].activation, model.fc(h))

    with tempfile.TemporaryDirectory() as tmp:
        tl.save(log, Path(tmp) / "run1")
        back = tl.load(Path(tmp) / "run1")
        lazy = tl.load(Path(tmp) / "run1", lazy=True)
        for label in log.layers_with_saved_activations:
            assert torch.equal(back[label].activation, log[label].activation), label
        assert torch.equal(lazy["linear_1_1:2"].materialize_activation(), log["linear_1_1:2"].activation)


def main() -> None:
    clone = Path(sys.argv[1]).resolve()
    assert not Path.cwd().resolve().is_relative_to(clone), "run the smoke test from outside the clone"
    check_installed_copy(clone)
    quick_start()
    print(f"wheel smoke test passed: torchlens {tl.__version__} from {Path(tl.__file__).parent}")


if __name__ == "__main__":
    main()
