"""Fingerprints (the argument hash of each record) are the same in every process.

Python salts `hash()` of strings per process; fingerprints built on it made the layers of two
runs of one model, saved from two processes, fail to match in a multi-trace bundle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import torchlens as tl

from models.fingerprints import KwargModel

CHILD = r"""
import json, sys, torch
sys.path.insert(0, {tests!r})
import torchlens as tl
from models.fingerprints import KwargModel
log = tl.log_forward_pass(KwargModel(), torch.rand(2, 6), layers_to_save=None)
print(json.dumps([r[3] for r in log._data.records]))
"""


def _child_hashes(seed: str) -> list[int]:
    tests = Path(__file__).resolve().parent
    env = dict(os.environ, PYTHONHASHSEED=seed)
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(tests=str(tests))], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_fingerprints_do_not_depend_on_the_hash_seed() -> None:
    log = tl.log_forward_pass(KwargModel(), torch.rand(2, 6), layers_to_save=None)
    here = [r[3] for r in log._data.records]
    assert [lay.layer_label for lay in log.layer_list] == [
        "input_1",
        "mean_1_1",
        "gelu_1_2",
        "einsum_1_3",
        "softmax_1_4",
        "output_1",
    ]
    assert len(set(here)) == len(here)  # input, mean, gelu, einsum, softmax: all told apart
    assert _child_hashes("1") == here
    assert _child_hashes("2") == here
