"""The README's main demo: log a recurrent model and AlexNet, look layers up, save a few selectively."""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torchvision
from torch import nn

import torchlens as tl


class SimpleRecurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features=5, out_features=5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(4):
            x = self.fc(x)
            x = x + 1
            x = x * 2
        return x


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
