"""The differential zoo: every model `make zoo` and `make diff-peer` run, by name.

Families: `toy` (the capture-rule models of `zoo.ZOO`), `labels-*` (models written for the label
classes where a re-implementation can drift from TorchLens 2.15, `zoo_labels`), the torchvision
families of `zoo_tv` and the transformers families of `zoo_hf`. `FAST` is the subset CI runs.
Nothing here imports torchlens, so the same registry runs under TorchLens 2.15 for the diff.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from . import zoo, zoo_hf, zoo_labels, zoo_labels2, zoo_labels3, zoo_tv


@dataclass(frozen=True)
class Entry:
    name: str
    family: str
    factory: Callable[[], nn.Module]
    inputs: Callable[[], tuple[tuple, dict]]
    train: bool = False


@cache
def registry() -> dict[str, Entry]:
    """Every zoo entry, in family order (toy, label classes, torchvision, transformers)."""
    out: dict[str, Entry] = {}
    for name, case in zoo.ZOO.items():
        out[name] = Entry(name, "toy", case.factory, case.inputs, case.train)
    families = (
        *zoo_labels.FAMILIES.items(),
        *zoo_labels2.FAMILIES.items(),
        *zoo_labels3.FAMILIES.items(),
        *zoo_tv.FAMILIES.items(),
    )
    for family, make in (*families, *zoo_hf.FAMILIES.items()):
        for name, (factory, inputs) in make().items():
            if name in out:
                raise ValueError(f"zoo name {name!r} registered twice")
            out[name] = Entry(name, family, factory, inputs)
    return out


def build(name: str) -> tuple[nn.Module, tuple, dict]:
    """Fresh model (seeded, CPU, in its train/eval mode) and fresh inputs for a zoo entry."""
    entry = registry()[name]
    torch.manual_seed(0)
    model = entry.factory()
    model.train(entry.train)
    args, kwargs = entry.inputs()
    return model, args, kwargs


def inputs(name: str) -> tuple[tuple, dict]:
    """Fresh inputs for a zoo entry (the same values on every call)."""
    return registry()[name].inputs()


# The CI subset (tests/test_zoo_subset.py): one or two of every family, all label-class models.
FAST_MODELS = (
    "paste_with_tensor_bounds",
    "resnet18",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "regnet_y_400mf",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "lraspp_mobilenet_v3_large",
    "r3d_18",
    "hf_gpt2",
    "hf_t5",
    "hf_llama",
    "hf_mixtral",
    "hf_mamba",
    "hf_bert",
)


def fast() -> list[str]:
    reg = registry()
    labels = [n for n, e in reg.items() if e.family.startswith("labels-")]
    return labels + [n for n in FAST_MODELS if n in reg]
