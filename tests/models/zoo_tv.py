"""Every torchvision classification, segmentation, detection, video and optical-flow model that
builds without weights, at the smallest input each architecture accepts (registered in
`registry.REGISTRY`). Weights are random (`weights=None`, `weights_backbone=None`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from .zoo import randn

tv = torchvision.models

Inputs = Callable[[], tuple[tuple, dict]]
Spec = tuple[Callable[[], nn.Module], Inputs]


def _img(size: int, batch: int = 1) -> Inputs:
    return lambda: ((randn(batch, 3, size, size, seed=1),), {})


def _clip(frames: int, size: int) -> Inputs:
    return lambda: ((randn(1, 3, frames, size, size, seed=1),), {})


def _get(name: str, **kwargs: object) -> Callable[[], nn.Module]:
    def make() -> nn.Module:
        return tv.get_model(name, weights=None, **kwargs)

    return make


# Input side per classifier: the smallest that every stage accepts (AlexNet's and VGG's pools,
# Inception's stem, MaxViT's 7x7 partitions); ViTs are built for a 32/28-pixel image instead.
_CLS_SIZE = {"alexnet": 64, "googlenet": 64, "inception_v3": 75, "maxvit_t": 224}
_VIT_SIZE = {"vit_b_16": 32, "vit_b_32": 32, "vit_l_16": 32, "vit_l_32": 32, "vit_h_14": 28}


def classification() -> dict[str, Spec]:
    out: dict[str, Spec] = {}
    for name in tv.list_models(module=tv):
        if name in _VIT_SIZE:
            size = _VIT_SIZE[name]
            out[name] = (_get(name, image_size=size), _img(size))
        elif name in ("googlenet", "inception_v3"):
            # init_weights draws from scipy-free truncnorm; aux heads only run in train mode.
            out[name] = (_get(name, init_weights=True, aux_logits=False), _img(_CLS_SIZE[name]))
        else:
            out[name] = (_get(name), _img(_CLS_SIZE.get(name, 32)))
    return out


def quantizable() -> dict[str, Spec]:
    """torchvision.models.quantization: the float versions (`quantize=False`, QuantStub wrappers)."""
    q = tv.quantization
    out: dict[str, Spec] = {}
    for name in tv.list_models(module=q):
        kwargs: dict[str, object] = {"quantize": False}
        size = 32
        if name in ("quantized_googlenet", "quantized_inception_v3"):
            kwargs.update(init_weights=True, aux_logits=False)
            size = 75 if name.endswith("inception_v3") else 64
        out[name] = (_get(name, **kwargs), _img(size))
    return out


def segmentation() -> dict[str, Spec]:
    seg = tv.segmentation
    return {name: (_get(name, weights_backbone=None, num_classes=5), _img(64)) for name in tv.list_models(module=seg)}


def _det_input(size: int) -> Inputs:
    return lambda: (([torch.rand(3, size, size, generator=torch.Generator().manual_seed(1))],), {})


def detection() -> dict[str, Spec]:
    det = tv.detection
    out: dict[str, Spec] = {}
    for name in tv.list_models(module=det):
        kwargs: dict[str, object] = {"weights_backbone": None, "num_classes": 5}
        if name.startswith("ssd"):
            # SSD resizes to its fixed 300/320 input; keep the number of kept boxes small.
            kwargs.update(detections_per_img=10, topk_candidates=20)
        elif "rcnn" in name:
            kwargs.update(
                min_size=64,
                max_size=64,
                box_detections_per_img=5,
                rpn_pre_nms_top_n_test=50,
                rpn_post_nms_top_n_test=20,
            )
        else:
            kwargs.update(min_size=64, max_size=64, detections_per_img=5, topk_candidates=20)
        out[name] = (_get(name, **kwargs), _det_input(64))
    return out


def _small_mvit(name: str) -> Callable[[], nn.Module]:
    """MViT for 4x64x64 clips: its builders fix `spatial_size`/`temporal_size` (224, 16), so they are
    overridden where they reach `_mvit`, for this one build only."""
    from torchvision.models.video import mvit

    def make() -> nn.Module:
        orig = mvit._mvit

        def small(**kwargs: object) -> nn.Module:
            return orig(**{**kwargs, "spatial_size": (64, 64), "temporal_size": 4})

        mvit._mvit = small
        try:
            return tv.get_model(name, weights=None)
        finally:
            mvit._mvit = orig

    return make


def video() -> dict[str, Spec]:
    vid = tv.video
    out: dict[str, Spec] = {}
    for name in tv.list_models(module=vid):
        if name.startswith("mvit"):
            out[name] = (_small_mvit(name), _clip(4, 64))
        elif name == "s3d":
            out[name] = (_get(name), _clip(16, 224))  # its final 2x7x7 pool needs the full clip
        else:
            out[name] = (_get(name), _clip(4, 32))
    return out


def optical_flow() -> dict[str, Spec]:
    def pair() -> tuple[tuple, dict]:
        # The correlation pyramid needs feature maps of 16+ pixels (images of 128+).
        return (randn(1, 3, 128, 128, seed=1), randn(1, 3, 128, 128, seed=2)), {"num_flow_updates": 2}

    return {name: (_get(name), pair) for name in ("raft_small", "raft_large")}


FAMILIES: dict[str, Callable[[], dict[str, Spec]]] = {
    "tv-classification": classification,
    "tv-quantization": quantizable,
    "tv-segmentation": segmentation,
    "tv-detection": detection,
    "tv-video": video,
    "tv-optical-flow": optical_flow,
}
