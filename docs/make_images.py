"""Render the pictures of docs/visualization.md into docs/images/ (run by hand: `python docs/make_images.py`).

One PNG per graph feature, on small models from tests/models (random weights, nothing downloaded).
"""

from __future__ import annotations

import os
import sys
import warnings

import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "python"), os.path.join(HERE, "..", "tests")]

import torchlens as tl  # noqa: E402
import torchlens.viz._build as viz_build  # noqa: E402

from models.viz import SmallConv, TinyAttention  # noqa: E402

OUT = os.path.join(HERE, "images")
SMALL = {"dpi": "56"}  # keeps the PNGs small


def _png(log: tl.ModelLog, name: str, **kwargs: object) -> None:
    overrides = {**SMALL, **kwargs.pop("vis_graph_overrides", {})}  # type: ignore[dict-item]
    log.render_graph(
        vis_outpath=os.path.join(OUT, name),
        vis_fileformat="png",
        vis_save_only=True,
        vis_graph_overrides=overrides,
        **kwargs,  # type: ignore[arg-type]
    )
    print(f"docs/images/{name}.png  {os.path.getsize(os.path.join(OUT, name + '.png')) // 1024} KB")


def main() -> None:
    torch.manual_seed(0)
    conv = tl.log_forward_pass(SmallConv(), torch.randn(1, 3, 8, 8))
    _png(conv, "node_mode_profiling", node_mode="profiling")
    _png(conv, "code_panel", code_panel=True)
    resnet = tl.log_forward_pass(
        torchvision.models.resnet18(weights=None).eval(), torch.randn(1, 3, 64, 64), layers_to_save=None
    )
    _png(resnet, "node_mode_vision", node_mode="vision", module="layer2.0")
    attn = tl.log_forward_pass(TinyAttention(), torch.randn(1, 4, 8))
    _png(attn, "node_mode_attention", node_mode="attention")

    def spec(layer: object, default: tl.NodeSpec) -> tl.NodeSpec | None:
        if getattr(layer, "layer_type", "") == "conv2d":
            return default.replace(fillcolor="gold", lines=[*default.lines, "a convolution"])
        return None

    _png(
        resnet,
        "customization",
        node_spec_fn=spec,
        collapse_fn=lambda m: m.address in ("layer3", "layer4"),
        skip_fn=lambda layer: layer.layer_type in ("relu", "batchnorm"),
    )
    viz_build.AUTO_COLLAPSE_NODES = 40  # what a big model gets, shown on a small one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _png(resnet, "auto_collapse")


if __name__ == "__main__":
    main()
