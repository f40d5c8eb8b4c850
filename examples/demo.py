"""The README's main demo: log a recurrent model and AlexNet, look layers up, save a few selectively."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
import torchvision

import torchlens as tl

# SimpleRecurrent is the README's model, kept with the test models (tests/models/readme.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from models import SimpleRecurrent  # noqa: E402


def main() -> None:
    torch.manual_seed(0)
    x = torch.rand(6, 5)
    model_history = tl.log_forward_pass(SimpleRecurrent(), x, layers_to_save="all")
    print(model_history)
    print(model_history["linear_1_1:2"].activation)  # second pass of the first linear layer
    images = Path(__file__).resolve().parent.parent / "docs" / "images"
    for mode in ("rolled", "unrolled"):
        out = images / f"simple_recurrent_{mode}"
        model_history.render_graph(vis_mode=mode, vis_outpath=str(out), vis_fileformat="png", vis_save_only=True)
        print(f"wrote {out}.png")

    alexnet = torchvision.models.alexnet()
    x = torch.rand(1, 3, 224, 224)
    t0 = time.perf_counter()
    model_history = tl.log_forward_pass(alexnet, x, layers_to_save="all")
    print(f"\n(logged AlexNet in {time.perf_counter() - t0:.3f}s)\n")
    print(model_history)
    print(model_history["conv2d_3_7"])
    for key in ("conv2d_3", "conv2d_3_7:1", "features.6", 7, -17):
        assert model_history[key] is model_history["conv2d_3_7"]

    model_history = tl.log_forward_pass(alexnet, x, layers_to_save=["conv2d_3_7", "features", -5, "linear"])
    print("saved:", model_history.layers_with_saved_activations)


if __name__ == "__main__":
    main()
