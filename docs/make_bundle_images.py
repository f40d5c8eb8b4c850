"""Render the multi-trace pictures of docs/visualization.md ("Comparing traces") into docs/images/
(run by hand: `python docs/make_bundle_images.py`). Small models from tests/models, random weights."""

from __future__ import annotations

import copy
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "python"), os.path.join(HERE, "..", "tests")]

import torchlens as tl  # noqa: E402

from models.trace_bundle import BranchNet, SmallCNN  # noqa: E402

OUT = os.path.join(HERE, "images")


def main() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    perturbed = copy.deepcopy(model)
    with torch.no_grad():
        perturbed.conv2.weight.mul_(3.0)
        perturbed.conv2.bias.add_(1.0)
    x = torch.randn(1, 3, 8, 8)
    b = tl.bundle([tl.log_forward_pass(model, x), tl.log_forward_pass(perturbed, x)], names=["base", "perturbed"])
    tl.show_bundle_graph(b, os.path.join(OUT, "bundle_divergence"), vis_format="png", save_only=True)
    branch = BranchNet()
    logs = [tl.log_forward_pass(branch, s * torch.ones(1, 4)) for s in (1.0, -1.0, -2.0)]
    g = tl.bundle(logs, names=["on", "off_1", "off_2"], groups=["on", "off", "off"])
    tl.show_bundle_graph(g, os.path.join(OUT, "bundle_groups"), mode="group_color", vis_format="png", save_only=True)
    tl.show_bundle_graph(g, os.path.join(OUT, "bundle_coverage"), mode="swarm", vis_format="png", save_only=True)
    for name in ("bundle_divergence", "bundle_groups", "bundle_coverage"):
        print(f"docs/images/{name}.png  {os.path.getsize(os.path.join(OUT, name + '.png')) // 1024} KB")


if __name__ == "__main__":
    main()
